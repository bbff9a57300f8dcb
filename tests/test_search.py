import json
import math
import os
import subprocess
import time

import numpy as np
import optuna
import pytest

from archkd import api
from archkd.errors import ArchkdError
from archkd.search import (Budget, HashRandomSampler, TrialOutcome, apply_recipe, create_sampler, record_constraints,
                           run_search)
from archkd.spaces import CategoricalDim, SearchSpace, create_space, register_space

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
    from archkd.cli.parser import _latency

    assert _latency("5ms") == 5.0 and _latency("0.5s") == 500.0 and _latency("2") == 2.0


def _kw(tmp_path, **over):
    kw = dict(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="s", budget=Budget(), input_shape=(1, 8, 8),
              num_classes=10, log=None)
    return {**kw, **over}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_feasible_search_samples_within_a_tight_budget(tmp_path, seed):
    """The README's `--max-params 30000 --n-trials 8` on the default space: every trial fits, none is wasted."""
    space = create_space("stages")
    budget = Budget(max_params=30_000)
    sampler = create_sampler("random", seed, space, feasible=budget.feasibility(space, (1, 8, 8), 10))
    r = run_search(space, _fake_evaluate([]), sampler=sampler, n_trials=8, **_kw(tmp_path, budget=budget))
    assert [t["state"] for t in r.trials] == ["COMPLETE"] * 8
    assert all(t["params"] <= 30_000 for t in r.trials)


def test_over_budget_trials_carry_optuna_constraints(tmp_path):
    space = create_space("stages", widths=(8, 64))
    budget = Budget(max_params=20_000)
    calls: list[int] = []
    run_search(space, _fake_evaluate(calls), sampler=HashRandomSampler(0), n_trials=3,
               **_kw(tmp_path, budget=budget))  # budget-blind draws: some candidates break the budget
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}")
    over = [t for t in study.trials if t.user_attrs["params"] > 20_000]
    within = [t for t in study.trials if t.user_attrs["params"] <= 20_000]
    assert over and len(within) == 3 and len(calls) == 3  # over-budget candidates cost no training
    for t in over:  # infeasible in Optuna's own terms: COMPLETE with a positive constraint value
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert t.user_attrs["constraint_names"] == ["params"]
        assert t.constraints["0"] == pytest.approx(t.user_attrs["params"] / 20_000 - 1) and t.constraints["0"] > 0
        assert t.system_attrs["constraints"] == [t.constraints["0"]]  # the list optuna-dashboard reads
    assert all(t.constraints["0"] <= 0 for t in within)
    assert study.best_trial.user_attrs["params"] <= 20_000  # Optuna's best_trial skips infeasible trials


def test_tpe_with_constraints_leaves_the_over_budget_region_faster():
    """TPE told the budget excess (constraint values) proposes fewer over-budget candidates than TPE that sees only
    their reward 0, on the default space at the README's 30k-parameter budget (4 seeds, trials 10–40)."""
    space = create_space("stages")
    budget = Budget(max_params=30_000)
    memo: dict = {}

    def measure(cfg):
        key = json.dumps(cfg, sort_keys=True)
        if key not in memo:
            memo[key] = budget.measure(space.build(cfg, (1, 8, 8), 10), (1, 8, 8))
        return memo[key]

    def over_budget(seed: int, constrained: bool) -> int:
        study = optuna.create_study(direction="maximize",
                                    sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=10))
        n = 0
        for i in range(40):
            t = study.ask()
            m = measure(space.suggest(t))
            if constrained:
                record_constraints(study, t, budget.constraints(m))
            bad = bool(budget.violations(m))
            study.tell(t, 0.0 if bad else math.log(m["params"]) / 12)  # bigger is better within the budget
            n += bad and i >= 10
        return n

    blind = sum(over_budget(s, False) for s in range(4))
    told = sum(over_budget(s, True) for s in range(4))
    assert told < 0.85 * blind, (told, blind)


def test_a_changed_study_definition_is_refused(tmp_path):
    space = create_space("stages", widths=(8,))
    kw = _kw(tmp_path)
    run_search(space, _fake_evaluate([]), sampler=HashRandomSampler(0), n_trials=1,
               definition={"budget": {"max_params": 30000}, "seed": 0}, **kw)
    run_search(space, _fake_evaluate([]), sampler=HashRandomSampler(0), n_trials=2,  # same definition: continues
               definition={"budget": {"max_params": 30000}, "seed": 0}, **kw)
    with pytest.raises(ArchkdError) as e:
        run_search(space, _fake_evaluate([]), sampler=HashRandomSampler(0), n_trials=2,
                   definition={"budget": {"max_params": 20000}, "seed": 0}, **kw)
    msg = str(e.value)
    assert "budget.max_params 30000 → 20000" in msg and "budget.max_params=30000" in msg and "--name" in msg


def test_changed_budget_on_the_cli_is_a_one_line_error(tmp_path, capsys, teacher_ckpt):
    from archkd.cli import main

    args = ["search", "--teacher", teacher_ckpt, "--runs-dir", str(tmp_path), "--name", "b", "--n-trials", "1",
            "--trial-epochs", "1", "--max-params", "30000", "threads=1", "search.space_kwargs={widths: [8], depths: [1]}"]
    with pytest.raises(SystemExit) as ok:
        main(args)
    assert ok.value.code == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(args[:-3] + ["20000"] + args[-2:])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "was made for another search" in err[0]


@register_space("_family_test")
class _FamilySpace(SearchSpace):
    """A conditional space: a family choice whose knobs exist only under it."""

    name = "_family_test"

    def arch_dims(self):
        return [CategoricalDim("family", ("stagenet", "mnasnet")),
                CategoricalDim("width", (8, 16), when=("family", ("stagenet",))),
                CategoricalDim("op", ("dwsep", "conv"), when=("family", ("mnasnet",)))]

    def smallest(self):
        return {"family": "stagenet", "width": 8}

    def spec(self, config, input_shape, num_classes):
        if config["family"] == "stagenet":
            return create_space("stages", num_stages=1, widths=(config["width"],), depths=(1,), kernels=(3,)).spec(
                {"depth_0": 1, "width_0": config["width"], "kernel_0": 3}, input_shape, num_classes)
        mnas = create_space("mnas", num_stages=1, layers=(1,), width_multipliers=(1.0,))
        return mnas.spec({**mnas.smallest(), "op_0": config["op"]}, input_shape, num_classes)


def test_recipe_and_conditional_dimensions_reach_the_trial(tmp_path):
    space = create_space("_family_test", recipe={"distill.temperature": [1.0, 4.0],
                                                 "train.lr": {"low": 0.01, "high": 0.1, "log": True}})
    seen = []

    def evaluate(c, report):
        seen.append(c)
        return TrialOutcome(0.5)

    sampler = create_sampler("random", 0, space, feasible=lambda cfg: True)
    r = run_search(space, evaluate, sampler=sampler, n_trials=12, **_kw(tmp_path))
    for c in seen:
        assert set(c.recipe) == {"distill.temperature", "train.lr"} and 0.01 <= c.recipe["train.lr"] <= 0.1
        knob = "width" if c.config["family"] == "stagenet" else "op"
        other = "op" if knob == "width" else "width"
        assert knob in c.config and other not in c.config  # only the chosen family's knobs exist
        assert c.spec["name"] == c.config["family"]
    assert {c.config["family"] for c in seen} == {"stagenet", "mnasnet"}
    assert all(t["recipe"] for t in r.trials)
    from archkd.config import DistillConfig, TrainConfig

    train, distill = apply_recipe(TrainConfig(), DistillConfig(), {"distill.temperature": 1.0, "train.lr": 0.02})
    assert distill.temperature == 1.0 and train.lr == 0.02 and train.epochs == TrainConfig().epochs


def test_bad_recipe_key_is_a_user_error():
    with pytest.raises(ArchkdError, match="not a training-recipe setting"):
        create_space("stages", recipe={"train.epochs": [1, 2]})
    with pytest.raises(ArchkdError, match="list of choices"):
        create_space("stages", recipe={"distill.alpha": 0.5})


def test_uniform_draws_map_through_one_function():
    from optuna.distributions import IntDistribution

    from archkd.spaces import FloatDim, IntDim, from_uniform

    assert IntDim("d", 1, 3).sample(0.99) == 3 == from_uniform(IntDistribution(1, 3), 0.99)
    assert FloatDim("f", 1.0, 100.0, log=True).sample(0.5) == pytest.approx(10.0)
    assert {IntDim("l", 1, 8, log=True).sample(u / 100) for u in range(100)} == set(range(1, 9))


def _running_trial(study, lease):
    t = study.ask()
    t.suggest_int("x", 0, 9)
    if lease is not None:
        t.set_user_attr("archkd_lease", {**lease, "trial": t.number})
    return t


def test_only_stale_leases_are_taken_over(tmp_path):
    """Judged on the reclaiming worker's own clock: a heartbeat counter that stops moving for `grace` seconds, or a
    dead process on this host (at once). Live leases, whatever their timestamps say, are left alone."""
    from archkd.search.lease import HOST, Worker

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'l.db'}", direction="maximize")
    dead = subprocess.Popen(["true"])
    dead.wait()
    skewed = time.time() - 7200  # another host's clock two hours behind: must not matter
    live_here = _running_trial(study, {"worker": "w1", "host": HOST, "pid": os.getppid(), "beat": 1, "time": skewed})
    dead_here = _running_trial(study, {"worker": "w2", "host": HOST, "pid": dead.pid, "beat": 1, "time": skewed})
    live_away = _running_trial(study, {"worker": "w3", "host": "elsewhere", "pid": 1, "beat": 1, "time": skewed})
    stale_away = _running_trial(study, {"worker": "w4", "host": "elsewhere", "pid": 1, "beat": 7, "time": skewed})
    worker = Worker(study, heartbeat=0.05, grace=0.3)
    assert worker.reclaim() == [dead_here.number]  # the others are only being observed so far
    time.sleep(0.4)
    for t, who in ((live_here, "w1"), (live_away, "w3")):  # their workers beat meanwhile
        t.set_user_attr("archkd_lease", {"worker": who, "host": t.user_attrs["archkd_lease"]["host"], "pid": 1,
                                         "beat": 2, "time": skewed, "trial": t.number})
    assert worker.reclaim() == [stale_away.number]
    states = {t.number: t.state for t in study.trials}
    assert states[live_here.number] == states[live_away.number] == optuna.trial.TrialState.RUNNING
    retries = [t for t in study.trials if t.state == optuna.trial.TrialState.WAITING]
    assert sorted(t.system_attrs["failed_trial"] for t in retries) == sorted([dead_here.number, stale_away.number])
    assert {t.params["x"] for t in retries} == {dead_here.params["x"], stale_away.params["x"]}  # same parameters
    assert worker.reclaim() == []  # taken over once, not twice; live leases still alone


def test_a_worker_whose_trial_was_taken_over_moves_on(tmp_path):
    """If another worker took this worker's trial (its lease looked stale), the loop drops it without a traceback
    and keeps searching."""
    from archkd.search.lease import Worker

    space = create_space("stages", widths=(8,))
    kw = _kw(tmp_path)
    trained = []

    def evaluate(c, report):
        trained.append(c.number)
        if c.number == 0:  # meanwhile another worker fails this trial and re-queues it
            study = optuna.load_study(study_name="s", storage=kw["storage"])
            t = study.trials[0]
            study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
            Worker(study).retry(study, study._storage.get_trial(t._trial_id))
            time.sleep(0.3)
        report(0, 0.5)
        return TrialOutcome(0.5)

    r = run_search(space, evaluate, sampler=HashRandomSampler(0), n_trials=2, heartbeat=0.1, grace=1.0, **kw)
    assert len([t for t in r.trials if t["state"] == "COMPLETE"]) == 2
    assert trained[0] == 0 and trained[1] == 1  # the re-queued copy of trial 0 ran as trial 1


def test_akd_policy_learns_past_trials_still_running(tmp_path):
    """A trial RUNNING on another worker does not freeze the controller: later finished trials still update it."""
    space = create_space("mnas", num_stages=1)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'a.db'}", direction="maximize",
                                sampler=create_sampler("akd", 0, space, batch_size=2))
    pending = study.ask()
    space.suggest(pending)  # trial 0 stays RUNNING (another worker)
    for _ in range(4):
        t = study.ask()
        space.suggest(t)
        t.set_user_attr("reward", 0.5)
        study.tell(t, 0.5)
    sampler = create_sampler("akd", 0, space, batch_size=2)
    sampler.sync(study)
    assert sampler.updates == 2 and sampler.consumed == 4


def test_a_soft_budget_trains_over_budget_candidates_and_penalises_them(tmp_path):
    """budget.mode=penalty: nothing is skipped; value = accuracy − penalty · relative excess."""
    from archkd.config import BudgetConfig

    space = create_space("stages", widths=(8, 64))
    budget = Budget.from_config(BudgetConfig(max_params=20_000, mode="penalty", penalty=0.5))
    res = run_search(space, lambda c, report: TrialOutcome(0.9), storage=f"sqlite:///{tmp_path / 's.db'}",
                     study_name="soft", sampler=HashRandomSampler(0, space), n_trials=6, budget=budget,
                     input_shape=(1, 8, 8), num_classes=10, log=None)
    rows = res.trials
    assert len(rows) == 6 and all(r["state"] == "COMPLETE" for r in rows)
    over = [r for r in rows if r["params"] > 20_000]
    assert over, "the seed should draw some over-budget candidates"
    for r in rows:
        excess = max(0.0, r["params"] / 20_000 - 1)
        assert r["reward"] == pytest.approx(0.9 - 0.5 * excess)
