"""A search interrupted and restarted proposes what the uninterrupted search proposed, for every sampler, and a
sampler's proposal equal to an earlier trial is neither trained again nor counted towards ``n_trials``.

The trial objective here is a deterministic function of the configuration (no training): what is compared is the
sequence of configurations the samplers propose, which is what a restart used to change (Optuna's TPE and GP samplers
seed their generator once, so a restarted process replayed their first draws and proposed earlier trials again).
"""
from __future__ import annotations

import json
import zlib

import optuna
import pytest

from archkd.search import Budget, TrialOutcome, create_sampler, run_search
from archkd.spaces import create_space

optuna.logging.set_verbosity(optuna.logging.WARNING)

METHODS = ["random", "tpe", "gp", "autokd", "autokd-gp", "trade", "akd"]
N = 8


def _value(config: dict) -> float:
    """A smooth-ish, deterministic score of a configuration, so model-based samplers have something to follow."""
    return 0.5 + 0.01 * sum(v for k, v in config.items() if k.startswith("width")) / 3 \
        + 0.001 * (zlib.crc32(json.dumps(config, sort_keys=True).encode()) % 100)


def _evaluate(seen: list, stop_at: int | None = None):
    def evaluate(c, report):
        if stop_at is not None and len(seen) == stop_at:
            raise KeyboardInterrupt  # Ctrl-C in the middle of a trial
        seen.append(json.dumps(c.config, sort_keys=True))
        return TrialOutcome(_value(c.config))

    return evaluate


def _search(tmp_path, method: str, name: str, evaluate, n_trials: int = N):
    space = create_space("stages", widths=(8, 16, 24, 32), depths=(1, 2))
    budget = Budget(max_params=60_000)
    # small start-up designs, so that within 8 trials each method's own model proposes (not only its random start)
    options = {"trade": {"n_init": 3}, "akd": {"batch_size": 3}, "tpe": {"n_startup_trials": 3},
               "gp": {"n_startup_trials": 3}}.get(method, {})
    sampler = create_sampler(method, seed=5, space=space,
                             feasible=budget.feasibility(space, (1, 8, 8), 10), **options)
    return run_search(space, evaluate, storage=f"sqlite:///{tmp_path / name}.db", study_name="s", sampler=sampler,
                      n_trials=n_trials, budget=budget, input_shape=(1, 8, 8), num_classes=10, log=None)


def _trained(res) -> list[str]:
    return [json.dumps(r["config"], sort_keys=True)
            for r in sorted(res.trials, key=lambda r: r["number"]) if r["state"] == "COMPLETE"]


@pytest.mark.parametrize("method", METHODS)
def test_a_restarted_search_proposes_what_the_uninterrupted_one_did(tmp_path, method):
    ref: list = []
    uninterrupted = _trained(_search(tmp_path, method, "ref", _evaluate(ref)))
    assert len(uninterrupted) == N and len(set(uninterrupted)) == N  # no configuration trained twice

    seen: list = []
    with pytest.raises(KeyboardInterrupt):
        _search(tmp_path, method, "cut", _evaluate(seen, stop_at=3))  # interrupted during the 4th trial
    for _ in range(2):  # a new process (a new sampler) interrupted one trial later, then at once in the retry
        with pytest.raises(KeyboardInterrupt):
            _search(tmp_path, method, "cut", _evaluate(seen, stop_at=4))
    res = _search(tmp_path, method, "cut", _evaluate(seen))
    assert _trained(res) == uninterrupted
    assert seen == uninterrupted  # every configuration trained once, in the same order


def test_a_repeated_proposal_is_redrawn_and_not_counted(tmp_path):
    """A space of 4 configurations searched for 4 trials: a random sampler hits repeats, which must not count."""
    space = create_space("stages", num_stages=1, widths=(8, 16), depths=(1,), kernels=(3, 5))
    budget = Budget(max_params=10**6)
    seen: list = []
    res = run_search(space, _evaluate(seen), storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s",
                     sampler=create_sampler("random", seed=1, space=space), n_trials=4, budget=budget,
                     input_shape=(1, 8, 8), num_classes=10, log=None)
    assert len(seen) == len(set(seen)) == 4  # all four configurations, each trained once
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}")
    repeats = [t for t in study.trials if t.user_attrs.get("archkd_state") == "DUPLICATE"]
    assert repeats, "the test space is small enough that random draws repeat"
    assert all(t.state == optuna.trial.TrialState.FAIL and "duplicate_of" in t.user_attrs for t in repeats)
    assert len([r for r in res.trials if r["state"] == "COMPLETE"]) == 4


def test_an_exhausted_space_is_a_user_error(tmp_path):
    from archkd.errors import ArchkdError

    space = create_space("stages", num_stages=1, widths=(8,), depths=(1,), kernels=(3,))
    with pytest.raises(ArchkdError, match="exhausted"):
        run_search(space, _evaluate([]), storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s",
                   sampler=create_sampler("random", seed=1, space=space), n_trials=2, budget=Budget(),
                   input_shape=(1, 8, 8), num_classes=10, log=None, max_attempts=5)


def test_trade_does_not_propose_its_incumbent_again(tmp_path):
    """The reported case: n_init 3 and 6 trials gave trials 3-5 as copies of trial 2."""
    seen: list = []
    res = _search(tmp_path, "trade", "t", _evaluate(seen), n_trials=6)
    assert len(seen) == len(set(seen)) == 6
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 't'}.db")
    assert not [t for t in study.trials if t.user_attrs.get("archkd_state") == "DUPLICATE"]
    assert len(_trained(res)) == 6


@pytest.mark.parametrize("method", ["tpe", "nsga2"])
def test_a_sampler_stuck_on_trained_points_moves_on_with_a_recorded_fallback(tmp_path, method):
    """The reported case: multi-objective TPE on a small discrete space where every student scored the same proposed
    trained configurations 80 times in a row and the search died with "the space looks exhausted". After
    ``STUCK_AFTER`` repeats in a row the next proposal is a random draw recorded as ``fallback``."""
    from archkd.search.pareto import Objectives
    from archkd.search.samplers import STUCK_AFTER

    space = create_space("stages", num_stages=1, widths=(8, 16), depths=(1, 2), kernels=(3, 5))  # 8 configurations
    seen: list = []

    def flat(c, report):  # every student the same: a model has nothing to tell apart
        seen.append(json.dumps(c.config, sort_keys=True))
        return TrialOutcome(0.5)

    opts = {"tpe": {"n_startup_trials": 2}, "nsga2": {"population_size": 4}}[method]
    res = run_search(space, flat, storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s",
                     sampler=create_sampler(method, seed=0, space=space, n_trials=6, **opts), n_trials=6,
                     budget=Budget(), input_shape=(1, 8, 8), num_classes=10, log=None, max_attempts=20,
                     objectives=Objectives.parse(["accuracy", "params"]))
    assert len(seen) == len(set(seen)) == 6 and len(_trained(res)) == 6
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}")
    rows = sorted(study.trials, key=lambda t: t.number)
    for i, t in enumerate(rows):
        stuck = i >= STUCK_AFTER and all(r.user_attrs.get("archkd_state") == "DUPLICATE" for r in rows[i - STUCK_AFTER:i])
        assert (t.system_attrs.get("archkd_proposer") == "fallback") == stuck
    assert any(t.system_attrs.get("archkd_proposer") == "fallback" for t in rows)  # the case arose and was handled
