import numpy as np
import optuna
import pytest

from archkd import api
from archkd.errors import ArchkdError
from archkd.search import Budget, HashRandomSampler, TrialOutcome, run_search
from archkd.spaces import create_space

from conftest import small_config


def test_every_sampled_config_builds():
    space = create_space("stages")
    rng = np.random.default_rng(0)
    import torch

    for _ in range(20):
        cfg = space.sample_rng(rng)
        m = space.build(cfg, (1, 8, 8), 10)
        assert m(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_random_sampler_state_is_rebuilt_from_study(tmp_path):
    space = create_space("stages")

    def propose(study, n):
        out = []
        for _ in range(n):
            t = study.ask()
            out.append(space.suggest(t))
            study.tell(t, 0.0)
        return out

    s1 = optuna.create_study(sampler=HashRandomSampler(3))
    uninterrupted = propose(s1, 6)
    url = f"sqlite:///{tmp_path / 's.db'}"
    s2 = optuna.create_study(storage=url, study_name="x", sampler=HashRandomSampler(3))
    first = propose(s2, 3)
    s3 = optuna.load_study(storage=url, study_name="x", sampler=HashRandomSampler(3))  # a restarted process
    assert first + propose(s3, 3) == uninterrupted


def _fake_evaluate(calls):
    def evaluate(c, report):
        calls.append(c.number)
        return TrialOutcome(1.0 / c.metrics["params"])

    return evaluate


def test_search_resumes_without_repeating_and_skips_over_budget(tmp_path):
    space = create_space("stages", widths=(8, 16, 64))
    budget = Budget(max_params=20_000)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    calls: list[int] = []
    kw = dict(storage=url, study_name="s", sampler=HashRandomSampler(0), budget=budget, input_shape=(1, 8, 8),
              num_classes=10, log=None)
    r1 = run_search(space, _fake_evaluate(calls), n_trials=3, **kw)
    trained = list(calls)
    assert len(trained) == 3
    assert all(r["params"] <= 20_000 for r in r1.trials if r["state"] == "COMPLETE")
    infeasible = [r for r in r1.trials if r["state"] == "INFEASIBLE"]
    assert all(r["number"] not in trained for r in infeasible)  # over budget: never trained
    r2 = run_search(space, _fake_evaluate(calls), n_trials=5, **kw)  # same command, more trials: resumes
    assert calls[:3] == trained and len(calls) == 5 and len(set(calls)) == 5
    assert len([r for r in r2.trials if r["state"] == "COMPLETE"]) == 5


def test_interrupted_trial_is_rerun(tmp_path):
    space = create_space("stages", widths=(8,))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    kw = dict(storage=url, study_name="s", sampler=HashRandomSampler(0), budget=Budget(), input_shape=(1, 8, 8),
              num_classes=10, log=None)

    def crash(c, report):
        if c.number == 1:
            raise KeyboardInterrupt
        return TrialOutcome(0.5)

    with pytest.raises(KeyboardInterrupt):
        run_search(space, crash, n_trials=3, **kw)
    calls: list[int] = []
    r = run_search(space, _fake_evaluate(calls), n_trials=3, **kw)
    assert 0 not in calls  # trial 0 finished before the crash and is kept
    assert len([t for t in r.trials if t["state"] == "COMPLETE"]) == 3


def test_impossible_budget_is_rejected_before_work(tmp_path):
    with pytest.raises(ArchkdError, match="no architecture in space 'stages' can meet the budget"):
        run_search(create_space("stages"), _fake_evaluate([]), storage=f"sqlite:///{tmp_path / 'x.db'}",
                   study_name="x", sampler=HashRandomSampler(0), n_trials=2, budget=Budget(max_params=100),
                   input_shape=(1, 8, 8), num_classes=10, log=None)
    assert not (tmp_path / "x.db").exists()  # rejected before the study was even opened


def test_kd_search_end_to_end(tmp_path, teacher_ckpt):
    cfg = small_config(tmp_path, **{"teacher.path": teacher_ckpt, "budget.max_params": 30_000})
    r = api.search(cfg, log=None)
    done = [t for t in r["trials"] if t["state"] == "COMPLETE"]
    assert len(done) == 3 and r["best"]["val_acc"] == max(t["val_acc"] for t in done)
    assert (cfg.run_dir / "study.db").exists()
    again = api.search(cfg, log=None)  # re-running resumes: nothing new is trained
    assert [t["number"] for t in again["trials"]] == [t["number"] for t in r["trials"]]


def test_pruner_stops_weak_trials_on_their_validation_curve(tmp_path):
    space = create_space("stages", widths=(8,))
    trained_epochs = {}

    def evaluate(c, report):
        good = c.number < 6
        for epoch in range(4):
            trained_epochs[c.number] = epoch + 1
            report(epoch, (0.9 if good else 0.1) + 0.01 * epoch)
        return TrialOutcome(0.93 if good else 0.13)

    r = run_search(space, evaluate, storage=f"sqlite:///{tmp_path / 's.db'}", study_name="p",
                   sampler=HashRandomSampler(0), n_trials=8, budget=Budget(), input_shape=(1, 8, 8), num_classes=10,
                   pruner="median", log=None)
    states = {t["number"]: t["state"] for t in r.trials}
    assert [states[n] for n in (6, 7)] == ["PRUNED", "PRUNED"]
    assert trained_epochs[6] == 1 and trained_epochs[0] == 4  # pruned after its first epoch: no wasted training
    assert all(states[n] == "COMPLETE" for n in range(6))


def test_latency_flag_parsing():
    from archkd.cli import _latency

    assert _latency("5ms") == 5.0 and _latency("0.5s") == 500.0 and _latency("2") == 2.0
