"""Report sections about what the run produced: the summary, a generic teacher's student pool and the final student.

Why first in the report: they answer what a reader opens it for (which model came out, how good and how big it is)
before the search that led there.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .fmt import (DASH, card, compact, details, esc, fmt_int, fmt_ms, fmt_pct, fmt_seconds, fmt_si, fmt_value, is_num,
                  pretty_json, table)
from .plots import history_plot
from .registry import register_section
from .section_helpers import _dict, _kv_known, _shape, _state, _trials


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


@register_section("teacher vs student", title="Teacher, student and baseline")
def comparison_section(results: dict[str, Any]) -> str | None:
    """The student against the teacher (speed-up on the deployment runtime, accuracy gap, compression) and, after a
    search with ``search.baseline``, against the hand-designed model of the same budget (``archkd.workflows.compare``)."""
    c = _dict(results, "comparison")
    sides = [(label, c.get(key)) for key, label in (("teacher", "teacher"), ("student", "student"),
                                                     ("baseline", "hand-designed baseline"))]
    sides = [(label, s) for label, s in sides if isinstance(s, Mapping)]
    if len(sides) < 2:
        return None
    t_ms, t_acc = sides[0][1].get("latency_ms"), sides[0][1].get("test_acc")
    rows = []
    for label, s in sides:
        ms, acc = s.get("latency_ms"), s.get("test_acc")
        speed = f"{t_ms / ms:.1f}×" if is_num(t_ms) and is_num(ms) and ms > 0 else DASH
        gap = f"{100 * (acc - t_acc):+.2f}" if is_num(acc) and is_num(t_acc) else DASH
        rows.append([esc(label), esc(s.get("name", DASH)), fmt_int(s.get("params")), fmt_pct(acc), fmt_ms(ms),
                     speed, gap])
    cards = []
    if is_num(c.get("speedup")):
        cards.append(card("Speed-up", f"{c['speedup']:.1f}×", f"teacher / student latency on {c.get('runtime')}"))
    if is_num(c.get("gap")):
        cards.append(card("Accuracy gap", f"{100 * c['gap']:.2f} pts", "teacher − student test acc"))
    if is_num(c.get("search_gain")):
        cards.append(card("Search vs baseline", f"{100 * c['search_gain']:+.2f} pts",
                          "student − hand-designed test acc, same budget and recipe"))
    return (f'<div class="cards">{"".join(cards)}</div>' if cards else "") + table(
        ["", "model", "params", "test acc", f"latency ({esc(c.get('runtime', '-'))})", "speed-up vs teacher",
         "Δ test acc vs teacher (pts)"], rows, numeric=(2, 3, 4, 5, 6))


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
