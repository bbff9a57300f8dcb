"""Report sections that say whether to trust a search: the fidelity check and a multi-objective search's front.

Why a section of their own: the winner of a search is reported with the same confidence whether the cheap trial
scores ranked the students or not; these sections put the evidence beside it (``archkd.search.fidelity``,
``archkd.search.pareto``), read from ``results.json`` like every other section.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from . import sections_search  # noqa: F401  (registers "trials table", which these sections are placed before)
from .fmt import esc, fmt_pct, fmt_seconds, is_num, kv_table, table
from .registry import register_section


def _search(results: dict[str, Any]) -> Mapping[str, Any]:
    s = results.get("search")
    return s if isinstance(s, Mapping) else {}


def _num(x: Any, spec: str) -> str:
    return format(x, spec) if is_num(x) and not math.isnan(x) else "-"


@register_section("fidelity check", title="Fidelity check: did the trial scores rank the students?",
                  before="trials table")
def fidelity_section(results: dict[str, Any]) -> str | None:
    """Kendall τ between trial accuracy and full-recipe accuracy over the re-trained trials, its bootstrap interval
    and the verdict; then each re-trained trial's two accuracies."""
    fc = _search(results).get("fidelity_check")
    if not isinstance(fc, Mapping):
        return None
    ci = fc.get("ci") if isinstance(fc.get("ci"), list) and len(fc["ci"]) == 2 else [None, None]
    trusted = bool(fc.get("trusted"))
    verdict = ("the trial scores ranked the students beyond chance: the search's order can be trusted at this "
               "fidelity" if trusted else
               "the trial scores did not rank the students reliably: raise search.epochs (--trial-epochs) or "
               "search.data_fraction before trusting the search's order")
    fid = _search(results).get("fidelity") if isinstance(_search(results).get("fidelity"), Mapping) else {}
    summary = kv_table([
        ("Kendall τ (trial vs full-recipe val acc)", esc(_num(fc.get("tau"), ".2f"))),
        ("95 % bootstrap interval", esc(f"[{_num(ci[0], '.2f')}, {_num(ci[1], '.2f')}]")),
        ("re-trained trials", esc(fc.get("n", "-"))),
        ("trial fidelity", esc(f"{fid.get('epochs', '-')} epochs × {fid.get('data_fraction', '-')} of the data")),
        ("cost of the extra trainings", esc(fmt_seconds(fc.get("seconds")))),
    ])
    trials, vals, accs = fc.get("trials") or [], fc.get("trial_values") or [], fc.get("full_val_acc") or []
    rows = [[esc(n), fmt_pct(v), fmt_pct(a)] for n, v, a in zip(trials, vals, accs)]
    badge = ('<span class="badge badge-complete">trusted</span>' if trusted else
             '<span class="badge badge-infeasible">not trusted</span>')
    return (f"<p>{badge} {esc(verdict)}.</p>" + summary + table(["trial", "trial val acc", "full-recipe val acc"], rows, numeric=(0, 1, 2)))


@register_section("pareto front", title="Pareto front (multi-objective search)", before="trials table")
def front_section(results: dict[str, Any]) -> str | None:
    """A multi-objective search's front: its objectives, hypervolume and reference point, and its members."""
    pareto = _search(results).get("pareto")
    if not isinstance(pareto, Mapping) or "hypervolume" not in pareto:
        return None
    names = [str(n) for n in pareto.get("objectives") or []]
    ref = pareto.get("reference") if isinstance(pareto.get("reference"), Mapping) else {}
    members = set(pareto.get("trials") or [])
    rows_in = [t for t in results.get("trials") or [] if isinstance(t, Mapping) and t.get("number") in members]
    keys = [str(k) for k in pareto.get("keys") or []]  # each objective's trial-row key, as the search recorded it
    if len(keys) != len(names):
        return None
    rows = [[esc(t.get("number"))] + [fmt_pct(t.get(k)) if k == "val_acc" else esc(_num(t.get(k), ".4g"))
                                      for k in keys] for t in rows_in]
    summary = kv_table([("objectives", esc(", ".join(names))),
                        ("hypervolume", esc(_num(pareto.get("hypervolume"), ".4g"))),
                        ("reference point", esc(", ".join(f"{k} {_num(v, '.4g')}" for k, v in ref.items())))])
    return summary + table(["trial"] + names, rows, numeric=tuple(range(len(names) + 1)))


@register_section("parameter importances", title="What mattered: parameter importances", before="trials table")
def importance_section(results: dict[str, Any]) -> str | None:
    """Optuna's fANOVA importances over the trained students (``archkd.search.importance``), largest first, as a
    table with a bar per parameter."""
    imp = _search(results).get("importances")
    if not isinstance(imp, Mapping) or not imp:
        return None
    rows = [[f"<code>{esc(k)}</code>", esc(_num(v, ".3f")),
             f'<span class="bar" style="display:inline-block;height:0.8em;background:#4c78a8;'
             f'width:{max(0.0, min(1.0, float(v))) * 12:.2f}em"></span>'] for k, v in imp.items() if is_num(v)]
    note = ("<p>The share of the variance of the students' validation accuracy that each parameter explains on its "
            "own (fANOVA over the trained students; the shares sum to 1). A parameter that explains little is one "
            "the next search can fix; read it with the fidelity check: at a fidelity that does not rank, it rates "
            "noise.</p>")
    return note + table(["parameter", "importance", ""], rows, numeric=(1,))
