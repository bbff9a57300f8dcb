"""Budget kinds: the things a deployment budget can limit, as one table instead of an if-chain per kind.

Why a table: each kind (parameters, FLOPs, latency, memory) used to be spelled out in every place a budget is
measured, checked, turned into an Optuna constraint or described, so a new kind touched four files and a dozen
places. A kind is now one registration — its name, how to measure it from a model, how to print it, and whether it
is cheap — and :class:`archkd.search.budget.Budget` loops over ``BUDGET_KINDS``. It lives here, beside the
measurements, so every layer that shows budgets (search, report) can read the same table.

A kind named ``n`` is limited by the budget field ``max_<n>`` when the config has one (the built-in kinds), else by
``budget.limits[n]`` (kinds registered by plugins: no config schema change); its measured value is stored under
``n`` in the measurement dict, which is also the name of its Optuna constraint.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from archkd.config import register_choices
from archkd.errors import ArchkdError
from archkd.measure.counting import count_flops, count_params, peak_activation_memory
from archkd.measure.latency import measure_latency
from archkd.registry import Registry

# (model, per-sample input shape, budget settings) -> the value, or a dict holding it under the kind's name plus
# companion numbers the same measurement gives for free (FLOPs brings MACs)
Measure = Callable[[nn.Module, tuple[int, ...], Any], "float | dict[str, float]"]


def _plain(v: float) -> str:
    return f"{v:g}"


def _thousands(v: float) -> str:
    return f"{v:,}"


@dataclass(frozen=True)
class BudgetKind:
    """One limitable measurement.

    ``label`` and ``unit`` name it in messages ("latency 1.234 ms > 1.0 ms"); ``fmt`` prints a measured value and
    ``fmt_limit`` a limit; ``context(settings)`` adds how it was measured ("(onnxruntime, 1 thr)"). ``cheap`` kinds
    (milliseconds per model) are measured first, decide feasibility for samplers and, as hard constraints, spare
    failing candidates the expensive measurements; ``always`` kinds are measured even without a limit (the search
    records parameters and FLOPs of every trial)."""

    name: str
    measure: Measure
    label: str
    unit: str = ""
    cheap: bool = False
    always: bool = False
    fmt: Callable[[float], str] = _plain
    fmt_limit: Callable[[float], str] = _plain
    context: Callable[[Any], str] | None = None

    def value_text(self, value: float) -> str:
        return self.fmt(value) + (f" {self.unit}" if self.unit else "")

    def limit_text(self, limit: float) -> str:
        return self.fmt_limit(limit) + (f" {self.unit}" if self.unit else "")

    def suffix(self, settings: Any) -> str:
        return f" {self.context(settings)}" if self.context is not None else ""

    def limit_in(self, budget: Any) -> float | None:
        """This kind's limit in a budget — a ``Budget``/``BudgetConfig`` or its dict (a run's results): the field
        ``max_<name>`` for the built-in kinds, else ``limits[name]``."""
        get = budget.get if isinstance(budget, Mapping) else lambda key: getattr(budget, key, None)
        value = get(f"max_{self.name}")
        return value if value is not None else (get("limits") or {}).get(self.name)


BUDGET_KINDS: Registry[BudgetKind] = Registry("budget kind", origin=lambda kind: kind.measure)
register_choices("budget.limits", BUDGET_KINDS.names)


def register_budget_kind(name: str, *, label: str | None = None, unit: str = "", cheap: bool = False,
                         always: bool = False, fmt: Callable[[float], str] = _plain,
                         fmt_limit: Callable[[float], str] | None = None,
                         context: Callable[[Any], str] | None = None) -> Callable[[Measure], Measure]:
    """Decorator registering ``measure(model, input_shape, settings) -> float`` as budget kind ``name`` (limited by
    ``budget.limits[name]``); the remaining arguments are :class:`BudgetKind`'s. Returns ``measure`` unchanged."""
    def deco(measure: Measure) -> Measure:
        BUDGET_KINDS.register(name, BudgetKind(name, measure, label or name, unit, cheap, always, fmt,
                                               fmt_limit or fmt, context))
        return measure

    return deco


@register_budget_kind("params", cheap=True, always=True, fmt=_thousands)
def _params(model: nn.Module, input_shape: tuple[int, ...], settings: Any) -> float:
    return count_params(model)


@register_budget_kind("flops", label="FLOPs", cheap=True, always=True, fmt=_thousands)
def _flops(model: nn.Module, input_shape: tuple[int, ...], settings: Any) -> dict[str, float]:
    fl = count_flops(model, tuple(input_shape))
    return {"flops": fl.flops, "macs": fl.macs}


def _latency_context(settings: Any) -> str:
    predicted = ", predicted" if getattr(settings, "latency_source", None) == "predicted" else ""
    return f"({settings.latency_runtime}, {settings.latency_threads} thr{predicted})"


@register_budget_kind("latency_ms", label="latency", unit="ms", fmt=lambda v: f"{v:.3f}", fmt_limit=str,
                      context=_latency_context)
def _latency(model: nn.Module, input_shape: tuple[int, ...], settings: Any) -> float:
    """The median latency on ``settings.latency_runtime``, or the latency predictor's estimate
    (``latency_source="predicted"``, ``settings.predictor``)."""
    if settings.latency_source == "predicted":
        if settings.predictor is None:
            raise ArchkdError("budget.latency_source=predicted but no latency predictor is loaded",
                              "set budget.latency_predictor, or run the search through archkd.api")
        return settings.predictor.predict_ms(model, tuple(input_shape))
    return measure_latency(model, tuple(input_shape), runtime=settings.latency_runtime,
                           batch_size=settings.latency_batch_size, threads=settings.latency_threads).median_ms


@register_budget_kind("memory_mb", label="memory", unit="MB", fmt=lambda v: f"{v:.2f}", fmt_limit=str)
def _memory(model: nn.Module, input_shape: tuple[int, ...], settings: Any) -> float:
    return peak_activation_memory(model, tuple(input_shape)) / 2**20
