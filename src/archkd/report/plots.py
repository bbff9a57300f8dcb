"""Matplotlib plots embedded as inline base64 PNG ``<img>`` tags.

Figures are made with ``matplotlib.figure.Figure`` and the Agg canvas directly, never through pyplot, so
rendering a report neither switches the process-wide backend nor opens windows nor leaks figures.
"""
from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import Formatter, PercentFormatter
from matplotlib.transforms import blended_transform_factory

from .fmt import esc, is_num, si_split

__all__ = ["new_figure", "figure_img", "line_plot", "acc_vs_cost_plot", "acc_vs_params_plot", "history_plot",
           "COST_AXES"]

# A small, readable style shared by all plots; applied per figure via rc_context.
_STYLE = {
    "font.size": 9.5,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 9.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.35,
    "grid.linewidth": 0.6,
    "legend.fontsize": 8.5,
    "legend.framealpha": 0.9,
    # 10 colours, then the same 10 dashed, dash-dotted, dotted: 40 series before a colour + style pair repeats (a
    # run directory's epoch curves easily hold a teacher, a dozen trials and the finalists)
    "axes.prop_cycle": matplotlib.cycler(linestyle=["-", "--", "-.", ":"]) * matplotlib.cycler(
        color=["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777",
               "#4b5563", "#65a30d"]
    ),
}

BLUE, RED, GREEN, ORANGE, GREY, PURPLE = "#2563eb", "#dc2626", "#16a34a", "#ea580c", "#6b7280", "#9333ea"


def new_figure(width: float = 7.0, height: float = 4.2) -> Figure:
    """A Figure with an Agg canvas and constrained layout (pass it to ``figure_img`` when done)."""
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_img(fig: Figure, alt: str, dpi: int = 144) -> str:
    """Render ``fig`` to PNG and return ``<img class="plot" src="data:image/png;base64,...">``."""
    buf = io.BytesIO()
    with matplotlib.rc_context(_STYLE):
        fig.savefig(buf, format="png", dpi=dpi, facecolor="white", metadata={"Software": None})
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img class="plot" alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def _human(x: float) -> str:
    """A tick label: 6k, 20k, 1.5M (the report's SI prefixes, without the space of table cells)."""
    mantissa, prefix = si_split(x)
    return f"{mantissa:.3g}{prefix}"


class _HumanLogFormatter(Formatter):
    """Log-axis labels as 6k / 20k / 1.5M instead of 6x10^3.

    For minor ticks, fewer labels the more decades are shown: 2,3,4,6 up to 1.5 decades, 2,5 up to 3, else none.
    """

    def __init__(self, minor: bool = False) -> None:
        self.minor = minor

    def __call__(self, x: float, pos: int | None = None) -> str:
        if not x > 0:
            return ""
        if self.minor:
            vmin, vmax = sorted(self.axis.get_view_interval()) if self.axis is not None else (x, x)
            decades = math.log10(vmax / vmin) if vmin > 0 else math.inf
            coeff = round(x / 10 ** math.floor(math.log10(x) + 1e-9))
            allowed = {2, 3, 4, 6} if decades <= 1.5 else {2, 5} if decades <= 3 else set()
            if coeff not in allowed:
                return ""
        return _human(x)


def _floats(values: Sequence[Any]) -> list[float]:
    return [float(v) if is_num(v) else math.nan for v in values]


def _is_fraction(values: Sequence[float]) -> bool:
    vals = [v for v in values if math.isfinite(v)]
    return bool(vals) and all(-0.001 <= v <= 1.001 for v in vals)


def line_plot(
    x: Sequence[Any] | None,
    series: Mapping[str, Sequence[Any]],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    alt: str | None = None,
) -> str | None:
    """A line plot of named series against ``x`` (or their index); ``None`` when no series has a number.

    Non-numbers (None/NaN) leave gaps. A series longer or shorter than ``x`` is cut to the common length.
    """
    usable = {str(k): _floats(v) for k, v in series.items() if isinstance(v, Sequence) and not isinstance(v, str)}
    usable = {k: v for k, v in usable.items() if any(math.isfinite(i) for i in v)}
    if not usable:
        return None
    with matplotlib.rc_context(_STYLE):
        many = len(usable) > 8
        fig = new_figure(8.0 if many else 7.0, 4.2)
        ax = fig.add_subplot()
        xs_all = _floats(x) if x is not None and not isinstance(x, str) else None
        for name, ys in usable.items():
            if xs_all is not None and len(xs_all):
                n = min(len(xs_all), len(ys))
                xs, ys = xs_all[:n], ys[:n]
            else:
                xs = list(range(len(ys)))
            ax.plot(xs, ys, label=name, linewidth=1.6, marker="o" if len(ys) <= 30 else None, markersize=3)
        if title:
            ax.set_title(title)
        ax.set_xlabel(xlabel or ("step" if x is None else ""))
        if ylabel:
            ax.set_ylabel(ylabel)
        if len(usable) > 1 or many:
            if many:
                ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 + len(usable) // 16,
                          fontsize=7.5, frameon=False)
            else:
                ax.legend(loc="best")
        return figure_img(fig, alt or title or "line plot")


def pareto_points(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (cost, accuracy) points no other point beats on both (fewer or equal cost and higher accuracy), by cost."""
    front: list[tuple[float, float]] = []
    for cost, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or acc > front[-1][1]:
            front.append((cost, acc))
    return front


# trial-row key -> (axis label, budget line label) of the accuracy-vs-cost plot
COST_AXES = {"params": ("parameters", "params budget"), "latency_ms": ("latency (ms)", "latency budget"),
             "flops": ("FLOPs", "FLOPs budget"), "memory_mb": ("peak activation memory (MB)", "memory budget")}


def acc_vs_cost_plot(
    trials: Sequence[Mapping[str, Any]],
    *,
    cost: str = "params",
    best_number: Any = None,
    limit: Any = None,
    final: Mapping[str, Any] | None = None,
    teacher: Mapping[str, Any] | None = None,
) -> str | None:
    """Validation accuracy vs ``cost`` (a trial-row key of ``COST_AXES``: parameters, latency, FLOPs, memory; log x)
    of the search, with the budget's ``limit`` on that axis; ``None`` when nothing has both.

    Why the cost is chosen: a user whose budget (or objective) is latency asks which accuracy each latency buys; the
    same trials against parameters answer another question."""
    axis_name, budget_label = COST_AXES.get(cost, (cost, f"{cost} budget"))

    def state(t: Mapping[str, Any]) -> str:
        return str(t.get("state") or "").upper()

    def point(t: Mapping[str, Any]) -> bool:
        return is_num(t.get(cost)) and t[cost] > 0 and is_num(t.get("val_acc"))

    complete = [t for t in trials if state(t) == "COMPLETE" and point(t)]
    pruned = [t for t in trials if state(t) == "PRUNED" and point(t)]
    infeasible = [t for t in trials if state(t) == "INFEASIBLE" and is_num(t.get(cost)) and t[cost] > 0]
    best = next((t for t in complete + pruned if best_number is not None and t.get("number") == best_number), None)
    final_pt = final if isinstance(final, Mapping) and point(final) else None
    if not (complete or pruned or final_pt):
        return None

    accs = [t["val_acc"] for t in complete + pruned] + ([final_pt["val_acc"]] if final_pt else [])
    teacher_acc = teacher.get("val_acc") if isinstance(teacher, Mapping) and is_num(teacher.get("val_acc")) else None
    fraction = _is_fraction(accs + ([teacher_acc] if teacher_acc is not None else []))

    with matplotlib.rc_context(_STYLE):
        fig = new_figure(7.2, 4.4)
        ax = fig.add_subplot()
        ax.set_xscale("log")
        if complete:
            ax.scatter([t[cost] for t in complete], [t["val_acc"] for t in complete], s=36, color=BLUE,
                       alpha=0.85, edgecolor="white", linewidth=0.6, label=f"complete trials ({len(complete)})",
                       zorder=3)
            if len(complete) <= 40:
                for t in complete:
                    if t.get("number") is not None:
                        ax.annotate(str(t["number"]), (t[cost], t["val_acc"]), xytext=(7, 5),
                                    textcoords="offset points", fontsize=7, color=GREY)
        front = pareto_points([(t[cost], t["val_acc"]) for t in complete])
        if len(front) >= 2:
            ax.step([p for p, _ in front], [a for _, a in front], where="post", color=BLUE, alpha=0.5, linewidth=1.2,
                    label=f"Pareto front ({len(front)} trials)", zorder=2)
        if pruned:
            ax.scatter([t[cost] for t in pruned], [t["val_acc"] for t in pruned], s=30, facecolor="none",
                       edgecolor=GREY, linewidth=1.0, label=f"pruned trials ({len(pruned)})", zorder=2)
        if infeasible:
            # Infeasible trials have no accuracy: put them on a strip at the bottom of the axes.
            strip = blended_transform_factory(ax.transData, ax.transAxes)
            ax.scatter([t[cost] for t in infeasible], [0.03] * len(infeasible), transform=strip, marker="x",
                       s=36, color=RED, linewidth=1.4, label=f"infeasible trials ({len(infeasible)})", zorder=3,
                       clip_on=False)
        if best is not None:
            ax.scatter([best[cost]], [best["val_acc"]], s=210, facecolor="none", edgecolor=ORANGE,
                       linewidth=2.0, label=f"best trial (#{best.get('number')})", zorder=4)
        if final_pt is not None:
            ax.scatter([final_pt[cost]], [final_pt["val_acc"]], s=130, marker="*", color=GREEN,
                       edgecolor="black", linewidth=0.5, label="final student", zorder=5)
        if teacher_acc is not None:
            name = teacher.get("name") if isinstance(teacher, Mapping) else None  # type: ignore[union-attr]
            ax.axhline(teacher_acc, color=PURPLE, linestyle=":", linewidth=1.5,
                       label=f"teacher{f' ({name})' if name else ''} val acc")

        xs = [t[cost] for t in complete + pruned + infeasible] + ([final_pt[cost]] if final_pt else [])
        if is_num(limit) and limit > 0:
            xs.append(limit)
        lo, hi = min(xs), max(xs)
        ax.set_xlim(lo / 1.6, hi * 1.6)
        if is_num(limit) and limit > 0:
            ax.axvline(limit, color=RED, linestyle="--", linewidth=1.3, label=budget_label)
            ax.axvspan(limit, hi * 1.6, color=RED, alpha=0.05, linewidth=0)
        ymin, ymax = ax.get_ylim()
        if teacher_acc is not None:  # axhline does not autoscale: keep the teacher line off the frame
            span = max(ymax, teacher_acc) - min(ymin, teacher_acc) or 1.0
            ymin, ymax = min(ymin, teacher_acc - 0.05 * span), max(ymax, teacher_acc + 0.05 * span)
            ax.set_ylim(ymin, ymax)
        if infeasible:  # leave room for the strip of crosses under the lowest accuracy
            ax.set_ylim(ymin - 0.08 * (ymax - ymin), ymax)
        if fraction:
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        ax.xaxis.set_major_formatter(_HumanLogFormatter())
        ax.xaxis.set_minor_formatter(_HumanLogFormatter(minor=True))
        major, minor = (matplotlib.rcParams[f"xtick.{w}.size"] + matplotlib.rcParams[f"xtick.{w}.pad"]
                        for w in ("major", "minor"))
        ax.tick_params(axis="x", which="minor", pad=matplotlib.rcParams["xtick.minor.pad"] + major - minor)
        ax.set_xlabel(f"{axis_name} (log scale)")
        ax.set_ylabel("validation accuracy")
        ax.set_title(f"Accuracy vs {axis_name.split(' (')[0]}")
        ax.legend(loc="best")
        return figure_img(fig, f"validation accuracy vs {axis_name} of the search trials")


def acc_vs_params_plot(trials: Sequence[Mapping[str, Any]], *, max_params: Any = None, **kw: Any) -> str | None:
    """Validation accuracy vs parameter count (log x) of the search (``acc_vs_cost_plot`` on parameters)."""
    return acc_vs_cost_plot(trials, cost="params", limit=max_params, **kw)



def history_plot(history: Sequence[Mapping[str, Any]]) -> str | None:
    """Loss and accuracy per epoch of the final student's training; ``None`` when nothing numeric."""
    rows = [h for h in history if isinstance(h, Mapping)]
    if not rows:
        return None
    keys: list[str] = []
    for h in rows:
        for k, v in h.items():
            if k != "epoch" and k not in keys and is_num(v):
                keys.append(k)
    loss_keys = [k for k in keys if "loss" in k.lower()]
    acc_keys = [k for k in keys if "acc" in k.lower()]
    if not loss_keys and not acc_keys:
        return None
    xs = [float(h["epoch"]) if is_num(h.get("epoch")) else float(i + 1) for i, h in enumerate(rows)]
    panels = [p for p in (("Loss", loss_keys), ("Accuracy", acc_keys)) if p[1]]
    with matplotlib.rc_context(_STYLE):
        fig = new_figure(7.2 if len(panels) == 2 else 6.0, 3.4)
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (label, ks) in zip(axes, panels):
            for k in ks:
                ys = _floats([h.get(k) for h in rows])
                ax.plot(xs, ys, label=k, linewidth=1.6, marker="o" if len(xs) <= 40 else None, markersize=3)
            ax.set_xlabel("epoch")
            ax.set_title(label)
            if label == "Accuracy" and _is_fraction([v for k in ks for v in _floats([h.get(k) for h in rows])]):
                ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
            ax.legend(loc="best")
        return figure_img(fig, "training history of the final student")
