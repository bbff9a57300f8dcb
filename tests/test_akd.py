"""AKD: the MnasNet-style space, the LSTM controller as a sampler, the KD-guided latency reward."""
import numpy as np
import optuna
import pytest
import torch

from archkd import api
from archkd.search import Budget, Reward, TrialOutcome, create_sampler, pareto_front, run_search
from archkd.search.controller import Controller, PolicyConfig, PolicyTrainer
from archkd.spaces import create_space

from conftest import small_config

CHOICES = [4, 2, 2, 2, 4, 3] * 2
TARGET = [(i * 7) % n for i, n in enumerate(CHOICES)]


@pytest.mark.parametrize("algorithm", ["ppo", "reinforce"])
def test_controller_learns_a_synthetic_reward(algorithm):
    """Reward = share of tokens equal to a known sequence; within 320 samples its probability passes 0.5."""
    ctl = Controller(CHOICES, seed=0)
    trainer = PolicyTrainer(ctl, PolicyConfig(algorithm=algorithm, batch_size=8))
    g = torch.Generator().manual_seed(0)

    def prob():
        with torch.no_grad():
            return float(ctl.log_prob(torch.tensor([TARGET]))[0][0].exp())

    start = prob()
    for _ in range(40):
        toks = [ctl.sample(g) for _ in range(8)]
        trainer.update(toks, [float(np.mean([a == b for a, b in zip(t, TARGET)])) for t in toks])
    assert start < 1e-4 and prob() > 0.5


def test_reward_formula_both_sides_of_target():
    r = Reward(target=10.0)
    assert r(0.8, {"latency_ms": 10.0}) == pytest.approx(0.8)
    assert r(0.8, {"latency_ms": 5.0}) == pytest.approx(0.8 * 0.5 ** -0.07)  # under target: small bonus (α)
    assert r(0.8, {"latency_ms": 20.0}) == pytest.approx(0.8 * 2.0 ** -0.07)  # over target: penalty (β)
    asym = Reward(target=10.0, alpha=-0.02, beta=-0.5)
    assert asym(1.0, {"latency_ms": 5.0}) == pytest.approx(0.5 ** -0.02)
    assert asym(1.0, {"latency_ms": 20.0}) == pytest.approx(2.0 ** -0.5)
    hard = Reward.make(10.0, mode="hard")
    assert hard(0.7, {"latency_ms": 3.0}) == pytest.approx(0.7)  # α = 0: accuracy alone within target
    assert hard(0.7, {"latency_ms": 20.0}) == pytest.approx(0.35)  # β = -1
    assert Reward(target=1000, metric="params")(0.5, {"params": 4000}) == pytest.approx(0.5 * 4 ** -0.07)
    assert Reward()(0.42, {}) == 0.42


def _fill(study, sampler_space, n, reward_fn):
    for _ in range(n):
        t = study.ask()
        cfg = sampler_space.suggest(t)
        study.tell(t, reward_fn(cfg))


def test_sampler_rebuilt_from_history_proposes_the_same(tmp_path):
    space = create_space("mnas", num_stages=2)

    def reward(cfg):
        return float(sum(v == "mbconv6" for v in cfg.values()) + 0.1 * cfg["layers_0"])

    url = f"sqlite:///{tmp_path / 's.db'}"
    live = create_sampler("akd", seed=5, space=space, batch_size=4)
    study = optuna.create_study(storage=url, study_name="a", sampler=live, direction="maximize")
    _fill(study, space, 10, reward)  # the policy has learned from 2 batches
    assert live.updates == 2
    nxt_live = space.suggest(study.ask())
    fresh = create_sampler("akd", seed=5, space=space, batch_size=4)  # a restarted process / another worker
    again = optuna.load_study(storage=url, study_name="a", sampler=fresh)
    probe = again.ask()  # trial 11: the fresh sampler replays the same 10 finished trials first
    space.suggest(probe)
    assert fresh.updates == 2
    for name, p in fresh.controller.state_dict().items():
        assert torch.equal(p, live.controller.state_dict()[name]), name
    g1 = torch.Generator().manual_seed(1)
    g2 = torch.Generator().manual_seed(1)
    assert live.controller.sample(g1) == fresh.controller.sample(g2)
    assert nxt_live != {} and probe.number == 11


def test_akd_sampler_replay_equals_uninterrupted_next_proposal(tmp_path):
    space = create_space("mnas", num_stages=2)

    def reward(cfg):
        return float(cfg["op_0"] == "conv") + float(cfg["kernel_1"] == 5)

    url = f"sqlite:///{tmp_path / 'u.db'}"
    s1 = optuna.create_study(storage=url, study_name="u", sampler=create_sampler("akd", seed=1, space=space,
                                                                                 batch_size=4))
    _fill(s1, space, 8, reward)
    url2 = f"sqlite:///{tmp_path / 'v.db'}"
    s2 = optuna.create_study(storage=url2, study_name="v", sampler=create_sampler("akd", seed=1, space=space,
                                                                                  batch_size=4))
    _fill(s2, space, 5, reward)
    s2 = optuna.load_study(storage=url2, study_name="v", sampler=create_sampler("akd", seed=1, space=space,
                                                                                batch_size=4))
    _fill(s2, space, 3, reward)  # interrupted after 5 trials, restarted, 3 more
    assert [t.params for t in s1.trials] == [t.params for t in s2.trials]
    assert space.suggest(s1.ask()) == space.suggest(s2.ask())


def test_every_mnas_config_builds_small_and_large():
    rng = np.random.default_rng(0)
    small = create_space("mnas")
    for _ in range(25):
        m = small.build(small.sample_rng(rng), (3, 32, 32), 10)
        assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    m = small.build(small.sample_rng(rng), (1, 8, 8), 10)
    assert m(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    large = create_space("mnas", resolution="large", layers=(1, 2))
    assert len(large.stage_base) == 7
    for _ in range(2):
        m = large.build(large.sample_rng(rng), (3, 224, 224), 1000).eval()
        with torch.no_grad():
            assert m(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)


def test_pareto_front():
    rows = [{"state": "COMPLETE", "val_acc": a, "latency_ms": l, "number": i}
            for i, (a, l) in enumerate([(0.9, 2.0), (0.8, 1.0), (0.85, 3.0), (0.7, 0.5), (0.9, 2.5)])]
    assert [r["number"] for r in pareto_front(rows)] == [3, 1, 0]


def test_akd_search_resumes_and_rewards_latency(tmp_path, teacher_ckpt):
    cfg = small_config(tmp_path, **{"teacher.path": teacher_ckpt, "search.method": "akd", "search.space": "mnas",
                                    "search.space_kwargs": {"num_stages": 2, "layers": [1]},
                                    "search.sampler_options": {"batch_size": 2}, "search.reward_target": 0.05,
                                    "search.n_trials": 3, "budget.latency_runtime": "torch"})
    r = api.search(cfg, log=None)
    done = [t for t in r["trials"] if t["state"] == "COMPLETE"]
    assert len(done) == 3 and all(t["latency_ms"] > 0 for t in done)
    for t in done:
        assert t["reward"] == pytest.approx(Reward(target=0.05)(t["val_acc"], t))
    cfg.search.n_trials = 4
    again = api.search(cfg, log=None)  # resumes: the first 3 trials are kept, one more is trained
    assert [t["number"] for t in again["trials"][:3]] == [t["number"] for t in done]
    assert len([t for t in again["trials"] if t["state"] == "COMPLETE"]) == 4


def test_interrupted_akd_search_does_not_repeat(tmp_path):
    space = create_space("mnas", num_stages=2)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    calls = []

    def evaluate(c, report):
        calls.append(c.number)
        if c.number == 2 and len(calls) == 3:
            raise KeyboardInterrupt
        return TrialOutcome(0.5)

    kw = dict(storage=url, study_name="s", budget=Budget(), input_shape=(1, 8, 8), num_classes=10, log=None)
    with pytest.raises(KeyboardInterrupt):
        run_search(space, evaluate, sampler=create_sampler("akd", 0, space), n_trials=4, **kw)
    run_search(space, evaluate, sampler=create_sampler("akd", 0, space), n_trials=4, **kw)
    # the interrupted trial 2 is re-run (as trial 3, same architecture), then one fresh trial: 4 trained in all
    assert calls[:3] == [0, 1, 2] and calls[3:] == [3, 4]


def test_a_search_too_short_for_the_controller_to_learn_warns(tmp_path, teacher_ckpt):
    import warnings as w

    from archkd import api
    from archkd.errors import ArchkdWarning
    from archkd.search import create_sampler
    from archkd.spaces import create_space
    from conftest import small_config

    space = create_space("mnas")
    assert "close to random search" in create_sampler("akd", space=space).advise(8)  # the default n_trials, batch 8
    assert create_sampler("akd", space=space).advise(24) is None
    assert create_sampler("akd", space=space, batch_size=2).advise(8) is None
    cfg = small_config(tmp_path, **{"teacher.path": teacher_ckpt, "search.method": "akd", "search.n_trials": 2,
                                    "search.sampler_options": {"batch_size": 4}})
    with w.catch_warnings(record=True) as caught:
        w.simplefilter("always")
        api.search(cfg, log=None)
    assert any(issubclass(c.category, ArchkdWarning) and "--n-trials 12" in str(c.message) for c in caught)
