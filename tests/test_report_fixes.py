"""Report defects of issue #24 (items 15-16): number formats, latency cells, plot colours, the search's finalists,
predicted latency, infeasible trials. Results dicts are built by hand: no training."""
from __future__ import annotations

import json
import re

import pytest

from archkd.report import fmt, plots, render_report

LATENCY = {"onnxruntime": {"runtime": "onnxruntime", "device": "cpu", "batch_size": 1, "threads": 1, "repeats": 50,
                           "median_ms": 0.123, "iqr_ms": 0.01, "p90_ms": 0.15, "min_ms": 0.1, "load_warning": None}}


def _section(html: str, slug: str) -> str | None:
    """The body of ``<section id="section-<slug>">``, or None when the report has no such section."""
    m = re.search(rf'<section id="section-{slug}">(.*?)</section>', html, re.S)
    return m.group(1) if m else None


def _main(html: str) -> str:
    """The page's sections, without the head's CSS and the sorting script (both have braces of their own)."""
    return html[html.index("<main>"):html.index("</main>")]


def _rows(fragment: str) -> list[str]:
    """The body rows of the tables in ``fragment`` (header rows left out)."""
    return [r for r in re.findall(r"<tr[^>]*>(.*?)</tr>", fragment, re.S) if r.startswith("<td")]


def _search_results() -> dict:
    trials = [
        {"number": 0, "state": "COMPLETE", "params": 20_000, "flops": 999_744, "latency_ms": 0.695, "val_acc": 0.81,
         "reward": 0.81, "reason": None},
        {"number": 1, "state": "COMPLETE", "params": 9_000, "flops": 12_345, "latency_ms": 0.34, "val_acc": 0.78,
         "reward": 0.78, "reason": None},
        {"number": 2, "state": "COMPLETE", "params": 30_000, "flops": 1.5e9, "latency_ms": 0.9, "val_acc": 0.70,
         "reward": 0.70, "reason": None},
    ]
    return {"name": "s", "budget": {"max_params": 50_000, "max_latency_ms": 0.6, "latency_runtime": "onnxruntime"},
            "search": {"space": "stages", "best_trial": 0}, "trials": trials}


# 1. SI numbers --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, text", [
    (999_744, "1.00 M"), (12_345, "12.3 k"), (1.5e9, "1.50 G"), (0, "0"), (None, "—"), (950, "950"),
    (999.96, "1.00 k"), (2_000_000, "2.00 M"), (-2_500, "-2.50 k"), (0.5, "0.5"),
])
def test_fmt_si_picks_the_prefix_after_rounding(value, text):
    assert fmt.fmt_si(value) == text


def test_ms_and_plain_values_have_no_exponent():
    assert fmt.fmt_ms(0.5123) == "0.512 ms"
    assert fmt.fmt_ms(999.7) == "1,000 ms" and fmt.fmt_ms(12_345.0) == "12,345 ms"
    assert fmt.fmt_value(12_345.6) == "12,346" and fmt.fmt_value(0.5123) == "0.5123"


def test_rendered_flops_are_si():
    results = {**_search_results(), "final": {"params": 20_000, "flops": 999_744}}
    html = _main(render_report(results))
    trials = _section(html, "trials-table")
    for text in ("1.00 M", "12.3 k", "1.50 G"):
        assert f">{text}</td>" in trials, text
    assert '<div class="card-value">1.00 M</div>' in _section(html, "final-student")
    assert "e+" not in re.sub(r"data:image/png;base64,[^\"]*", "", html)


# 2. latency dicts -----------------------------------------------------------------------------------------------------
def test_fmt_latency_shows_the_median_and_runtime():
    assert fmt.fmt_latency(LATENCY) == "0.123 ms (onnxruntime)"
    assert fmt.fmt_latency({"torch": 0.4, "onnxruntime": LATENCY["onnxruntime"]}, "onnxruntime") == "0.123 ms (onnxruntime)"
    assert fmt.fmt_latency({"torch": 0.4}) == "0.4 ms (torch)"
    assert fmt.fmt_latency(LATENCY["onnxruntime"]) == "0.123 ms (onnxruntime)"
    assert fmt.fmt_latency(0.2) == "0.2 ms" and fmt.fmt_latency(None) == "—" and fmt.fmt_latency({}) == "—"


def test_latency_dict_is_not_dumped():
    results = _search_results()
    results["trials"][1]["latency_ms"] = LATENCY  # a row carrying a distill result's latency
    results["top_k"] = [{"trial": 1, "search_reward": 0.78, "val_acc": 0.8, "test_acc": 0.79, "final_reward": 0.8,
                         "params": 9_000, "flops": 12_345, "latency": LATENCY, "checkpoint": "final/01/best.pt"}]
    results["final"] = {"params": 9_000, "flops": 12_345, "latency": LATENCY, "val_acc": 0.8, "test_acc": 0.79}
    html = _main(render_report(results))
    assert "{" not in html and "median_ms" not in html
    assert ">0.123 ms (onnxruntime)</td>" in _section(html, "trials-table")
    assert ">0.123 ms (onnxruntime)</td>" in _section(html, "finalists")


# 3. plot colours ------------------------------------------------------------------------------------------------------
def _styles(fig) -> list[tuple[str, str]]:
    return [(line.get_color(), line.get_linestyle()) for ax in fig.axes for line in ax.get_lines()]


@pytest.mark.parametrize("n", [12, 20])
def test_line_plot_series_never_share_colour_and_style(monkeypatch, n):
    figures = []
    monkeypatch.setattr(plots, "figure_img", lambda fig, alt, dpi=144: figures.append(fig) or "<img>")
    assert plots.line_plot([1, 2, 3], {f"run {i}": [0.1, 0.2 + i / 100, 0.3] for i in range(n)}) == "<img>"
    styles = _styles(figures[0])
    assert len(styles) == n and len(set(styles)) == n


def test_epoch_curves_of_12_runs_are_distinct(monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "figure_img", lambda fig, alt, dpi=144: figures.append(fig) or "<img>")
    metrics = [{"run": f"trials/{r:04d}", "epoch": e, "val_acc": 0.5 + r / 100 + e / 50} for r in range(12)
               for e in (1, 2, 3)]
    assert "<img>" in _section(render_report({"name": "m", "metrics": metrics}), "epoch-curves")
    styles = _styles(figures[0])
    assert len(styles) == 12 and len(set(styles)) == 12


# 4. finalists ---------------------------------------------------------------------------------------------------------
def test_finalists_section_renders_top_k():
    results = _search_results()
    results["top_k"] = [
        {"trial": 0, "recipe": {}, "search_reward": 0.81, "val_acc": 0.9012, "test_acc": 0.8975, "final_reward": 0.9012,
         "params": 20_000, "flops": 999_744, "latency_ms": 0.695, "checkpoint": "runs/s/final/01_trial0000/best.pt"},
        {"trial": 1, "recipe": {}, "search_reward": 0.78, "val_acc": 0.9123, "test_acc": 0.9051, "final_reward": 0.9123,
         "params": 9_000, "flops": 12_345, "latency_ms": 0.34, "checkpoint": "runs/s/final/02_trial0001/best.pt"},
    ]
    html = render_report(results)
    body = _section(html, "finalists")
    assert body is not None and "<h2>Finalists (top-k re-trained with the full recipe)</h2>" in html
    for header in ("trial", "search reward", "val acc", "test acc", "final reward", "params", "FLOPs", "latency"):
        assert f">{header}</th>" in body, header
    rows = _rows(body)
    assert len(rows) == 2
    assert all(s in rows[0] for s in ("0.8100", "90.12%", "89.75%", "0.9012", "20,000", "1.00 M", "0.695 ms"))
    assert all(s in rows[1] for s in ("0.7800", "91.23%", "90.51%", "0.9123", "9,000", "12.3 k", "0.34 ms"))
    assert "★ best" in rows[1] and "★ best" not in rows[0]  # re-ranked by the final reward


@pytest.mark.parametrize("top_k", ["missing", None, []])
def test_no_finalists_section_without_top_k(top_k):
    results = _search_results()
    if top_k != "missing":
        results["top_k"] = top_k  # the search verb writes "top_k": null when search.top_k is not set
    html = render_report(results)
    assert _section(html, "finalists") is None and "Finalists" not in html


# 5. predicted latency -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("round_trip", [False, True])
@pytest.mark.parametrize("where", ["budget", "config"])
def test_predicted_latency_is_said_and_checked_against_the_measured(round_trip, where):
    results = _search_results()
    if where == "budget":
        results["budget"]["latency_source"] = "predicted"
    else:
        results["config"] = {"budget": {"latency_source": "predicted", "latency_runtime": "onnxruntime"}}
    results["search"]["pareto"] = {"cost": "latency_ms", "trials": [1, 0], "measured_ms": {1: 0.4, 0: 0.5}}
    if round_trip:
        results = json.loads(json.dumps(results))
        assert set(results["search"]["pareto"]["measured_ms"]) == {"0", "1"}
    html = render_report(results)
    budget = _section(html, "budget")
    assert "<strong>predicted</strong>" in budget and "Latency is measured" not in budget
    assert ">latency (predicted)</th>" in _section(html, "trials-table")
    rows = _rows(budget[budget.index("re-measured"):])
    assert len(rows) == 2
    assert all(s in rows[0] for s in (">1<", "0.34 ms", "0.4 ms", "−15 %", "within"))
    assert all(s in rows[1] for s in (">0<", "0.695 ms", "0.5 ms", "+39 %", "within"))


def test_predicted_latency_without_a_budget_block():
    results = _search_results()
    del results["budget"]
    results["config"] = {"budget": {"latency_source": "predicted"}}
    results["search"]["pareto"] = {"cost": "latency_ms", "trials": [0], "measured_ms": {"0": 0.5}}
    budget = _section(render_report(results), "budget")
    assert "<strong>predicted</strong>" in budget and "+39 %" in budget and "No constraints" not in budget


def test_measured_latency_over_budget_is_flagged():
    results = _search_results()
    results["budget"]["latency_source"] = "predicted"
    results["search"]["pareto"] = {"cost": "latency_ms", "trials": [0], "measured_ms": {"0": 0.8}}
    rows = _rows(_section(render_report(results), "budget").split("re-measured")[1])
    assert len(rows) == 1 and "−13 %" in rows[0] and ">over</span>" in rows[0]


def test_measured_latency_search_says_measured():
    budget = _section(render_report(_search_results()), "budget")
    assert "Latency is measured with <code>onnxruntime</code>" in budget and "predicted" not in budget


# 6. every trial, numbered as in the study -----------------------------------------------------------------------------
def test_every_trial_is_listed_under_its_own_number_with_its_reason():
    reasons = {3: "params 60,000 > max_params 50,000", 7: "latency_ms 0.9 > max_latency_ms 0.6"}
    trials = [{"number": n, "state": "COMPLETE", "params": 10_000 + n, "val_acc": 0.7 + n / 100, "reward": 0.7 + n / 100}
              for n in (9, 0, 4)]  # a shared study: numbers with gaps, rows in the order workers saw them
    trials += [{"number": n, "state": "INFEASIBLE", "params": 60_000, "val_acc": None, "reward": 0.0,
                "reason": reason} for n, reason in reasons.items()]
    body = _section(render_report({"name": "t", "trials": trials}), "trials-table")
    rows = {int(re.match(r'<td class="num" data-v="(\d+)"', r).group(1)): r for r in _rows(body)}
    assert sorted(rows) == [0, 3, 4, 7, 9]
    for n, row in rows.items():
        assert re.match(rf'<td class="num" data-v="{n}" data-n="1">{n}[ <]', row)
    for n, reason in reasons.items():
        assert ">INFEASIBLE</span>" in rows[n] and reason.replace(">", "&gt;") in rows[n]
        assert "r 0.000" not in rows[n]  # the 0 the study was told is not the trial's score
    assert "r 0.790" in rows[9]
