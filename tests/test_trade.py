"""TRADE: TuRBO-1's trust-region rules, the encoding, TuRBO against random search on standard test functions, a
sampler rebuilt from its study, and `--method trade` end to end (the multifamily space: test_multifamily.py)."""
from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from archkd.search import HashRandomSampler, create_sampler
from archkd.search.trust_region import (L_INIT, L_MAX, L_MIN, Encoding, TrustRegion, TuRBOSampler, candidates,
                                        perturbation_probability, region_bounds)
from archkd.spaces import CategoricalDim, FloatDim, IntDim, SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_three_successes_expand_up_to_l_max():
    tr = TrustRegion(dim=4)
    tr.observe([1.0])
    for k in range(3):
        tr.update([1.0 + 0.1 * (k + 1)])
    assert tr.length == 2 * L_INIT
    for k in range(3):
        tr.update([2.0 + 0.1 * (k + 1)])
    assert tr.length == L_MAX  # 3.2 capped


def test_failures_shrink_and_a_collapsed_region_restarts():
    tr = TrustRegion(dim=8, batch_size=2)
    assert tr.failure_tolerance == math.ceil(max(4 / 2, 8 / 2)) == 4
    assert TrustRegion(dim=3, batch_size=1).failure_tolerance == 4
    assert TrustRegion(dim=30, batch_size=4).failure_tolerance == 8
    tr.observe([1.0])
    for _ in range(4):
        tr.update([0.5])
    assert tr.length == L_INIT / 2 and not tr.restart
    while not tr.restart:
        tr.update([0.5])
    assert tr.length < L_MIN


def test_an_improvement_below_the_tolerance_is_a_failure():
    tr = TrustRegion(dim=2)
    tr.observe([10.0])
    tr.update([10.0 + 0.5e-3 * 10])  # < 1e-3·|best|
    assert tr.failures == 1 and tr.successes == 0
    tr.update([10.0 + 2e-3 * 10])
    assert tr.successes == 1 and tr.failures == 0


def test_region_is_weighted_by_lengthscales_and_clipped():
    lb, ub = region_bounds(np.array([0.5, 0.5, 0.99]), np.array([1.0, 4.0, 0.25]), 0.2)
    w = np.array([1.0, 4.0, 0.25])  # geometric mean 1 already
    assert np.allclose((ub - lb)[:2], 0.2 * w[:2])
    assert ub[2] == 1.0 and lb[2] == pytest.approx(0.99 - 0.025)  # clipped at the top only
    lb2, ub2 = region_bounds(np.full(3, 0.5), np.array([2.0, 8.0, 0.5]), 0.4)  # scaled lengthscales: same box
    lb3, ub3 = region_bounds(np.full(3, 0.5), np.array([1.0, 4.0, 0.25]), 0.4)
    assert np.allclose(lb2, lb3) and np.allclose(ub2, ub3)


def test_candidates_perturb_with_probability_min_20_over_d():
    assert perturbation_probability(10) == 1.0 and perturbation_probability(40) == 0.5
    center = np.full(40, 0.5)
    pts = candidates(center, np.zeros(40), np.ones(40), 2000, seed=0)
    changed = pts != center
    assert changed.any(axis=1).all()  # at least one coordinate each
    assert changed.mean() == pytest.approx(0.5, abs=0.03)


class _Mixed(SearchSpace):
    name = "mixed"

    def arch_dims(self):
        return [CategoricalDim("family", ("a", "b")), IntDim("a_depth", 1, 4, when=("family", ("a",))),
                FloatDim("b_width", 0.5, 2.0, log=True, when=("family", ("b",))), IntDim("k", 2, 64, log=True)]

    def spec(self, config, input_shape, num_classes):
        raise NotImplementedError


def test_encoding_round_trips_with_one_hot_and_conditional_knobs():
    space = _Mixed()
    enc = Encoding(space)
    assert enc.dim == 2 + 3
    rng = np.random.default_rng(0)
    for _ in range(50):
        config = space.sample_rng(rng)
        back = enc.decode(enc.encode(config))
        assert back.keys() == config.keys()
        for k, v in config.items():
            assert back[k] == pytest.approx(v) if isinstance(v, float) else back[k] == v


def _hartmann6(x: np.ndarray) -> float:
    a = np.array([1.0, 1.2, 3.0, 3.2])
    A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8],
                  [17, 8, 0.05, 10, 0.1, 14]])
    P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                         [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
    return float(np.sum(a * np.exp(-np.sum(A * (x - P) ** 2, axis=1))))  # maximum 3.32237


def _ackley(x: np.ndarray) -> float:
    z = 10.0 * x - 5.0  # [0, 1]^d -> [-5, 5]^d
    d = len(z)
    return -float(-20 * np.exp(-0.2 * np.sqrt(np.sum(z ** 2) / d)) - np.exp(np.sum(np.cos(2 * np.pi * z)) / d)
                  + 20 + np.e)  # maximum 0 at the centre


class _Cube(SearchSpace):
    def __init__(self, d):
        self.d = d

    name = "cube"

    def arch_dims(self):
        return [FloatDim(f"x{i}", 0.0, 1.0) for i in range(self.d)]

    def spec(self, config, input_shape, num_classes):
        raise NotImplementedError


def _run(sampler, space, f, n):
    study = optuna.create_study(direction="maximize", sampler=sampler)
    best = []
    for _ in range(n):
        t = study.ask()
        c = space.suggest(t)
        study.tell(t, f(np.array([c[f"x{i}"] for i in range(space.d)])))
        best.append(study.best_value)
    return best


@pytest.mark.parametrize("f, d, n, target", [(_hartmann6, 6, 40, 2.0), (_ackley, 10, 40, -8.0)])
def test_turbo_reaches_a_target_in_fewer_evaluations_than_random(f, d, n, target):
    space = _Cube(d)
    wins, turbo_evals, random_evals = 0, [], []
    for seed in range(3):
        t = _run(TuRBOSampler(space, seed=seed, n_candidates=500), space, f, n)
        r = _run(HashRandomSampler(seed, space=space), space, f, n)
        te = next((i + 1 for i, v in enumerate(t) if v >= target), n + 1)
        re = next((i + 1 for i, v in enumerate(r) if v >= target), n + 1)
        turbo_evals.append(te)
        random_evals.append(re)
        wins += t[-1] > r[-1]
    assert np.median(turbo_evals) < np.median(random_evals), (turbo_evals, random_evals)
    assert wins >= 2


def test_a_sampler_rebuilt_from_the_study_proposes_what_the_uninterrupted_one_would(tmp_path):
    space = _Mixed()
    f = lambda c: (1.0 if c["family"] == "a" else 0.5) + 0.01 * c["k"]  # noqa: E731

    def propose(study, sampler_factory, n):
        out = []
        for _ in range(n):
            study.sampler = sampler_factory()
            t = study.ask()
            c = space.suggest(t)
            study.tell(t, f(c))
            out.append(c)
        return out

    make = lambda: TuRBOSampler(space, seed=3, n_init=4, n_candidates=200)  # noqa: E731
    whole = propose(optuna.create_study(direction="maximize", sampler=make()), make, 8)
    url = f"sqlite:///{tmp_path / 's.db'}"
    first = propose(optuna.create_study(storage=url, study_name="x", direction="maximize", sampler=make()), make, 5)
    again = optuna.load_study(storage=url, study_name="x", sampler=make())  # a restarted process
    assert first + propose(again, make, 3) == whole


def test_pending_trials_get_different_points():
    space = _Cube(3)
    study = optuna.create_study(direction="maximize", sampler=TuRBOSampler(space, seed=0, n_init=3))
    for _ in range(3):
        t = study.ask()
        study.tell(t, float(sum(space.suggest(t).values())))
    a, b = study.ask(), study.ask()  # two workers ask before either tells
    assert space.suggest(a) != space.suggest(b)


def test_method_trade_searches_the_multifamily_space(tmp_path, teacher_ckpt):
    from archkd import api
    from archkd.config import load_config

    cfg = load_config(None, ["search.method=trade", f"runs_dir={tmp_path}", "name=t", "search.n_trials=4",
                             "search.epochs=1", "budget.max_params=60000", f"teacher.path={teacher_ckpt}",
                             "search.sampler_options={n_init: 3, n_candidates: 300}", "threads=1"])
    assert cfg.search.space == "multifamily"
    r = api.search(cfg, log=None)
    done = [t for t in r["trials"] if t["state"] == "COMPLETE"]
    assert len(done) == 4 and all(t["params"] <= 60000 for t in done)
    assert isinstance(create_sampler("trade", space=_Cube(2)), TuRBOSampler)
