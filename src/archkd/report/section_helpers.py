"""Helpers shared by the built-in report sections: reading parts of ``results`` that may be missing or of the wrong
type, the best trial, and cells (state badges, latencies, rewards, sort keys) that several sections show alike.

Why apart: the sections are split by what they report (``sections_run``, ``sections_search``, ``sections_timeline``),
and each must read odd data the same way.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .fmt import DASH, esc, fmt_value, is_num, kv_table

STATES = ("COMPLETE", "PRUNED", "INFEASIBLE", "FAIL")


def _dict(results: Mapping[str, Any], key: str) -> dict[str, Any]:
    v = results.get(key)
    return v if isinstance(v, Mapping) else {}  # type: ignore[return-value]


def _trials(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    v = results.get("trials")
    if not isinstance(v, list):
        return []
    return [t for t in v if isinstance(t, Mapping)]


def _state(t: Mapping[str, Any]) -> str:
    return str(t.get("state") or "").upper()


def best_trial_number(results: Mapping[str, Any]) -> Any:
    """``search.best_trial`` if given, else the COMPLETE trial with the highest val_acc (or None)."""
    best = _dict(results, "search").get("best_trial")
    if best is not None:
        return best
    done = [t for t in _trials(results) if _state(t) == "COMPLETE" and is_num(t.get("val_acc"))]
    return max(done, key=lambda t: t["val_acc"]).get("number") if done else None


def _kv_known(d: Mapping[str, Any], known: list[tuple[str, str, Any]]) -> str:
    """Rows for the known keys (label, formatter) in order, then any other keys generically."""
    rows = []
    for key, label, fmt in known:
        if d.get(key) is not None:
            rows.append((label, fmt(d[key])))
    names = {k for k, _, _ in known}
    rows += [(str(k).replace("_", " "), fmt_value(v)) for k, v in d.items()
             if k not in names and v is not None and not _nested(v)]
    return kv_table(rows)


def _nested(v: Any) -> bool:
    """Records and lists of records (an epoch history, a pool of students): shown by their own sections, not as
    one cell of text."""
    return isinstance(v, Mapping) or (isinstance(v, list) and any(isinstance(x, Mapping) for x in v))


def _shape(x: Any) -> str:
    if isinstance(x, (list, tuple)):
        return esc(" × ".join(str(i) for i in x))
    return fmt_value(x)


def _badge(state: str) -> str:
    cls = state.lower() if state in STATES else "other"
    return f'<span class="badge badge-{cls}">{esc(state or "?")}</span>'


def _latency(row: Mapping[str, Any]) -> Any:
    """A trial's or finalist's latency: ``latency_ms`` (a search row), else ``latency`` (a distill result's dict)."""
    return row.get("latency_ms") if row.get("latency_ms") is not None else row.get("latency")


def _latency_predicted(results: Mapping[str, Any]) -> bool:
    """Whether the search's latencies came from the latency predictor (``budget.latency_source``, also in the
    config): those numbers and the budget check on them are estimates, which the report must say."""
    sources = (_dict(results, "budget").get("latency_source"),
               _dict(_dict(results, "config"), "budget").get("latency_source"))
    return "predicted" in sources


def _reward(x: Any) -> str:
    return f"{x:.4f}" if is_num(x) else DASH


def _sort_keys(values: list[Any]) -> list[Any]:
    """A table row's sort keys (``fmt.table``): numbers and strings as they are, anything else sorts last."""
    return [v if is_num(v) or isinstance(v, str) else None for v in values]
