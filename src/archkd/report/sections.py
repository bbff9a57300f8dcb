"""Built-in report sections, registered in report order when ``archkd.report`` is imported.

Each returns ``None`` when the results have none of its data; each copes with partial or odd data
(missing keys, ``None`` values, wrong types) by leaving that piece out rather than failing.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .fmt import (
    DASH,
    card,
    compact,
    compact_text,
    details,
    esc,
    fmt_change,
    fmt_int,
    fmt_latency,
    fmt_ms,
    fmt_pct,
    fmt_seconds,
    fmt_si,
    fmt_value,
    is_num,
    kv_table,
    latency_median,
    pretty_json,
    table,
)
from .plots import acc_vs_params_plot, history_plot, line_plot
from .registry import register_section

STATES = ("COMPLETE", "PRUNED", "INFEASIBLE", "FAIL")


# ----------------------------------------------------------------------------------------------- helpers
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


# ----------------------------------------------------------------------------------------------- sections
@register_section("summary", title="Summary")
def summary_section(results: dict[str, Any]) -> str | None:
    final, teacher, search = _dict(results, "final"), _dict(results, "teacher"), _dict(results, "search")
    dataset, timings, budget = _dict(results, "dataset"), _dict(results, "timings"), _dict(results, "budget")
    trials = _trials(results)

    cards = []
    if final.get("test_acc") is not None:
        sub = f"val {fmt_pct(final['val_acc'])}" if is_num(final.get("val_acc")) else None
        cards.append(card("Final student test acc", fmt_pct(final["test_acc"]), sub))
    if final.get("params") is not None:
        sub = f"budget ≤ {fmt_si(budget['max_params'])}" if is_num(budget.get("max_params")) else None
        cards.append(card("Student params", fmt_int(final["params"]), sub))
    if teacher.get("test_acc") is not None:
        parts = ([f"val {fmt_pct(teacher['val_acc'])}"] if is_num(teacher.get("val_acc")) else []) + \
                ([f"{teacher['name']}, {fmt_int(teacher.get('params'))} params"] if teacher.get("name") else [])
        cards.append(card("Teacher test acc", fmt_pct(teacher["test_acc"]), " · ".join(parts) or None))
    if is_num(teacher.get("params")) and is_num(final.get("params")) and final["params"] > 0:
        cards.append(card("Compression", f"{teacher['params'] / final['params']:.1f}×", "teacher / student params"))
    if trials:
        n_done = sum(_state(t) == "COMPLETE" for t in trials)
        cards.append(card("Trials", f"{n_done} / {len(trials)}", "complete / total"))
    if is_num(timings.get("total_s")):
        cards.append(card("Total time", fmt_seconds(timings["total_s"])))

    blocks = []
    if dataset:
        splits = [(k, dataset[k]) for k in ("train", "val", "test") if dataset.get(k) is not None]
        rows_html = _kv_known(
            dataset,
            [("name", "name", esc), ("num_classes", "classes", fmt_int), ("input_shape", "input shape", _shape)]
            + [(k, f"{k} samples", fmt_int) for k, _ in splits],
        )
        blocks.append(f"<div><h3>Dataset</h3>{rows_html}</div>")
    if teacher:
        rows_html = _kv_known(
            teacher,
            [("name", "name", esc), ("params", "params", fmt_int), ("val_acc", "val acc", fmt_pct),
             ("test_acc", "test acc", fmt_pct)],
        )
        blocks.append(f"<div><h3>Teacher</h3>{rows_html}</div>")
    if search:
        rows_html = _kv_known(
            search,
            [("space", "space", esc), ("sampler", "sampler", esc), ("n_trials", "trials", fmt_int),
             ("fidelity", "fidelity", fmt_value), ("best_trial", "best trial", lambda b: f"#{esc(b)}"),
             ("storage", "storage", lambda s: f"<code>{esc(s)}</code>")],
        )
        blocks.append(f"<div><h3>Search</h3>{rows_html}</div>")

    parts = []
    if cards:
        parts.append(f'<div class="cards">{"".join(cards)}</div>')
    if blocks:
        parts.append(f'<div class="columns">{"".join(blocks)}</div>')
    if results.get("config") not in (None, {}, []):
        parts.append(details("Run configuration", f"<pre>{pretty_json(results['config'])}</pre>"))
    return "".join(parts) or None


@register_section("generic teacher pool", title="Generic teacher (GTN): the student pool")
def generic_pool_section(results: dict[str, Any]) -> str | None:
    teacher = _dict(results, "teacher")
    pool = teacher.get("pool")
    if not isinstance(pool, list) or not pool:
        return None
    rows = []
    for m in pool:
        if not isinstance(m, Mapping):
            continue
        rows.append([esc(m.get("index", DASH)), fmt_int(m.get("params")),
                     f"{m['probability']:.3f}" if is_num(m.get("probability")) else DASH,
                     fmt_pct(m.get("supernet_val_acc")), f"<code>{esc(m.get('checkpoint') or DASH)}</code>",
                     compact(m.get("config"))])
    note = ("<p>Each student extracted from the supernet with BatchNorm recalibrated; p is the final probability of "
            "sampling it. Distil any of them from the teacher with <code>archkd distill --teacher &lt;teacher&gt; "
            "--student-checkpoint &lt;checkpoint&gt;</code> (add <code>--student-init checkpoint</code> to start from "
            "its supernet weights).</p>")
    return note + table(["#", "params", "p", "supernet val acc", "checkpoint", "configuration"], rows, numeric=(1, 2, 3))


@register_section("final student", title="Final student")
def final_section(results: dict[str, Any]) -> str | None:
    final, export = _dict(results, "final"), _dict(results, "export")
    if not final and not export:
        return None
    parts = []
    cards = []
    for key, label, fmt in (("test_acc", "Test acc", fmt_pct), ("val_acc", "Val acc", fmt_pct),
                            ("params", "Params", fmt_int), ("flops", "FLOPs", fmt_si), ("macs", "MACs", fmt_si),
                            ("epochs", "Epochs", fmt_int)):
        if final.get(key) is not None:
            cards.append(card(label, fmt(final[key])))
    if cards:
        parts.append(f'<div class="cards">{"".join(cards)}</div>')

    spec = final.get("spec")
    if spec not in (None, {}, []):
        parts.append(f'<h3>Architecture</h3><p class="spec">{compact(spec, limit=400)}</p>')
        parts.append(details("Full spec (JSON)", f"<pre>{pretty_json(spec)}</pre>"))

    lat = final.get("latency")
    if isinstance(lat, Mapping) and lat:
        rows = []
        for runtime, entry in lat.items():
            if isinstance(entry, Mapping):
                extra = ", ".join(f"{k}={v}" for k, v in entry.items() if k not in ("median_ms", "iqr_ms"))
                rows.append([esc(runtime), fmt_ms(entry.get("median_ms")), fmt_ms(entry.get("iqr_ms")),
                             esc(extra) if extra else ""])
            else:
                rows.append([esc(runtime), fmt_ms(entry), DASH, ""])
        parts.append("<h3>Latency</h3>" + table(["runtime", "median", "IQR", "details"], rows, numeric=(1, 2),
                                                 cls="grid narrow"))
    elif is_num(lat):
        parts.append(f"<h3>Latency</h3><p>{fmt_ms(lat)}</p>")

    if export:
        diffs = export.get("max_abs_diff") if isinstance(export.get("max_abs_diff"), Mapping) else {}
        fmts = [k for k in export if k != "max_abs_diff"] + [k for k in diffs if k not in export]
        rows = []
        for f in fmts:
            path = export.get(f)
            d = diffs.get(f)
            rows.append([esc(f), f"<code>{esc(path)}</code>" if path is not None else DASH,
                         esc(f"{d:.3g}") if is_num(d) else fmt_value(d)])
        if rows:
            parts.append("<h3>Export</h3>" + table(["format", "file", "max |Δ| vs PyTorch"], rows, numeric=(2,),
                                              cls="grid narrow"))

    history = final.get("history")
    if isinstance(history, list) and history:
        img = history_plot(history)
        if img:
            parts.append(f'<h3>Training history</h3><figure>{img}</figure>')
    return "".join(parts) or None


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


@register_section("accuracy-vs-params plot", title="Accuracy vs parameters")
def acc_vs_params_section(results: dict[str, Any]) -> str | None:
    img = acc_vs_params_plot(
        _trials(results),
        best_number=best_trial_number(results),
        max_params=_dict(results, "budget").get("max_params"),
        final=_dict(results, "final") or None,
        teacher=_dict(results, "teacher") or None,
    )
    if img is None:
        return None
    caption = ("Validation accuracy of each trial at search fidelity against its parameter count. Crosses along "
               "the bottom are trials rejected by the budget before training; the final student's accuracy "
               "is after full training.")
    return f"<figure>{img}<figcaption>{esc(caption)}</figcaption></figure>"


@register_section("budget", title="Budget")
def budget_section(results: dict[str, Any]) -> str | None:
    budget = results.get("budget")
    predicted = _predicted_latency(results) if _latency_predicted(results) else ""
    if not isinstance(budget, Mapping):
        return predicted or None
    final = _dict(results, "final")
    runtime, median = latency_median(final.get("latency"), budget.get("latency_runtime"))

    rows = []
    for label, limit, value, fmt in (
        ("parameters", budget.get("max_params"), final.get("params"), fmt_int),
        ("FLOPs", budget.get("max_flops"), final.get("flops"), fmt_si),
        (f"latency{f' ({runtime})' if runtime else ''}", budget.get("max_latency_ms"), median, fmt_ms),
    ):
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
    extra = {k: v for k, v in budget.items()
             if k not in ("max_params", "max_flops", "max_latency_ms", "latency_runtime") and v is not None}
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
