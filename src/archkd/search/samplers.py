"""Samplers: Optuna samplers behind a registry, each rebuilding its state from the study.

Why state from the study: a restarted search, or many workers on one storage, must continue the same sampling
process. The random sampler therefore draws the ``k``-th fresh trial's values from a hash of ``(seed, k, parameter)``:
nothing to persist, and a resumed run proposes exactly what the uninterrupted run would have (``sample_index`` skips
retries of interrupted trials, which re-run the parameters of the trial they replace). Optuna's own samplers (TPE,
GP) keep a random generator seeded once, at construction: a restarted process would replay their draws from the
start and propose earlier trials again. :class:`Replayed` therefore gives every fresh trial its own instance seeded by
``(seed, k)``; their other state is the study itself. Samplers never train.

Budget-aware sampling: ``feasible(config) -> bool`` (parameters and FLOPs, milliseconds per candidate) lets the random
and AKD samplers draw again until a candidate fits the budget, so a search whose space holds feasible architectures
does not fail by drawing over-budget ones. Optuna's TPE and GP samplers instead learn the over-budget region from the
constraint values every trial records.
"""
from __future__ import annotations

import zlib
from typing import Any, Callable, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution

from archkd.config import register_choices
from archkd.errors import ArchkdError
from archkd.registry import build
from archkd.spaces import SearchSpace, from_uniform

SAMPLERS: dict[str, Callable[..., optuna.samplers.BaseSampler]] = {}
register_choices("search.method", lambda: SAMPLERS)
Feasible = Callable[[dict], bool]
MAX_DRAWS = 2000


def register_sampler(name: str) -> Callable:
    def deco(fn: Callable[..., optuna.samplers.BaseSampler]) -> Callable[..., optuna.samplers.BaseSampler]:
        SAMPLERS[name] = fn
        return fn

    return deco


def create_sampler(name: str, seed: int = 0, space: SearchSpace | None = None, feasible: Feasible | None = None,
                   **options: Any) -> optuna.samplers.BaseSampler:
    """Build a registered sampler. ``space`` is given to samplers that model whole architectures, ``feasible`` to
    those that sample within the budget; ``options`` (``search.sampler_options``) go to the sampler itself."""
    return build(SAMPLERS, name, "search method", "search.sampler_options", seed=seed, space=space,
                 feasible=feasible, **options)


def sample_index(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> int:
    """The position of ``trial`` (or of the trial it retries) among the study's fresh, non-retry trials.

    Keying draws on this instead of the trial number keeps a search interrupted and resumed on the same proposals as
    an uninterrupted one: the retry of an interrupted trial gets a new number but replaces the old one.
    """
    root = trial.system_attrs.get("failed_trial", trial.number)
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.number < root and t.system_attrs.get("failed_trial") is None)


def first_feasible(draw: Callable[[int], dict], feasible: Feasible | None, max_draws: int = MAX_DRAWS) -> dict:
    """``draw(k)`` for k = 0, 1, ... until a configuration meets the budget (the last one if none does in
    ``max_draws``: the loop then records it as infeasible)."""
    config: dict = {}
    for k in range(max_draws):
        config = draw(k)
        if feasible is None or feasible(config):
            break
    return config


def _uniform(seed: int, index: int, name: str, draw: int = 0) -> float:
    return float(np.random.default_rng([seed, index, zlib.crc32(name.encode()), draw]).random())


class HashRandomSampler(optuna.samplers.BaseSampler):
    """Uniform random search whose draws depend only on (seed, fresh-trial index, parameter name).

    With ``space`` and ``feasible``, whole configurations are drawn (conditional dimensions included) and redrawn up to
    ``max_draws`` times until one fits the budget; otherwise each parameter is drawn independently.
    """

    def __init__(self, seed: int = 0, space: SearchSpace | None = None, feasible: Feasible | None = None,
                 max_draws: int = MAX_DRAWS) -> None:
        self.seed = int(seed)
        self.space, self.feasible, self.max_draws = space, feasible, int(max_draws)
        self._index: tuple[int, int] = (-1, 0)  # (trial number, its sample index)

    def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict:
        return self.space.distributions() if self.space is not None and self.feasible is not None else {}

    def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, search_space: dict) -> dict:
        if not search_space:
            return {}
        index = sample_index(study, trial)
        return first_feasible(lambda k: self.space.sample(lambda name: _uniform(self.seed, index, name, k)),
                              self.feasible, self.max_draws)

    def sample_independent(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        if self._index[0] != trial.number:  # one read of the study per trial, not one per parameter
            self._index = (trial.number, sample_index(study, trial))
        return from_uniform(param_distribution, _uniform(self.seed, self._index[1], param_name))


class Replayed(optuna.samplers.BaseSampler):
    """An Optuna sampler rebuilt for each trial, seeded by ``(seed, sample_index)``: its proposals depend only on the
    study's history and the trial's place in it, as the random, AKD and TuRBO samplers' do.

    Why a new instance per trial rather than one reseeded: samplers carry more than their generator between calls
    (the GP sampler warm-starts its kernel fit from the previous trial's), and any such carried state would make a
    restarted process propose differently from the uninterrupted one.
    """

    def __init__(self, make: Callable[[int], optuna.samplers.BaseSampler], seed: int = 0) -> None:
        self.make, self.seed = make, int(seed)
        make(self.seed)  # options that do not fit the sampler fail now, not at the first trial
        self._current: tuple[int, optuna.samplers.BaseSampler] | None = None  # (trial number, its sampler)

    def _for(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> optuna.samplers.BaseSampler:
        if self._current is None or self._current[0] != trial.number:
            index = sample_index(study, trial)
            self._current = (trial.number, self.make(int(np.random.default_rng([self.seed, index]).integers(2**31))))
        return self._current[1]

    def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict:
        return self._for(study, trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, search_space: dict) -> dict:
        return self._for(study, trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._for(study, trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self._for(study, trial).before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, state: optuna.trial.TrialState,
                    values: Sequence[float] | None) -> None:
        self._for(study, trial).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:  # the seed is (seed, trial index) by design; nothing to reseed
        pass


@register_sampler("random")
def _random(seed: int = 0, space: SearchSpace | None = None, feasible: Feasible | None = None,
            max_draws: int = MAX_DRAWS) -> optuna.samplers.BaseSampler:
    return HashRandomSampler(seed, space, feasible, max_draws)


@register_sampler("akd")
def _akd(seed: int = 0, space: SearchSpace | None = None, feasible: Feasible | None = None,
         **policy: Any) -> optuna.samplers.BaseSampler:
    from archkd.search.controller import AKDSampler, PolicyConfig

    if space is None:
        raise ArchkdError("the akd controller needs a search space", "pass space= to create_sampler")
    return AKDSampler(space, seed=seed, policy=PolicyConfig(**policy), feasible=feasible)


@register_sampler("tpe")
def _tpe(seed: int = 0, space: SearchSpace | None = None, feasible: Feasible | None = None,
         **options: Any) -> optuna.samplers.BaseSampler:
    """Optuna's TPE; it reads every trial's budget constraints (infeasible trials sort below feasible ones)."""
    return Replayed(lambda s: optuna.samplers.TPESampler(seed=s, **options), seed)


@register_sampler("gp")
def _gp(seed: int = 0, space: SearchSpace | None = None, feasible: Feasible | None = None,
        **options: Any) -> optuna.samplers.BaseSampler:
    """Optuna's Gaussian-process sampler; it models each budget constraint with a GP of its own."""
    return Replayed(lambda s: optuna.samplers.GPSampler(seed=s, **options), seed)


@register_sampler("autokd")
def _autokd(seed: int = 0, space: SearchSpace | None = None, feasible: Feasible | None = None,
            **options: Any) -> optuna.samplers.BaseSampler:
    """AutoKD's BOHB-style optimiser, model part: a multivariate TPE over the generator and KD recipe (the preset
    pairs it with Hyperband over trained epochs). Multivariate because generator dimensions interact (a graph's K
    only matters with its node count); 5 random start-up trials instead of 10, since each trial trains k networks."""
    kw = {"multivariate": True, "n_startup_trials": 5, **options}
    return Replayed(lambda s: optuna.samplers.TPESampler(seed=s, **kw), seed)


@register_sampler("autokd-gp")
def _autokd_gp(seed: int = 0, space: SearchSpace | None = None, feasible: Feasible | None = None,
               **options: Any) -> optuna.samplers.BaseSampler:
    """AutoKD with GP-based BO: Optuna's GPSampler (Matérn-5/2 kernel, log expected improvement) over the same
    vector, 5 random start-up trials."""
    kw = {"n_startup_trials": 5, **options}
    return Replayed(lambda s: optuna.samplers.GPSampler(seed=s, **kw), seed)
