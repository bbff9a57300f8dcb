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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from archkd.config import register_choices, register_presets
from archkd.errors import ArchkdError
from archkd.registry import Registry
from archkd.spaces import SearchSpace, from_uniform

SamplerFactory = Callable[..., optuna.samplers.BaseSampler]


@dataclass(frozen=True)
class Method:
    """A search method's registry entry: its sampler factory and its ``preset`` (the config defaults the method
    brings — its paper's space, recipe, pruner, reward — below anything the user sets). Calling it builds the
    sampler, so the entry is also the factory."""

    factory: SamplerFactory
    preset: Mapping[str, Any] = field(default_factory=dict)
    multi_objective: bool = False  # whether it can search several objectives at once (``search.objectives``)

    def __call__(self, *args: Any, **kwargs: Any) -> optuna.samplers.BaseSampler:
        return self.factory(*args, **kwargs)


SAMPLERS: Registry[Method] = Registry("search method", options_key="search.sampler_options",
                                      origin=lambda method: method.factory)
register_choices("search.method", SAMPLERS.names)
# config (a layer below) applies a method's preset when it loads a config; the preset stays in the sampler's entry
register_presets(lambda: {name: dict(m.preset) for name, m in SAMPLERS.items() if m.preset})
Feasible = Callable[[dict], bool]
MAX_DRAWS = 2000
# a model-based sampler that proposed this many already-trained configurations in a row gets one random draw instead
STUCK_AFTER = 3
TPE_STATES = (TrialState.COMPLETE, TrialState.PRUNED)  # the finished trials Optuna's TPE counts against its start-up


def register_sampler(name: str, preset: dict[str, Any] | None = None,
                     multi_objective: bool = False) -> Callable[[SamplerFactory], SamplerFactory]:
    """Register a sampler factory as ``search.method=name``; ``preset``: the config defaults the method brings (its
    paper's space, recipe, pruner, reward), below anything the user sets; ``multi_objective``: it can search a
    Pareto front (``search.objectives``). Returns the factory unchanged."""
    def deco(fn: SamplerFactory) -> SamplerFactory:
        SAMPLERS.register(name, Method(fn, dict(preset or {}), multi_objective))
        return fn

    return deco


def create_sampler(name: str, seed: int = 0, space: SearchSpace | None = None, feasible: Feasible | None = None,
                   n_trials: int | None = None, **options: Any) -> optuna.samplers.BaseSampler:
    """Build a registered sampler. ``space`` is given to samplers that model whole architectures, ``feasible`` to
    those that sample within the budget, ``n_trials`` (the search's trial count) to those that size their start-up
    design or batches to it; ``options`` (``search.sampler_options``) go to the sampler itself and win over what it
    would derive from ``n_trials``."""
    return SAMPLERS.build(name, seed=seed, space=space, feasible=feasible, n_trials=n_trials, **options)


PROPOSER = "archkd_proposer"


def set_proposer(study: optuna.Study, trial: optuna.trial.FrozenTrial, who: str) -> None:
    """Record who proposed ``trial``'s configuration (``init``/``sobol``: a start-up design; ``model``: the method's
    model — TPE, GP, TuRBO, the AKD policy; ``fallback``: a random draw because the model offered nothing feasible;
    ``random``). The search loop adds ``queued`` and ``retry`` itself. Why: a method whose model never proposes is
    not that method, and only a record per trial shows it."""
    study._storage.set_trial_system_attr(trial._trial_id, PROPOSER, who)


def sample_index(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> int:
    """The position of ``trial`` (or of the trial it retries) among the study's fresh, non-retry trials.

    Keying draws on this instead of the trial number keeps a search interrupted and resumed on the same proposals as
    an uninterrupted one: the retry of an interrupted trial gets a new number but replaces the old one.
    """
    root = trial.system_attrs.get("failed_trial", trial.number)
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.number < root and t.system_attrs.get("failed_trial") is None)


def stuck(study: optuna.Study, trial: optuna.trial.FrozenTrial, after: int = STUCK_AFTER) -> bool:
    """Whether the ``after`` trials before ``trial`` all proposed an already-trained configuration (the search loop
    marks them ``DUPLICATE``). Why: a model whose density has collapsed onto trained points would otherwise be asked
    again and again until the search gives up; one random draw (recorded as ``fallback``) moves it on, and depends
    only on the study's history, so a resumed search draws the same."""
    before = sorted((t for t in study.get_trials(deepcopy=False) if t.number < trial.number),
                    key=lambda t: t.number, reverse=True)[:after]
    return len(before) == after and all(t.user_attrs.get("archkd_state") == "DUPLICATE" for t in before)


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
                 max_draws: int = MAX_DRAWS, who: str = "random") -> None:
        self.seed, self.who = int(seed), who
        self.space, self.feasible, self.max_draws = space, feasible, int(max_draws)
        self._index: tuple[int, int] = (-1, 0)  # (trial number, its sample index)

    def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict:
        return self.space.distributions() if self.space is not None and self.feasible is not None else {}

    def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, search_space: dict) -> dict:
        if not search_space:
            return {}
        index = sample_index(study, trial)
        set_proposer(study, trial, self.who)
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

    def __init__(self, make: Callable[[int], optuna.samplers.BaseSampler], seed: int = 0, n_startup: int = 0,
                 startup_states: tuple = (TrialState.COMPLETE,), name: str = "model", space: SearchSpace | None = None,
                 feasible: Feasible | None = None) -> None:
        self.make, self.seed = make, int(seed)
        self.n_startup, self.startup_states, self.name = int(n_startup), startup_states, name
        self.space, self.feasible = space, feasible
        make(self.seed)  # options that do not fit the sampler fail now, not at the first trial
        self._current: tuple[int, optuna.samplers.BaseSampler] | None = None  # (trial number, its sampler)

    def _for(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> optuna.samplers.BaseSampler:
        if self._current is None or self._current[0] != trial.number:
            index = sample_index(study, trial)
            if stuck(study, trial):  # e.g. TPE on a small discrete space, whose density peaks at one trained point
                self._current = (trial.number, HashRandomSampler(self.seed, self.space, self.feasible, who="fallback"))
                set_proposer(study, trial, "fallback")
                return self._current[1]
            self._current = (trial.number, self.make(int(np.random.default_rng([self.seed, index]).integers(2**31))))
            # the wrapped sampler proposes at random until n_startup trials in these states have finished
            finished = len(study.get_trials(deepcopy=False, states=self.startup_states))
            set_proposer(study, trial, "init" if finished < self.n_startup else self.name)
        return self._current[1]

    def info(self) -> dict:
        return {"n_startup_trials": self.n_startup}

    def advise(self, n_trials: int) -> str | None:
        """A warning when ``n_trials`` leaves no trial to the model: its start-up design takes them all."""
        if n_trials > self.n_startup:
            return None
        return (f"the first {self.n_startup} trials are random start-up draws, so {n_trials} trials never use the "
                f"method's model — give --n-trials {2 * self.n_startup} or more, or a smaller "
                "search.sampler_options.n_startup_trials")

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


def startup_trials(default: int, n_trials: int | None, options: dict) -> int:
    """Random start-up trials of a model-based sampler: the user's ``n_startup_trials``, else a quarter of the
    search (at least 2, at most the sampler's own default). Why scaled: Optuna's defaults (10 for TPE and GP) exceed
    a CPU search's 8 trials, where the model would never propose at all."""
    if "n_startup_trials" in options:
        return int(options["n_startup_trials"])
    return default if n_trials is None else max(2, min(default, n_trials // 4))


@register_sampler("random", multi_objective=True)
def _random(seed: int = 0, space: SearchSpace | None = None, feasible: Feasible | None = None,
            n_trials: int | None = None, max_draws: int = MAX_DRAWS) -> optuna.samplers.BaseSampler:
    return HashRandomSampler(seed, space, feasible, max_draws)


# AKD (Search to Distill): the LSTM controller over the MnasNet-style space with MnasNet's latency-aware reward; its
# target T is the budget's latency, or else the median latency of the space's networks on the budget's runtime
@register_sampler("akd", preset={"search.space": "mnas", "search.reward_target_quantile": 0.5})
def _akd(seed: int = 0, space: SearchSpace | None = None, feasible: Feasible | None = None,
         n_trials: int | None = None, **policy: Any) -> optuna.samplers.BaseSampler:
    """The controller's policy learns once per ``batch_size`` finished trials; unless given, the batch is a quarter of
    the search (2 to 8), so a 16-trial search makes 4 policy updates rather than 2 with the fixed 8."""
    from archkd.search.controller import AKDSampler, PolicyConfig

    if space is None:
        raise ArchkdError("the akd controller needs a search space", "pass space= to create_sampler")
    if n_trials is not None and "batch_size" not in policy:
        policy = {**policy, "batch_size": max(2, min(8, n_trials // 4))}
    return AKDSampler(space, seed=seed, policy=PolicyConfig(**policy), feasible=feasible)


@register_sampler("tpe", multi_objective=True)
def _tpe(seed: int = 0, space: SearchSpace | None = None, feasible: Feasible | None = None,
         n_trials: int | None = None,
         **options: Any) -> optuna.samplers.BaseSampler:
    """Optuna's TPE; it reads every trial's budget constraints (infeasible trials sort below feasible ones). On a
    multi-objective study it is Optuna's multi-objective TPE (MOTPE)."""
    kw = {**options, "n_startup_trials": startup_trials(10, n_trials, options)}
    return Replayed(lambda s: optuna.samplers.TPESampler(seed=s, **kw), seed, kw["n_startup_trials"], TPE_STATES,
                    space=space, feasible=feasible)


@register_sampler("nsga2", multi_objective=True)
def _nsga2(seed: int = 0, space: SearchSpace | None = None, feasible: Feasible | None = None,
           n_trials: int | None = None, **options: Any) -> optuna.samplers.BaseSampler:
    """Optuna's NSGA-II for multi-objective searches, reading the budget constraints every trial records.

    Its population (a generation of proposals) is a quarter of the search unless given (at least 4, at most Optuna's
    50), so a 16-trial search evolves over four generations instead of never leaving its random first one."""
    pop = int(options.pop("population_size", max(4, min(50, (n_trials or 200) // 4))))
    kw = {**options, "population_size": pop}  # it reads the constraints every trial records (record_constraints)
    return Replayed(lambda s: optuna.samplers.NSGAIISampler(seed=s, **kw), seed, pop, TPE_STATES,
                    space=space, feasible=feasible)


@register_sampler("gp")
def _gp(seed: int = 0, space: SearchSpace | None = None, feasible: Feasible | None = None,
        n_trials: int | None = None,
        **options: Any) -> optuna.samplers.BaseSampler:
    """Optuna's Gaussian-process sampler; it models each budget constraint with a GP of its own."""
    kw = {**options, "n_startup_trials": startup_trials(10, n_trials, options)}
    return Replayed(lambda s: optuna.samplers.GPSampler(seed=s, **kw), seed, kw["n_startup_trials"],
                    space=space, feasible=feasible)


_KD_RECIPE = {"distill.temperature": {"low": 1.0, "high": 20.0, "log": True}, "distill.alpha": {"low": 0.0, "high": 1.0}}


# AutoKD, BOHB-style: TPE proposes generator + KD recipe, Hyperband (η = 2 as in NAGO) stops weak families early; every
# network is scaled to one size (the budget, or a tenth of the teacher): NAGO compares generators at equal size
@register_sampler("autokd", preset={"search.space": "nago", "search.recipe": _KD_RECIPE, "search.pruner": "hyperband",
                                    "search.pruner_options": {"reduction_factor": 2}, "search.size_target": 0.1})
def _autokd(seed: int = 0, space: SearchSpace | None = None, feasible: Feasible | None = None,
            n_trials: int | None = None,
            **options: Any) -> optuna.samplers.BaseSampler:
    """AutoKD's BOHB-style optimiser, model part: a multivariate TPE over the generator and KD recipe (the preset
    pairs it with Hyperband over trained epochs). Multivariate because generator dimensions interact (a graph's K
    only matters with its node count); 5 random start-up trials instead of 10, since each trial trains k networks."""
    kw = {"multivariate": True, **options, "n_startup_trials": startup_trials(5, n_trials, options)}
    return Replayed(lambda s: optuna.samplers.TPESampler(seed=s, **kw), seed, kw["n_startup_trials"], TPE_STATES,
                    space=space, feasible=feasible)


# AutoKD with GP-based BO (Optuna's GPSampler): every family is trained to the end
@register_sampler("autokd-gp", preset={"search.space": "nago", "search.recipe": _KD_RECIPE, "search.size_target": 0.1})
def _autokd_gp(seed: int = 0, space: SearchSpace | None = None, feasible: Feasible | None = None,
               n_trials: int | None = None,
               **options: Any) -> optuna.samplers.BaseSampler:
    """AutoKD with GP-based BO: Optuna's GPSampler (Matérn-5/2 kernel, log expected improvement) over the same
    vector, 5 random start-up trials."""
    kw = {**options, "n_startup_trials": startup_trials(5, n_trials, options)}
    return Replayed(lambda s: optuna.samplers.GPSampler(seed=s, **kw), seed, kw["n_startup_trials"],
                    space=space, feasible=feasible)
