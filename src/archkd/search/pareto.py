"""Native multi-objective search: accuracy against the deployment costs, a Pareto front rather than one scalar.

Why: a user with a latency target wants the whole accuracy–latency trade-off. AKD's reward ``ACC · (LAT/T)^w`` picks
one point of it for a chosen ``w``; with ``search.objectives = [accuracy, latency]`` the study instead has one Optuna
direction per objective, a multi-objective sampler (NSGA-II, TPE, random) proposes, and the result is the front of
non-dominated feasible trials with its hypervolume.

Dominance (every objective written as "larger is better" by negating the minimised ones): ``a`` dominates ``b`` when
``a_i ≥ b_i`` for every objective and ``a_j > b_j`` for one. The hypervolume of a front ``F`` against a reference
point ``r`` (worse than every front member in every objective) is the Lebesgue measure of
``⋃_{y ∈ F} [r, y]`` — the objective-space volume the front dominates; larger is better, and two fronts are compared
against the same ``r``. The reference is stated with the result: accuracy 0, and for each cost its budget limit when
one is set (the feasible region's edge), else 1.1 × the largest value among the search's feasible trials.
"""
from __future__ import annotations

from dataclasses import dataclass

from archkd.config import ObjectiveName
from archkd.errors import ArchkdError

# objective (each of ObjectiveName, the config's closed choice) -> (trial-row / metrics key, Optuna direction)
OBJECTIVES: dict[str, tuple[str, str]] = {"accuracy": ("val_acc", "maximize"), "latency": ("latency_ms", "minimize"),
                                          "params": ("params", "minimize"), "flops": ("flops", "minimize"),
                                          "memory": ("memory_mb", "minimize")}
# objective -> the budget limit that bounds it (budget.max_*): the natural reference point
LIMITS = {"latency": "max_latency_ms", "params": "max_params", "flops": "max_flops", "memory": "max_memory_mb"}


@dataclass(frozen=True)
class Objectives:
    """The objectives of a multi-objective search, in the order Optuna's values hold them."""

    names: tuple[ObjectiveName, ...]

    @classmethod
    def parse(cls, names: list[str] | tuple[str, ...]) -> Objectives | None:
        """``search.objectives`` checked: None for a scalar search (empty list); accuracy and at least one cost."""
        if not names:
            return None
        bad = [n for n in names if n not in OBJECTIVES]
        if bad:
            raise ArchkdError(f"unknown search objective '{bad[0]}'", f"choose from {', '.join(OBJECTIVES)}")
        if "accuracy" not in names or len(set(names)) < 2 or len(set(names)) != len(names):
            raise ArchkdError(f"search.objectives={list(names)} is not a trade-off",
                              "give accuracy and one or more costs, each once, e.g. search.objectives=[accuracy,latency]")
        return cls(tuple(names))

    @property
    def keys(self) -> list[str]:
        return [OBJECTIVES[n][0] for n in self.names]

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[n][1] for n in self.names]

    @property
    def needs_latency(self) -> bool:
        return "latency" in self.names

    def values(self, row: dict) -> list[float] | None:
        """The trial's objective values in Optuna's order (None when one is missing, e.g. latency not measured)."""
        out = [row.get(k) for k in self.keys]
        return None if any(v is None for v in out) else [float(v) for v in out]

    def _gains(self, row: dict) -> list[float]:
        return [v if d == "maximize" else -v for v, d in zip(self.values(row), self.directions)]

    def dominates(self, a: dict, b: dict) -> bool:
        ga, gb = self._gains(a), self._gains(b)
        return all(x >= y for x, y in zip(ga, gb)) and any(x > y for x, y in zip(ga, gb))

    def front(self, rows: list[dict]) -> list[dict]:
        """The non-dominated feasible completed trials (twins of a trained trial left out), by the first cost."""
        pool = [r for r in rows if r["state"] == "COMPLETE" and r.get("duplicate_of") is None
                and self.values(r) is not None]
        front = [r for r in pool if not any(self.dominates(o, r) for o in pool if o is not r)]
        cost = next(k for k, d in zip(self.keys, self.directions) if d == "minimize")
        return sorted(front, key=lambda r: (r[cost], r["number"]))

    def reference(self, rows: list[dict], limits: dict[str, float | None]) -> dict[str, float]:
        """The reference point (see the module docstring): accuracy 0; a cost's budget limit, else 1.1 × its
        largest feasible value."""
        ref = {}
        for name, (key, direction) in zip(self.names, (OBJECTIVES[n] for n in self.names)):
            if direction == "maximize":
                ref[name] = 0.0
                continue
            limit = limits.get(LIMITS.get(name, ""))
            seen = [r[key] for r in rows if r["state"] == "COMPLETE" and r.get(key) is not None]
            ref[name] = float(limit) if limit else 1.1 * max(seen, default=1.0)
        return ref

    def hypervolume(self, front: list[dict], reference: dict[str, float]) -> float:
        """The volume ``front`` dominates above ``reference`` (BoTorch's exact algorithm, objectives as gains)."""
        import torch
        from botorch.utils.multi_objective.hypervolume import Hypervolume

        ref = [reference[n] if d == "maximize" else -reference[n] for n, d in zip(self.names, self.directions)]
        pts = [g for g in (self._gains(r) for r in front) if all(x > y for x, y in zip(g, ref))]
        if not pts:
            return 0.0
        return float(Hypervolume(torch.tensor(ref, dtype=torch.double)).compute(torch.tensor(pts, dtype=torch.double)))

    def spread(self, front: list[dict], k: int) -> list[dict]:
        """``k`` front members spread evenly along it (ends included): the ones a user would re-train to see the
        trade-off at full fidelity, rather than the k most accurate, which crowd at one end."""
        if k >= len(front):
            return list(front)
        if k == 1:
            return [max(front, key=lambda r: (r["val_acc"], -r["number"]))]
        return [front[i] for i in sorted({round(i * (len(front) - 1) / (k - 1)) for i in range(k)})]
