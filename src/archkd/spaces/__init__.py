"""archkd.spaces — search spaces: typed dimensions plus a builder.

Contract (``SearchSpace``):
- ``dims() -> list[Dim]`` (``IntDim``, ``CategoricalDim``, ``FloatDim``): what a sampler may choose; samplers see
  only these, never models.
- ``spec(config, input_shape, num_classes) -> dict``: an ``archkd.models`` spec, so every searched student is
  rebuilt by ``build_from_spec`` from its checkpoint alone; ``build(...)`` is ``build_from_spec(spec(...))``.
- ``smallest()``: the config with the fewest parameters, used to reject impossible budgets up front.
- ``register_space(name)`` / ``create_space(name, **kwargs)``: a new space is one file. Later spaces (MnasNet-style,
  NAGO, multi-family) become supernets by building one shared model over the same dims.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch.nn as nn

from archkd.errors import ArchkdError
from archkd.registry import build


@dataclass(frozen=True)
class IntDim:
    name: str
    low: int
    high: int
    step: int = 1

    def sample(self, u: float) -> int:
        n = (self.high - self.low) // self.step + 1
        return self.low + self.step * min(n - 1, int(u * n))

    def suggest(self, trial: Any) -> int:
        return trial.suggest_int(self.name, self.low, self.high, step=self.step)


@dataclass(frozen=True)
class CategoricalDim:
    name: str
    choices: tuple

    def sample(self, u: float) -> Any:
        return self.choices[min(len(self.choices) - 1, int(u * len(self.choices)))]

    def suggest(self, trial: Any) -> Any:
        return trial.suggest_categorical(self.name, list(self.choices))


@dataclass(frozen=True)
class FloatDim:
    name: str
    low: float
    high: float
    log: bool = False

    def sample(self, u: float) -> float:
        if self.log:
            return float(math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low))))
        return float(self.low + u * (self.high - self.low))

    def suggest(self, trial: Any) -> float:
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


Dim = IntDim | CategoricalDim | FloatDim


class SearchSpace:
    """Base class; subclasses define ``dims`` and ``spec``."""

    name = "base"

    def dims(self) -> list[Dim]:
        raise NotImplementedError

    def spec(self, config: dict, input_shape: tuple[int, ...], num_classes: int) -> dict:
        raise NotImplementedError

    def build(self, config: dict, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        from archkd.models import build_from_spec

        return build_from_spec(self.spec(config, input_shape, num_classes))

    def sample(self, rng: np.random.Generator) -> dict:
        return {d.name: d.sample(float(rng.random())) for d in self.dims()}

    def suggest(self, trial: Any) -> dict:
        return {d.name: d.suggest(trial) for d in self.dims()}

    def smallest(self) -> dict:
        """Lowest value of every dimension (subclasses order choices from small to large)."""
        return {d.name: d.sample(0.0) for d in self.dims()}

    def validate(self, config: dict) -> dict:
        names = {d.name for d in self.dims()}
        missing = names - set(config)
        if missing:
            raise ArchkdError(f"config for space '{self.name}' lacks {sorted(missing)}", "sample it from the space")
        return {k: config[k] for k in names}


SPACES: dict[str, Callable[..., SearchSpace]] = {}


def register_space(name: str) -> Callable:
    def deco(cls: Callable[..., SearchSpace]) -> Callable[..., SearchSpace]:
        SPACES[name] = cls
        return cls

    return deco


def create_space(name: str, **kwargs: Any) -> SearchSpace:
    return build(SPACES, name, "search space", "search.space_kwargs", **kwargs)


from archkd.spaces import mnas as _mnas  # noqa: E402,F401  (registers the built-in spaces)
from archkd.spaces import stages as _stages  # noqa: E402,F401

__all__ = ["IntDim", "CategoricalDim", "FloatDim", "Dim", "SearchSpace", "SPACES", "register_space", "create_space"]
