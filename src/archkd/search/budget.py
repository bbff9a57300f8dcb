"""Deployment budgets, checked before a candidate costs any training: hard constraints (default) or a penalty.

Cheap measurements (parameters, FLOPs) run first; latency and memory are measured only when the budget names them,
and (as hard constraints) only for candidates that already passed the cheap checks. With ``mode="penalty"`` every
candidate is measured and trained, and its value is lowered by ``penalty`` per unit of relative excess. With
``latency_source="predicted"`` a :class:`archkd.measure.predictor.LatencyPredictor` (set on ``predictor``) gives the
latency instead of the runtime.

What can be limited is the table ``BUDGET_KINDS`` (``archkd.measure.budget_kinds``): every method below loops over
it, so a new kind is one ``register_budget_kind`` and its limit one entry of ``budget.limits``.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Callable

import torch.nn as nn

from archkd.config import BudgetConfig
from archkd.errors import ArchkdError
from archkd.measure.budget_kinds import BUDGET_KINDS, BudgetKind, register_budget_kind
from archkd.measure.predictor import LatencyPredictor
from archkd.models import build_from_spec
from archkd.spaces import SearchSpace

__all__ = ["Budget", "BudgetKind", "BUDGET_KINDS", "register_budget_kind"]
LATENCY = "latency_ms"  # the kind ``Budget.measure(..., latency=...)`` forces or skips


@dataclass
class Budget(BudgetConfig):
    """The ``budget`` config section, with the measurements and checks that enforce it."""

    predictor: LatencyPredictor | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, limit in (self.limits or {}).items():
            BUDGET_KINDS.lookup(name)
            if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0:
                raise ArchkdError(f"budget.limits.{name} is {limit!r}", "give a positive number, or null for no limit")

    @classmethod
    def from_config(cls, cfg: BudgetConfig) -> "Budget":
        return cls(**dataclasses.asdict(cfg))

    def limit(self, kind: BudgetKind) -> float | None:
        return kind.limit_in(self)

    def limited(self, cheap: bool | None = None) -> list[tuple[BudgetKind, float]]:
        """``(kind, limit)`` of every kind with a limit (only the cheap ones, or only the others, when ``cheap``)."""
        pairs = [(k, k.limit_in(self)) for k in BUDGET_KINDS.values() if cheap is None or k.cheap == cheap]
        return [(k, v) for k, v in pairs if v is not None]

    @property
    def is_empty(self) -> bool:
        return not self.limited()

    def _measure_into(self, m: dict, kind: BudgetKind, model: nn.Module, input_shape: tuple[int, ...]) -> None:
        value = kind.measure(model, tuple(input_shape), self)
        m.update(value if isinstance(value, dict) else {kind.name: value})

    def measure(self, model: nn.Module, input_shape: tuple[int, ...], latency: bool | None = None,
                also: tuple[str, ...] = ()) -> dict:
        """Cheap kinds (params, FLOPs) always; the others when the budget limits them or ``also`` names them (the
        objectives of a multi-objective search). ``latency`` True/False forces or skips the latency measurement
        whatever the limit. As hard constraints, a candidate already over a cheap limit is not measured further."""
        m: dict = {}
        for kind in BUDGET_KINDS.values():
            if kind.cheap and (kind.always or self.limit(kind) is not None or kind.name in also):
                self._measure_into(m, kind, model, input_shape)
        if self._violations(m, cheap=True) and self.mode == "constraint":
            return m
        for kind in BUDGET_KINDS.values():
            wanted = self.limit(kind) is not None or kind.always or kind.name in also
            if kind.name == LATENCY and latency is not None:
                wanted = latency
            if not kind.cheap and wanted:
                self._measure_into(m, kind, model, input_shape)
        return m

    def _violations(self, m: dict, cheap: bool | None = None) -> list[str]:
        return [f"{kind.label} {kind.value_text(m[kind.name])} > {kind.limit_text(limit)}{kind.suffix(self)}"
                for kind, limit in self.limited(cheap) if m.get(kind.name) is not None and m[kind.name] > limit]

    def violations(self, m: dict) -> list[str]:
        """One message per limit ``m`` exceeds (cheap kinds first); unmeasured kinds are not judged."""
        return self._violations(m, cheap=True) + self._violations(m, cheap=False)

    def constraints(self, m: dict) -> dict[str, float]:
        """Optuna constraint values, one per limit set: the relative excess ``value / limit − 1`` (≤ 0: within budget).

        A limit that was not measured because a cheaper one already failed is recorded as 0 (on the boundary).
        """
        return {kind.name: (float(m[kind.name]) / float(limit) - 1.0 if m.get(kind.name) is not None else 0.0)
                for kind, limit in self.limited()}

    def feasibility(self, space: SearchSpace, input_shape: tuple[int, ...], num_classes: int
                    ) -> Callable[[dict], bool] | None:
        """A predicate for samplers: does a configuration meet the cheap limits (parameters, FLOPs)? (None without
        them.)

        Building a candidate and measuring its cheap kinds costs milliseconds, so samplers may redraw many times;
        latency and memory are measured by the search loop only for candidates that pass this test.
        """
        cheap = [kind for kind, _ in self.limited(cheap=True)]
        if not cheap or self.mode == "penalty":
            return None
        memo: dict[str, bool] = {}

        def feasible(config: dict) -> bool:
            spec = space.spec(config, input_shape, num_classes)
            key = json.dumps(spec, sort_keys=True)
            if key not in memo:
                model = build_from_spec(spec)
                m: dict = {}
                for kind in cheap:
                    self._measure_into(m, kind, model, input_shape)
                memo[key] = not self._violations(m, cheap=True)
            return memo[key]

        return feasible

    def penalised(self, value: float, m: dict) -> float:
        """``value − penalty · Σ_i max(0, m_i / limit_i − 1)`` in penalty mode; ``value`` otherwise."""
        if self.mode != "penalty":
            return value
        return value - self.penalty * sum(max(0.0, e) for e in self.constraints(m).values())

    def describe(self) -> str:
        parts = [f"{kind.label} ≤ {kind.limit_text(limit)}{kind.suffix(self)}" for kind, limit in self.limited()]
        soft = f" (soft: penalty {self.penalty:g} per unit of relative excess)" if self.mode == "penalty" and parts else ""
        return (", ".join(parts) or "none") + soft
