"""Report sections about time: how long each stage took, and the curves of the run's training (validation accuracy per
epoch of every training run, and any curves the results carry).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .fmt import esc, fmt_seconds, is_num, table
from .plots import line_plot
from .registry import register_section
from .section_helpers import _dict


@register_section("timings", title="Timings")
def timings_section(results: dict[str, Any]) -> str | None:
    timings = _dict(results, "timings")
    stages = [(k, v) for k, v in timings.items() if k != "total_s" and is_num(v)]
    total = timings.get("total_s")
    if not stages and not is_num(total):
        return None
    denom = total if is_num(total) and total > 0 else sum(v for _, v in stages) or 1.0
    rows = []
    for k, v in stages:
        label = k[:-2] if k.endswith("_s") else k
        share = 100 * v / denom
        rows.append([esc(label.replace("_", " ")), fmt_seconds(v),
                     f'{share:.0f}%<div class="bar"><span style="width:{min(100.0, share):.1f}%"></span></div>'])
    classes: list[str | None] = [None] * len(rows)
    if is_num(total):
        rows.append(["<strong>total</strong>", f"<strong>{fmt_seconds(total)}</strong>", ""])
        classes.append("total")
    return table(["stage", "time", "share"], rows, row_classes=classes, numeric=(1,), cls="grid narrow")


@register_section("curves", title="Curves")
def curves_section(results: dict[str, Any]) -> str | None:
    curves = results.get("curves")
    items = curves if isinstance(curves, list) else [curves]
    figs = []
    for c in items:
        if not isinstance(c, Mapping) or not isinstance(c.get("series"), Mapping):
            continue
        img = line_plot(c.get("x") if isinstance(c.get("x"), list) else None, c["series"],
                        title=str(c.get("title") or ""), xlabel=str(c.get("xlabel") or ""),
                        ylabel=str(c.get("ylabel") or ""))
        if img:
            figs.append(f"<figure>{img}</figure>")
    return "".join(figs) or None


@register_section("epoch curves", title="Validation accuracy per epoch", before="curves")
def epoch_curves_section(results: dict[str, Any]) -> str | None:
    """Every training run of the run directory (``metrics.csv``: teacher, trials, final students) on one plot."""
    rows = results.get("metrics")
    if not isinstance(rows, list) or not rows:
        return None
    series: dict[str, list] = {}
    for r in rows:
        if isinstance(r, Mapping) and r.get("val_acc") is not None and r.get("epoch") is not None:
            series.setdefault(str(r.get("run")), []).append((r["epoch"], r["val_acc"]))
    if not series:
        return None
    longest = max(max(e for e, _ in pts) for pts in series.values())
    x = list(range(1, int(longest) + 1))
    curves = {}
    for name, pts in series.items():
        by_epoch = dict(pts)
        curves[name] = [by_epoch.get(e) for e in x]
    return line_plot(x, curves, title="Validation accuracy per epoch (metrics.csv)", xlabel="epoch",
                     ylabel="val accuracy", alt="validation accuracy per epoch of every training run")
