"""The multi-objective search reward of MnasNet/AKD: ``ACC × (LAT/T)^w``, ``w = α`` if ``LAT ≤ T`` else ``β``.

With AKD, ACC is the candidate's *KD-trained* accuracy; with the NAS-then-KD baseline it is CE-trained accuracy.
Soft mode uses α = β = −0.07 (doubling latency costs ≈ 5 % relative accuracy); hard mode (α = 0, β = −1) leaves
in-target candidates ranked by accuracy alone and penalises the rest steeply. Parameters or FLOPs can stand in for
latency as the cost metric.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass

from archkd.config import RewardMetric
from archkd.errors import ArchkdError

METRICS: tuple[str, ...] = typing.get_args(RewardMetric)  # the config type (search.reward_metric) is the list


@dataclass(frozen=True)
class Reward:
    target: float | None = None
    metric: str = "latency_ms"
    alpha: float = -0.07
    beta: float = -0.07

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ArchkdError(f"unknown reward metric '{self.metric}'", f"use one of {METRICS}")
        if self.target is not None and self.target <= 0:
            raise ArchkdError(f"reward target must be positive, got {self.target}", "e.g. --latency-target 5ms")

    @classmethod
    def make(cls, target: float | None, metric: str = "latency_ms", mode: str = "soft", alpha: float = -0.07,
             beta: float = -0.07) -> "Reward":
        if mode == "hard":
            return cls(target, metric, 0.0, -1.0)
        if mode != "soft":
            raise ArchkdError(f"unknown reward mode '{mode}'", "use soft or hard")
        return cls(target, metric, alpha, beta)

    @property
    def needs_latency(self) -> bool:
        return self.target is not None and self.metric == "latency_ms"

    def __call__(self, accuracy: float, metrics: dict) -> float:
        """Reward of a candidate; plain accuracy when no target is set."""
        if self.target is None:
            return float(accuracy)
        cost = float(metrics[self.metric])
        w = self.alpha if cost <= self.target else self.beta
        return float(accuracy) * (cost / self.target) ** w

    def describe(self) -> str:
        if self.target is None:
            return "accuracy"
        return f"acc × ({self.metric}/{self.target:g})^w, w = {self.alpha:g} if ≤ target else {self.beta:g}"
