"""Deployment budgets, checked before a candidate costs any training: hard constraints (default) or a penalty.

Cheap measurements (parameters, FLOPs) run first; latency and memory are measured only when the budget names them,
and (as hard constraints) only for candidates that already passed the cheap checks. With ``mode="penalty"`` every
candidate is measured and trained, and its value is lowered by ``penalty`` per unit of relative excess. With
``latency_source="predicted"`` a :class:`archkd.measure.predictor.LatencyPredictor` (set on ``predictor``) gives the
latency instead of the runtime.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Callable

import torch.nn as nn

from archkd.config import BudgetConfig
from archkd.errors import ArchkdError
from archkd.measure import count_flops, count_params, measure_latency, peak_activation_memory
from archkd.measure.predictor import LatencyPredictor
from archkd.models import build_from_spec
from archkd.spaces import SearchSpace


@dataclass
class Budget(BudgetConfig):
    """The ``budget`` config section, with the measurements and checks that enforce it."""

    predictor: LatencyPredictor | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_config(cls, cfg: BudgetConfig) -> "Budget":
        return cls(**dataclasses.asdict(cfg))

    @property
    def is_empty(self) -> bool:
        return all(v is None for v in (self.max_params, self.max_flops, self.max_latency_ms, self.max_memory_mb))

    def measure(self, model: nn.Module, input_shape: tuple[int, ...], latency: bool | None = None) -> dict:
        """Params and FLOPs always; latency/memory when the budget constrains them (or ``latency=True``)."""
        fl = count_flops(model, tuple(input_shape))
        m = {"params": count_params(model), "flops": fl.flops, "macs": fl.macs}
        if self._cheap_violations(m) and self.mode == "constraint":
            return m
        if latency or (latency is None and self.max_latency_ms is not None):
            if self.latency_source == "predicted":
                if self.predictor is None:
                    raise ArchkdError("budget.latency_source=predicted but no latency predictor is loaded",
                                      "set budget.latency_predictor, or run the search through archkd.api")
                m["latency_ms"] = self.predictor.predict_ms(model, tuple(input_shape))
            else:
                m["latency_ms"] = measure_latency(model, tuple(input_shape), runtime=self.latency_runtime,
                                                  batch_size=self.latency_batch_size,
                                                  threads=self.latency_threads).median_ms
        if self.max_memory_mb is not None:
            m["memory_mb"] = peak_activation_memory(model, tuple(input_shape)) / 2**20
        return m

    def _cheap_violations(self, m: dict) -> list[str]:
        out = []
        if self.max_params is not None and m["params"] > self.max_params:
            out.append(f"params {m['params']:,} > {self.max_params:,}")
        if self.max_flops is not None and m["flops"] > self.max_flops:
            out.append(f"FLOPs {m['flops']:,} > {self.max_flops:,}")
        return out

    def violations(self, m: dict) -> list[str]:
        out = self._cheap_violations(m)
        if self.max_latency_ms is not None and m.get("latency_ms") is not None and m["latency_ms"] > self.max_latency_ms:
            out.append(f"latency {m['latency_ms']:.3f} ms > {self.max_latency_ms} ms ({self.latency_runtime})")
        if self.max_memory_mb is not None and m.get("memory_mb") is not None and m["memory_mb"] > self.max_memory_mb:
            out.append(f"memory {m['memory_mb']:.2f} MB > {self.max_memory_mb} MB")
        return out

    def constraints(self, m: dict) -> dict[str, float]:
        """Optuna constraint values, one per limit set: the relative excess ``value / limit − 1`` (≤ 0: within budget).

        A limit that was not measured because a cheaper one already failed is recorded as 0 (on the boundary).
        """
        limits = {"params": ("params", self.max_params), "flops": ("flops", self.max_flops),
                  "latency_ms": ("latency_ms", self.max_latency_ms), "memory_mb": ("memory_mb", self.max_memory_mb)}
        return {name: (float(m[key]) / float(limit) - 1.0 if m.get(key) is not None else 0.0)
                for name, (key, limit) in limits.items() if limit is not None}

    def feasibility(self, space: SearchSpace, input_shape: tuple[int, ...], num_classes: int
                    ) -> Callable[[dict], bool] | None:
        """A predicate for samplers: does a configuration meet the parameter and FLOP limits? (None without them.)

        Building a candidate and counting its parameters and FLOPs costs milliseconds, so samplers may redraw many
        times; latency and memory are measured by the search loop only for candidates that pass this test.
        """
        if (self.max_params is None and self.max_flops is None) or self.mode == "penalty":
            return None
        memo: dict[str, bool] = {}

        def feasible(config: dict) -> bool:
            spec = space.spec(config, input_shape, num_classes)
            key = json.dumps(spec, sort_keys=True)
            if key not in memo:
                model = build_from_spec(spec)
                m = {"params": count_params(model)}
                m["flops"] = count_flops(model, tuple(input_shape)).flops if self.max_flops is not None else 0
                memo[key] = not self._cheap_violations(m)
            return memo[key]

        return feasible

    def penalised(self, value: float, m: dict) -> float:
        """``value − penalty · Σ_i max(0, m_i / limit_i − 1)`` in penalty mode; ``value`` otherwise."""
        if self.mode != "penalty":
            return value
        return value - self.penalty * sum(max(0.0, e) for e in self.constraints(m).values())

    def describe(self) -> str:
        parts = []
        if self.max_params is not None:
            parts.append(f"params ≤ {self.max_params:,}")
        if self.max_flops is not None:
            parts.append(f"FLOPs ≤ {self.max_flops:,}")
        if self.max_latency_ms is not None:
            parts.append(f"latency ≤ {self.max_latency_ms} ms ({self.latency_runtime}, {self.latency_threads} thr"
                         + (", predicted)" if self.latency_source == "predicted" else ")"))
        if self.max_memory_mb is not None:
            parts.append(f"memory ≤ {self.max_memory_mb} MB")
        soft = f" (soft: penalty {self.penalty:g} per unit of relative excess)" if self.mode == "penalty" and parts else ""
        return (", ".join(parts) or "none") + soft
