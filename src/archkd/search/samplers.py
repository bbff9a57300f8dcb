"""Samplers: Optuna samplers behind a registry, each rebuilding its state from the study.

Why state from the study: a restarted search, or many workers on one storage, must continue the same sampling
process. The random sampler therefore draws trial ``n``'s values from a hash of ``(seed, n, parameter)``: nothing
to persist, and a resumed run proposes exactly what the uninterrupted run would have. Samplers never train.
"""
from __future__ import annotations

import math
import zlib
from typing import Any, Callable

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from archkd.errors import ArchkdError
from archkd.registry import build

SAMPLERS: dict[str, Callable[..., optuna.samplers.BaseSampler]] = {}


def register_sampler(name: str) -> Callable:
    def deco(fn: Callable[..., optuna.samplers.BaseSampler]) -> Callable[..., optuna.samplers.BaseSampler]:
        SAMPLERS[name] = fn
        return fn

    return deco


def create_sampler(name: str, seed: int = 0, space: Any = None, **options: Any) -> optuna.samplers.BaseSampler:
    """Build a registered sampler; ``space`` (a SearchSpace) is given to samplers that model whole architectures."""
    return build(SAMPLERS, name, "search method", "search.controller", seed=seed, space=space, **options)


def _uniform(seed: int, number: int, name: str) -> float:
    return float(np.random.default_rng([seed, number, zlib.crc32(name.encode())]).random())


def value_from_uniform(dist: BaseDistribution, u: float) -> Any:
    """Map u ∈ [0, 1) to a value of an Optuna distribution."""
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[min(len(dist.choices) - 1, int(u * len(dist.choices)))]
    if isinstance(dist, IntDistribution):
        if dist.log:
            v = int(round(math.exp(math.log(dist.low) + u * (math.log(dist.high + 1) - math.log(dist.low)) - 1e-12)))
            return max(dist.low, min(dist.high, v))
        n = (dist.high - dist.low) // dist.step + 1
        return dist.low + dist.step * min(n - 1, int(u * n))
    if isinstance(dist, FloatDistribution):
        if dist.log:
            return float(math.exp(math.log(dist.low) + u * (math.log(dist.high) - math.log(dist.low))))
        return float(dist.low + u * (dist.high - dist.low))
    raise TypeError(f"unsupported distribution {dist}")


class HashRandomSampler(optuna.samplers.BaseSampler):
    """Uniform random search whose draws depend only on (seed, trial number, parameter name)."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict:
        return {}

    def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, search_space: dict) -> dict:
        return {}

    def sample_independent(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return value_from_uniform(param_distribution, _uniform(self.seed, trial.number, param_name))


@register_sampler("random")
def _random(seed: int = 0, space: Any = None) -> optuna.samplers.BaseSampler:
    return HashRandomSampler(seed)


@register_sampler("akd")
def _akd(seed: int = 0, space: Any = None, **policy: Any) -> optuna.samplers.BaseSampler:
    from archkd.search.controller import AKDSampler, PolicyConfig

    if space is None:
        raise ArchkdError("the akd controller needs a search space", "pass space= to create_sampler")
    return AKDSampler(space.dims(), seed=seed, policy=PolicyConfig(**policy))
