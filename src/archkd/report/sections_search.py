"""Report sections about the architecture search: its trials, progress, accuracy against parameters, the budget, and
its deliverables (the top-k finalists, or AutoKD's family of new members), which show just before the trials table.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archkd.measure.budget_kinds import BUDGET_KINDS

from .fmt import (DASH, compact, compact_text, details, esc, fmt_change, fmt_int, fmt_latency, fmt_ms, fmt_pct,
                  fmt_seconds, fmt_si, fmt_value, is_num, kv_table, latency_median, table)
from .plots import COST_AXES, acc_vs_cost_plot, line_plot
from .registry import register_section
from .section_helpers import (STATES, _badge, _dict, _latency, _latency_predicted, _reward, _sort_keys, _state, _trials,
                              best_trial_number)


@register_section("trials table", title="Search trials")
def trials_section(results: dict[str, Any]) -> str | None:
    trials = _trials(results)
    if not trials:
        return None
    best = best_trial_number(results)
    counts = {}
    for t in trials:
        counts[_state(t) or "?"] = counts.get(_state(t) or "?", 0) + 1
    order = [s for s in STATES if s in counts] + sorted(s for s in counts if s not in STATES)
    summary = ", ".join(f"{counts[s]} {s.lower()}" for s in order)

    def row(t: Mapping[str, Any]) -> tuple[list[str], list[Any], str | None]:
        is_best = best is not None and t.get("number") == best
        number = esc(t.get("number", DASH))
        if is_best:
            number += ' <span class="star" title="best trial">★ best</span>'
        # an over-budget trial's reward is the 0 the study was told in its place, not a score
        reward = t.get("reward") if is_num(t.get("reward")) and _state(t) != "INFEASIBLE" else None
        cells = [number, _badge(_state(t)), fmt_int(t.get("params")), fmt_si(t.get("flops")), fmt_si(t.get("macs")),
                 fmt_latency(_latency(t)),
                 fmt_pct(t.get("val_acc")) + (f" · r {reward:.3f}" if reward is not None else ""),
                 _fidelity(t), fmt_seconds(t.get("seconds")), esc(t.get("proposer") or DASH), compact(t.get("config")),
                 esc(t.get("reason")) if t.get("reason") else ""]
        keys = [t.get("number"), _state(t), t.get("params"), t.get("flops"), t.get("macs"),
                latency_median(_latency(t))[1], reward if reward is not None else t.get("val_acc"), t.get("steps"),
                t.get("seconds"), t.get("proposer"), compact_text(t.get("config") or {}), t.get("reason")]
        return cells, _sort_keys(keys), "best" if is_best else None

    latency = "latency (predicted)" if _latency_predicted(results) else "latency"
    # "proposed by": the method's model, its start-up design, a fallback draw, a queued or retried trial
    headers = ["#", "state", "params", "FLOPs", "MACs", latency, "val acc", "epochs", "time", "proposed by",
               "architecture", "note"]
    numeric = (0, 2, 3, 4, 5, 6, 7, 8)

    def grid(subset: list[Mapping[str, Any]]) -> str:
        built = [row(t) for t in sorted(subset, key=lambda t: t.get("number") if is_num(t.get("number")) else 1e18)]
        return table(headers, [b[0] for b in built], row_classes=[b[2] for b in built], numeric=numeric,
                     sort_keys=[b[1] for b in built])

    trained = [t for t in trials if _state(t) != "INFEASIBLE"]
    skipped = [t for t in trials if _state(t) == "INFEASIBLE"]
    best_note = f" Best trial: <strong>#{esc(best)}</strong> (highlighted)." if best is not None else ""
    parts = [f'<p>{len(trials)} trials: {esc(summary)}, numbered as in the study.{best_note} '
             'Click a column header to sort.</p>']
    if trained:
        parts.append(f'<div class="scroll">{grid(trained)}</div>')
    if skipped:  # over-budget candidates cost no training: one folded block, however many there are
        parts.append(details(f"{len(skipped)} over-budget candidates (rejected before training; the note says why)",
                             f'<div class="scroll">{grid(skipped)}</div>'))
    return "".join(parts)


def _fidelity(t: Mapping[str, Any]) -> str:
    """Epochs a trial trained (fewer than planned when a pruner stopped it)."""
    return fmt_int(t.get("steps")) if is_num(t.get("steps")) else DASH


@register_section("search progress", title="Best so far")
def progress_section(results: dict[str, Any]) -> str | None:
    done = [t for t in _trials(results) if _state(t) == "COMPLETE" and is_num(t.get("number"))
            and is_num(t.get("reward") if is_num(t.get("reward")) else t.get("val_acc"))]
    if len(done) < 2:
        return None
    done.sort(key=lambda t: t["number"])
    best, xs, ys, values = float("-inf"), [], [], []
    for t in done:
        v = float(t["reward"] if is_num(t.get("reward")) else t["val_acc"])
        best = max(best, v)
        xs.append(t["number"])
        ys.append(best)
        values.append(v)
    img = line_plot(xs, {"best so far": ys, "trial": values}, title="Search value per trial and best so far",
                    xlabel="trial", ylabel="value (reward)")
    return f"<figure>{img}</figure>" if img else None


# trial-row key -> the budget limit on it (budget.max_*)
_LIMIT_KEYS = {"params": "max_params", "latency_ms": "max_latency_ms", "flops": "max_flops",
               "memory_mb": "max_memory_mb"}


def cost_axis(results: Mapping[str, Any]) -> str:
    """The cost the report plots accuracy against: the search's own (``search.pareto.cost``: the reward's cost, a
    multi-objective search's first cost, latency when the trials were timed), else parameters. Why: a user whose
    budget or objective is latency asks which accuracy each millisecond buys, not each parameter."""
    cost = _dict(_dict(results, "search"), "pareto").get("cost")
    trials = _trials(results)
    if cost in COST_AXES and any(is_num(t.get(cost)) for t in trials):
        return cost
    if is_num(_dict(results, "budget").get("max_latency_ms")) and any(is_num(t.get("latency_ms")) for t in trials):
        return "latency_ms"
    return "params"


@register_section("accuracy-vs-params plot", title="Accuracy vs cost")
def acc_vs_params_section(results: dict[str, Any]) -> str | None:
    cost = cost_axis(results)
    budget, final = _dict(results, "budget"), dict(_dict(results, "final"))
    if cost == "latency_ms" and final:
        final["latency_ms"] = latency_median(final.get("latency"), budget.get("latency_runtime"))[1]
    img = acc_vs_cost_plot(
        _trials(results),
        cost=cost,
        best_number=best_trial_number(results),
        limit=budget.get(_LIMIT_KEYS.get(cost, "")),
        final=final or None,
        teacher=_dict(results, "teacher") or None,
    )
    if img is None:
        return None
    caption = (f"Validation accuracy of each trial at search fidelity against its {COST_AXES[cost][0]}. Crosses "
               "along the bottom are trials rejected by the budget before training; the final student's accuracy "
               "is after full training.")
    return f"<figure>{img}<figcaption>{esc(caption)}</figcaption></figure>"


# the report's own cells for the built-in kinds (SI prefixes, milliseconds); other kinds use their registration's
_KIND_CELLS = {"params": ("parameters", fmt_int), "flops": ("FLOPs", fmt_si), "latency_ms": ("latency", fmt_ms)}


@register_section("budget", title="Budget")
def budget_section(results: dict[str, Any]) -> str | None:
    budget = results.get("budget")
    predicted = _predicted_latency(results) if _latency_predicted(results) else ""
    if not isinstance(budget, Mapping):
        return predicted or None
    final = _dict(results, "final")
    runtime, median = latency_median(final.get("latency"), budget.get("latency_runtime"))

    rows = []
    for kind in BUDGET_KINDS.values():  # every kind, a plugin's too: its label and format come from its registration
        label, fmt = _KIND_CELLS.get(kind.name, (kind.label, lambda v, k=kind: k.value_text(v) if is_num(v) else DASH))
        limit = kind.limit_in(budget)
        value = median if kind.name == "latency_ms" else final.get(kind.name)
        if kind.name == "latency_ms" and runtime:
            label += f" ({runtime})"
        if limit is None and value is None:
            continue
        if is_num(limit) and is_num(value) and limit > 0:
            ok = value <= limit
            used = f"{100 * value / limit:.0f}%"
            status = f'<span class="badge badge-{"complete" if ok else "fail"}">{"within" if ok else "over"}</span>'
            bar = f'<div class="bar"><span class="{"" if ok else "over"}" style="width:{min(100.0, 100 * value / limit):.1f}%"></span></div>'
        else:
            used, status, bar = DASH, ("no limit" if limit is None else DASH), ""
        rows.append([esc(label), fmt(limit) if limit is not None else "none", fmt(value), f"{used}{bar}", status])
    parts = []
    if rows:
        parts.append(table(["constraint", "limit", "final student", "used", "status"], rows, numeric=(1, 2),
                           cls="grid narrow"))
    else:
        parts.append("<p>No constraints were set.</p>")
    if predicted:
        parts.append(predicted)
    elif budget.get("latency_runtime") is not None:
        parts.append(f"<p>Latency is measured with <code>{esc(budget['latency_runtime'])}</code>.</p>")
    trials = _trials(results)
    n_inf = sum(_state(t) == "INFEASIBLE" for t in trials)
    if trials:
        parts.append(f"<p>{n_inf} of {len(trials)} search trials were infeasible under this budget.</p>")
    shown = {f"max_{name}" for name in BUDGET_KINDS} | {"limits", "latency_runtime"}
    extra = {k: v for k, v in budget.items() if k not in shown and v is not None}
    if extra:
        parts.append(kv_table([(str(k).replace("_", " "), fmt_value(v)) for k, v in extra.items()]))
    return "".join(parts)


def _predicted_latency(results: Mapping[str, Any]) -> str:
    """Says the search's latencies were predicted, and shows the Pareto set's re-measured latencies beside the
    predicted ones (``search.pareto.measured_ms``): how far off the predictor was for the students a user picks from,
    and whether one it put within the latency budget breaks it."""
    budget = _dict(results, "budget") or _dict(_dict(results, "config"), "budget")
    runtime = budget.get("latency_runtime")
    on = f" of <code>{esc(runtime)}</code>" if runtime else ""
    note = (f"<p>Latency was <strong>predicted</strong> during the search (this machine's per-block latency "
            f"model{on}), not measured per candidate: the trials' latencies and the latency budget check are "
            "estimates.")
    measured = _dict(_dict(results, "search"), "pareto").get("measured_ms")
    if not isinstance(measured, Mapping) or not measured:
        return note + "</p>"
    by_number = {str(t.get("number")): t for t in _trials(results)}  # JSON made the trial numbers str keys
    limit = budget.get("max_latency_ms")
    rows, keys = [], []
    for number, ms in measured.items():
        t = by_number.get(str(number), {})
        pred = t.get("latency_ms")
        err = pred / ms - 1 if is_num(pred) and is_num(ms) and ms > 0 else None
        status = ("within" if ms <= limit else "over") if is_num(limit) and is_num(ms) else None
        badge = f'<span class="badge badge-{"complete" if status == "within" else "fail"}">{status}</span>'
        rows.append([esc(number), fmt_int(t.get("params")), fmt_pct(t.get("val_acc")), fmt_ms(pred), fmt_ms(ms),
                     fmt_change(err), badge if status else DASH])
        keys.append(_sort_keys([t.get("number"), t.get("params"), t.get("val_acc"), pred, ms, err, status]))
    return (note + " The Pareto-set trials were re-measured on the runtime after the search "
            "(error: predicted / measured − 1):</p>"
            + table(["trial", "params", "val acc", "predicted", "measured", "error", "measured vs budget"], rows,
                    numeric=(0, 1, 2, 3, 4, 5), cls="grid narrow", sort_keys=keys))


@register_section("finalists", title="Finalists (top-k re-trained with the full recipe)", before="trials table")
def finalists_section(results: dict[str, Any]) -> str | None:
    """The search's deliverable when ``search.top_k`` is set: the k best trials by search reward, each distilled again
    with the full recipe and tested; the final reward, on the full-recipe val acc, is what to pick by."""
    top = results.get("top_k")
    finalists = [f for f in top if isinstance(f, Mapping)] if isinstance(top, list) else []
    if not finalists:
        return None
    scored = [f for f in finalists if is_num(f.get("final_reward"))]
    best = max(scored, key=lambda f: f["final_reward"]) if scored else None
    rows, classes, keys = [], [], []
    for f in finalists:
        number = esc(f.get("trial", DASH))
        if f is best:
            number += ' <span class="star" title="best final reward">★ best</span>'
        rows.append([number, _reward(f.get("search_reward")), fmt_pct(f.get("val_acc")), fmt_pct(f.get("test_acc")),
                     _reward(f.get("final_reward")), fmt_int(f.get("params")), fmt_si(f.get("flops")),
                     fmt_latency(_latency(f)), f"<code>{esc(f.get('checkpoint') or DASH)}</code>"])
        classes.append("best" if f is best else None)
        keys.append(_sort_keys([f.get("trial"), f.get("search_reward"), f.get("val_acc"), f.get("test_acc"),
                                f.get("final_reward"), f.get("params"), f.get("flops"), latency_median(_latency(f))[1],
                                f.get("checkpoint")]))
    latency = "latency (predicted)" if _latency_predicted(results) else "latency"
    note = (f"<p>The {len(finalists)} best trials by search reward, each distilled again from the teacher with the "
            "full recipe and tested; the final reward scores the full-recipe val acc. ★ marks the best final reward."
            "</p>")
    return note + table(["trial", "search reward", "val acc", "test acc", "final reward", "params", "FLOPs", latency,
                         "checkpoint"], rows, row_classes=classes, numeric=(0, 1, 2, 3, 4, 5, 6, 7), sort_keys=keys)


@register_section("family", title="Family (new members of the best generator)", before="trials table")
def family_section(results: dict[str, Any]) -> str | None:
    """AutoKD's deliverable is a generator: ``archkd family sample`` draws new members of the best trial's family
    (new graph seeds, the same width target); their spread says how much the generator, not one lucky graph, is
    worth."""
    fam = results.get("family")
    members = [m for m in fam.get("members", []) if isinstance(m, Mapping)] if isinstance(fam, Mapping) else []
    if not members:
        return None
    rows = [[esc(m.get("member", DASH)), fmt_int(m.get("params")), fmt_pct(m.get("val_acc")), fmt_pct(m.get("test_acc")),
             f"<code>{esc(m.get('checkpoint') or DASH)}</code>"] for m in members]
    keys = [_sort_keys([m.get("member"), m.get("params"), m.get("val_acc"), m.get("test_acc"), m.get("checkpoint")])
            for m in members]
    accs = [m["test_acc"] for m in members if is_num(m.get("test_acc"))]
    spread = (f" Test accuracy {fmt_pct(min(accs))} to {fmt_pct(max(accs))}, mean {fmt_pct(sum(accs) / len(accs))}."
              if accs else " Not trained (draw them with --train to distill and test each).")
    note = (f"<p>{len(members)} new members of trial #{esc(fam.get('trial', DASH))}'s generator "
            f"<code>{esc(compact_text(fam.get('generator') or {}))}</code>.{spread}</p>")
    return note + table(["member", "params", "val acc", "test acc", "checkpoint"], rows, numeric=(0, 1, 2, 3),
                        sort_keys=keys)
