"""TRADE: TuRBO-1's trust-region rules, the encoding, TuRBO against random search on standard test functions, a
sampler rebuilt from its study, and `--method trade` end to end (the multifamily space: test_multifamily.py)."""
from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
import torch

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


def test_the_gp_is_a_scaled_matern_five_halves_with_one_lengthscale_per_coordinate():
    from gpytorch.kernels import MaternKernel, ScaleKernel

    from archkd.search.trust_region import fit_gp

    d = 40
    rng = np.random.default_rng(0)
    X = rng.random((6, d))
    gp = fit_gp(X, X[:, 0] - X[:, 1])
    k = gp.covar_module
    assert isinstance(k, ScaleKernel) and isinstance(k.base_kernel, MaternKernel)
    assert k.base_kernel.nu == 2.5 and k.base_kernel.ard_num_dims == d
    ls = k.base_kernel.lengthscale.detach()
    assert ls.shape[-1] == d and ls.dtype == torch.float64
    assert ((ls >= 0.005 - 1e-9) & (ls <= 4.0 + 1e-9)).all()  # TuRBO's bounds hold after the fit
    assert 0.05 - 1e-9 <= float(k.outputscale.detach()) <= 20.0 + 1e-9
    assert 5e-4 - 1e-9 <= float(gp.likelihood.noise.detach()) <= 0.2 + 1e-9
    assert type(gp.outcome_transform).__name__ == "Standardize"


def test_sizes_follow_the_trial_count_on_the_multifamily_space():
    from archkd.spaces import create_space

    space = create_space("multifamily")
    d = Encoding(space).dim
    assert d >= 30
    s8 = create_sampler("trade", space=space, n_trials=8)
    assert s8.n_init == 2  # a quarter of 8 trials: 6 left to the GP
    after_design = 8 - s8.n_init
    assert s8.failure_tolerance <= after_design // 2  # the region can halve (at least twice) within the search
    assert s8.failure_tolerance < d  # not TuRBO's τ_f = D, which 8 trials never reach
    assert s8._region().failure_tolerance == s8.failure_tolerance
    assert [(s.n_init, s.failure_tolerance) for s in
            (create_sampler("trade", space=space, n_trials=n) for n in (16, 32))] == [(4, 3), (8, 6)]
    # without a trial count: the old defaults; explicit options win over the derived sizes
    assert (TuRBOSampler(space).n_init, TuRBOSampler(space).failure_tolerance) == (10, d)
    s = create_sampler("trade", space=space, n_trials=8, n_init=3, failure_tolerance=5, batch_size=2)
    assert (s.n_init, s.failure_tolerance, s.batch_size, s._region().failure_tolerance) == (3, 5, 2, 5)


def test_failures_at_the_sized_tolerance_shrink_the_region_within_eight_trials():
    from archkd.spaces import create_space

    s = create_sampler("trade", space=create_space("multifamily"), n_trials=8)
    obs = [(np.zeros(s.encoding.dim), 1.0)] * 8  # a design, then 6 trials that never improve
    state, restart, current = s.replay(obs)
    assert s.failure_tolerance == 2 and state.length == L_INIT / 8 and restart == 0  # 6 failures: 3 halvings


def test_advise_warns_when_the_design_takes_every_trial():
    from archkd.spaces import create_space

    space = create_space("multifamily")
    msg = create_sampler("trade", space=space, n_trials=2).advise(2)
    assert msg and "--n-trials" in msg and "\n" not in msg
    assert create_sampler("trade", space=space, n_trials=8).advise(8) is None
    msg = create_sampler("trade", space=space, n_trials=8, n_init=10).advise(8)
    assert msg and "n_init" in msg


def test_trade_at_eight_trials_proposes_from_its_model_and_never_repeats(tmp_path):
    """The path a user takes: create_sampler with the search's trial count, run_search, a deterministic objective
    (no training). Only ``n_candidates`` is smaller than the default (1000, not 4000 Thompson candidates), to keep the
    test fast: the sizes from ``n_trials`` and the proposer records do not depend on it."""
    import json
    import zlib

    from archkd.search import Budget, TrialOutcome, run_search
    from archkd.spaces import create_space

    space = create_space("multifamily")
    budget = Budget(max_params=60_000)
    seen: list = []

    def evaluate(c, report):
        seen.append(json.dumps(c.config, sort_keys=True))
        return TrialOutcome(0.5 + 0.001 * (zlib.crc32(seen[-1].encode()) % 100))

    sampler = create_sampler("trade", seed=0, space=space, feasible=budget.feasibility(space, (1, 8, 8), 10),
                             n_trials=8, n_candidates=1000)
    assert sampler.n_init == 2
    url = f"sqlite:///{tmp_path / 's.db'}"
    run_search(space, evaluate, storage=url, study_name="s", sampler=sampler, n_trials=8, budget=budget,
               input_shape=(1, 8, 8), num_classes=10, log=None)
    study = optuna.load_study(study_name="s", storage=url)
    who = [t.system_attrs.get("archkd_proposer") for t in study.trials]
    assert len(who) == 8 and set(who[:2]) <= {"sobol", "fallback"}  # the 2-point design
    assert who[2:].count("model") >= 3, who  # the GP proposes within 8 trials (the region, else the whole cube)
    assert set(who[2:]) <= {"model", "fallback"}
    assert len(seen) == len(set(seen)) == 8
    assert not [t for t in study.trials if t.user_attrs.get("archkd_state") == "DUPLICATE"]


def test_each_trial_records_its_proposer():
    space = _Cube(3)
    study = optuna.create_study(direction="maximize", sampler=TuRBOSampler(space, seed=0, n_init=3,
                                                                           n_candidates=200))
    for _ in range(5):
        t = study.ask()
        study.tell(t, float(sum(space.suggest(t).values())))
    assert [t.system_attrs["archkd_proposer"] for t in study.trials] == ["sobol"] * 3 + ["model"] * 2
