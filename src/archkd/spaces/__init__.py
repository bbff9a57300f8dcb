"""archkd.spaces — search spaces: typed dimensions plus a builder.

Contract (``SearchSpace``):
- ``dims() -> list[Dim]`` (``IntDim``, ``CategoricalDim``, ``FloatDim``): what a sampler may choose — the space's
  architecture dimensions (``arch_dims``) followed by its training-recipe dimensions (``recipe_dims``). Samplers see
  only these, never models. A dimension with ``when=(parent, values)`` is *conditional*: it exists only when the
  earlier dimension ``parent`` took one of ``values`` (a family choice with knobs of its own).
- ``suggest(trial)`` / ``sample(draw)``: walk the dimensions in order, skipping inactive conditional ones, asking an
  Optuna trial or a uniform draw ``draw(name) -> u ∈ [0, 1)``. ``from_uniform(distribution, u)`` is the one map from a
  uniform draw to a value; ``Dim.sample`` and every sampler use it.
- ``spec(config, input_shape, num_classes) -> dict``: an ``archkd.models`` spec, so every searched student is
  rebuilt by ``build_from_spec`` from its checkpoint alone; ``build(...)`` is ``build_from_spec(spec(...))``.
- ``recipe(config) -> dict``: the trial's training-recipe values by dotted config key (``distill.temperature``,
  ``train.lr``, ...), which the trial objective applies to that trial's training and to its final re-training.
- ``smallest()``: the configuration with the fewest parameters, declared by each space, used to reject impossible
  budgets up front; ``largest()``: the configuration containing every other, declared by spaces with a weight-sharing
  supernet (``archkd.models.create_supernet(space.spec(space.largest(), ...))``).
- ``members(config, input_shape, num_classes) -> list[spec]``: the networks a configuration stands for (one, or a
  generator's family); ``scale_to(max_params)``: a space that scales its networks to the parameter budget takes it.
- ``register_space(name)`` / ``create_space(name, recipe=..., **kwargs)``: a new space is one file.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch.nn as nn
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from archkd.config import register_choices
from archkd.errors import ArchkdError
from archkd.registry import Registry

Condition = tuple[str, tuple] | None


def from_uniform(dist: BaseDistribution, u: float) -> Any:
    """Map ``u ∈ [0, 1)`` to a value of a distribution: the inverse CDF of the uniform (log-uniform) prior.

    Categorical: choice ``⌊u·n⌋``; integer: ``low + step·⌊u·n⌋`` over the ``n`` grid points (log: rounded
    ``exp(log low + u·(log(high+1) − log low))``); float: ``low + u·(high − low)`` (log: geometric interpolation).
    """
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[min(len(dist.choices) - 1, int(u * len(dist.choices)))]
    if isinstance(dist, IntDistribution):
        if dist.log:
            v = int(math.floor(math.exp(math.log(dist.low) + u * (math.log(dist.high + 1) - math.log(dist.low)))))
            return max(dist.low, min(dist.high, v))
        n = (dist.high - dist.low) // dist.step + 1
        return dist.low + dist.step * min(n - 1, int(u * n))
    if isinstance(dist, FloatDistribution):
        if dist.log:
            return float(math.exp(math.log(dist.low) + u * (math.log(dist.high) - math.log(dist.low))))
        return float(dist.low + u * (dist.high - dist.low))
    raise TypeError(f"unsupported distribution {dist}")


class _DimBase:
    name: str
    when: Condition

    def distribution(self) -> BaseDistribution:
        raise NotImplementedError

    def sample(self, u: float) -> Any:
        return from_uniform(self.distribution(), u)

    def suggest(self, trial: Any) -> Any:
        return _suggest(trial, self)

    def active(self, config: dict) -> bool:
        return self.when is None or config.get(self.when[0], _MISSING) in self.when[1]


_MISSING = object()


def _suggest(trial: Any, dim: "Dim") -> Any:
    d = dim.distribution()
    if isinstance(d, CategoricalDistribution):
        return trial.suggest_categorical(dim.name, list(d.choices))
    if isinstance(d, IntDistribution):
        return trial.suggest_int(dim.name, d.low, d.high, step=d.step, log=d.log)
    return trial.suggest_float(dim.name, d.low, d.high, log=d.log)


@dataclass(frozen=True)
class IntDim(_DimBase):
    name: str
    low: int
    high: int
    step: int = 1
    log: bool = False
    when: Condition = None

    def distribution(self) -> BaseDistribution:
        return IntDistribution(self.low, self.high, step=self.step, log=self.log)


@dataclass(frozen=True)
class CategoricalDim(_DimBase):
    name: str
    choices: tuple
    when: Condition = None

    def distribution(self) -> BaseDistribution:
        return CategoricalDistribution(list(self.choices))


@dataclass(frozen=True)
class FloatDim(_DimBase):
    name: str
    low: float
    high: float
    log: bool = False
    when: Condition = None

    def distribution(self) -> BaseDistribution:
        return FloatDistribution(self.low, self.high, log=self.log)


Dim = IntDim | CategoricalDim | FloatDim

# recipe keys a space may search: the trial's training recipe, not its fidelity (epochs, data fraction)
RECIPE_SECTIONS = ("train", "distill")
NOT_RECIPE = {"train.epochs", "train.data_fraction", "train.bn_recalibration", "distill.cache", "distill.process",
              "distill.features"}


def recipe_dim(key: str, values: Any) -> Dim:
    """One recipe dimension from config: a list of choices, or ``{low, high, log}`` (floats; ints if both are)."""
    from archkd.config import all_keys

    section = key.split(".", 1)[0]
    if section not in RECIPE_SECTIONS or key not in all_keys() or key in NOT_RECIPE:
        raise ArchkdError(f"search.recipe key '{key}' is not a training-recipe setting",
                          "use train.* or distill.* keys such as distill.temperature, distill.alpha, train.lr")
    if isinstance(values, (list, tuple)) and values:
        return CategoricalDim(key, tuple(values))
    if isinstance(values, dict) and {"low", "high"} <= set(values) and set(values) <= {"low", "high", "log"}:
        lo, hi, log = values["low"], values["high"], bool(values.get("log", False))
        if not lo < hi:
            raise ArchkdError(f"search.recipe '{key}': low {lo} is not below high {hi}", "swap or fix the bounds")
        if isinstance(lo, int) and isinstance(hi, int):
            return IntDim(key, lo, hi, log=log)
        return FloatDim(key, float(lo), float(hi), log=log)
    raise ArchkdError(f"search.recipe '{key}' must be a list of choices or {{low, high[, log]}}, got {values!r}",
                      "e.g. search.recipe='{distill.temperature: [2, 4, 8], train.lr: {low: 0.01, high: 0.2, log: true}}'")


class SearchSpace:
    """Base class; subclasses define ``arch_dims``, ``spec`` and ``smallest`` (and may add ``recipe_dims``)."""

    name = "base"
    _recipe: tuple = ()

    def arch_dims(self) -> list[Dim]:
        raise NotImplementedError

    def recipe_dims(self) -> list[Dim]:
        """Training-recipe dimensions: the user's ``search.recipe`` (a space may add defaults of its own)."""
        return list(self._recipe)

    def with_recipe(self, recipe: dict[str, Any]) -> "SearchSpace":
        """Add recipe dimensions (``{dotted key: choices | {low, high, log}}``) to this space; returns it."""
        dims = [recipe_dim(k, v) for k, v in (recipe or {}).items()]
        clash = {d.name for d in dims} & {d.name for d in self.arch_dims()}
        if clash:
            raise ArchkdError(f"search.recipe keys {sorted(clash)} clash with architecture dimensions", "rename them")
        self._recipe = tuple(dims)
        return self

    def dims(self) -> list[Dim]:
        return self.arch_dims() + self.recipe_dims()

    def spec(self, config: dict, input_shape: tuple[int, ...], num_classes: int) -> dict:
        raise NotImplementedError

    def smallest(self) -> dict:
        """The architecture configuration with the fewest parameters (recipe dimensions at their first value)."""
        raise NotImplementedError

    def largest(self) -> dict:
        """The architecture configuration whose network contains every other of the space (each layer at its widest,
        deepest, largest kernel): the shape of the space's weight-sharing supernet (GTN's student pool)."""
        raise ArchkdError(f"space '{self.name}' declares no largest network, so it has no weight-sharing supernet",
                          "use --space stages")

    def members(self, config: dict, input_shape: tuple[int, ...], num_classes: int) -> list[dict]:
        """The specs a configuration stands for. One here: the configuration fixes the network. A *generator* space
        (``nago``) returns a family of networks sampled with different graph seeds, first = ``spec(...)``; the trial
        objective trains each and scores the configuration by their mean (AutoKD's family objective)."""
        return [self.spec(config, input_shape, num_classes)]

    def new_members(self, config: dict, input_shape: tuple[int, ...], num_classes: int, n: int) -> list[dict]:
        """``n`` further members of a generator configuration's family, beyond those ``members`` gave the search
        (AutoKD's output is the generator: a family to draw students from). A space whose configurations fix one
        network has none to give."""
        raise ArchkdError(f"space '{self.name}' has no families to draw from: a configuration is one network",
                          "draw members from a search over a generator space (--method autokd, space nago)")

    def scale_to(self, max_params: int | None) -> "SearchSpace":
        """Hand the parameter budget to a space that scales every network to it (``nago``); others ignore it."""
        return self

    def recipe(self, config: dict) -> dict[str, Any]:
        return {d.name: config[d.name] for d in self.recipe_dims() if d.name in config}

    def describe(self) -> dict:
        """What defines the space (name and every dimension), for a study's identity check."""
        return {"name": self.name, "dims": [repr(d) for d in self.dims()]}

    def build(self, config: dict, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        from archkd.models import build_from_spec

        return build_from_spec(self.spec(config, input_shape, num_classes))

    def sample(self, draw: Callable[[str], float]) -> dict:
        """A configuration from uniform draws ``draw(name) ∈ [0, 1)``, conditional dimensions included."""
        config: dict = {}
        for d in self.dims():
            if d.active(config):
                config[d.name] = d.sample(draw(d.name))
        return config

    def sample_rng(self, rng: np.random.Generator) -> dict:
        return self.sample(lambda _name: float(rng.random()))

    def suggest(self, trial: Any) -> dict:
        config: dict = {}
        for d in self.dims():
            if d.active(config):
                config[d.name] = d.suggest(trial)
        return config

    def distributions(self) -> dict[str, BaseDistribution]:
        return {d.name: d.distribution() for d in self.dims()}

    def validate(self, config: dict) -> dict:
        names = {d.name for d in self.dims()}
        missing = {d.name for d in self.dims() if d.active(config)} - set(config)
        if missing:
            raise ArchkdError(f"config for space '{self.name}' lacks {sorted(missing)}", "sample it from the space")
        return {k: config[k] for k in names if k in config}


SPACES: Registry[Callable[..., SearchSpace]] = Registry("search space", options_key="search.space_kwargs")
register_choices("search.space", SPACES.names)
register_choices("generic.space", SPACES.names)


def register_space(name: str) -> Callable:
    """Register a ``SearchSpace`` class (or factory) as ``search.space=name``; a taken name is refused."""
    return SPACES.register(name)


def create_space(name: str, recipe: dict[str, Any] | None = None, **kwargs: Any) -> SearchSpace:
    return SPACES.build(name, **kwargs).with_recipe(recipe or {})


from archkd.spaces import mnas as _mnas  # noqa: E402,F401  (registers the built-in spaces)
from archkd.spaces import nago as _nago  # noqa: E402,F401
from archkd.spaces import multifamily as _multifamily  # noqa: E402,F401
from archkd.spaces import stages as _stages  # noqa: E402,F401

__all__ = ["IntDim", "CategoricalDim", "FloatDim", "Dim", "SearchSpace", "SPACES", "register_space", "create_space",
           "from_uniform", "recipe_dim"]
