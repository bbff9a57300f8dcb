"""Tests for archkd.report: results.json writing and the self-contained HTML report."""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from archkd import report
from archkd.report import register_section, render_report, unregister_section, write_report, write_results


def full_results(tmp_path: Path | None = None) -> dict:
    states = ["COMPLETE", "COMPLETE", "PRUNED", "COMPLETE", "INFEASIBLE", "FAIL", "COMPLETE", "INFEASIBLE"]
    trials = []
    for i, state in enumerate(states):
        t = {
            "number": i,
            "state": state,
            "config": {"depths": [1, 1 + i % 3, 2], "widths": [8 * (1 + i % 2), 16, 32], "kernel": 3},
            "params": 8000 + 6000 * i,
            "flops": 400_000 + 250_000 * i,
            "latency_ms": 0.2 + 0.05 * i,
            "val_acc": 0.85 + 0.015 * i,
            "reason": None,
            "seconds": 3.0 + i,
        }
        if state == "INFEASIBLE":
            t.update(val_acc=None, latency_ms=None, reason="params 60,000 > max_params 50,000", params=52000 + i * 1000)
        if state == "FAIL":
            t.update(params=None, flops=None, val_acc=None, reason="RuntimeError: CUDA out of memory")
        if state == "PRUNED":
            t["val_acc"] = 0.62
        trials.append(t)
    return {
        "name": "demo <run> & co",
        "created": "2026-11-23T12:00:00",
        "command": "archkd demo --budget 'params<=50k'",
        "config": {"seed": 0, "search": {"n_trials": 8, "sampler": "random"}, "distill": {"alpha": 0.5, "T": 4.0}},
        "dataset": {"name": "digits", "num_classes": 10, "input_shape": [1, 8, 8], "train": 1200, "val": 237,
                    "test": 360},
        "teacher": {"name": "resnet20", "params": 272474, "val_acc": 0.97, "test_acc": 0.96},
        "budget": {"max_params": 50000, "max_flops": None, "max_latency_ms": 1.0, "latency_runtime": "onnxruntime"},
        "search": {"space": "stages", "sampler": "random", "n_trials": 8,
                   "fidelity": {"epochs": 3, "data_fraction": 1.0}, "storage": "sqlite:///runs/demo/study.db",
                   "best_trial": 3},
        "trials": trials,
        "final": {
            "spec": {"stem": 16, "depths": [1, 2, 2], "widths": [16, 32, 48], "kernel": 3, "head": "gap"},
            "params": 26000, "flops": 1_234_567, "macs": 617_283,
            "latency": {"onnxruntime": {"median_ms": 0.21, "iqr_ms": 0.01},
                        "torch": {"median_ms": 0.45, "iqr_ms": 0.03}},
            "val_acc": 0.9536, "test_acc": 0.9472, "epochs": 20,
            "history": [{"epoch": e, "train_loss": 2.0 / e, "val_loss": 2.2 / e, "val_acc": 0.7 + 0.0125 * e}
                        for e in range(1, 21)],
        },
        "export": {"onnx": "runs/demo/student.onnx", "torchscript": "runs/demo/student.pt",
                   "max_abs_diff": {"onnx": 1.2e-6, "torchscript": 0.0}},
        "timings": {"teacher_s": 10.0, "search_s": 60.0, "final_s": 30.0, "total_s": 110.0},
        "curves": {"title": "pathway weights", "x": list(range(10)),
                   "series": {"kd": [0.5 - 0.02 * i for i in range(10)], "ce": [0.5 + 0.02 * i for i in range(10)]}},
    }


def test_full_report_is_self_contained_and_complete(tmp_path):
    results = full_results()
    path = write_report(tmp_path / "run", results)
    assert path == tmp_path / "run" / "report.html"
    html = path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert '<img class="plot"' in html and 'src="data:image/png;base64,' in html
    assert html.count("data:image/png;base64,") == 4  # history, best so far, accuracy-vs-params, curves
    # nothing external
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"<script[^>]*\bsrc=", html, re.I)
    assert not re.search(r"<link\b", html, re.I)
    assert not re.search(r"""\b(?:src|href)=["'](?!data:|#)""", html, re.I)
    # every trial number appears in the table's first column
    for t in results["trials"]:
        assert re.search(rf'<tr( class="best")?><td class="num" data-v="{t["number"]}" data-n="1">{t["number"]}[ <]',
                         html), t["number"]
    assert "94.72%" in html  # final test accuracy
    assert 'class="best"' in html and "★ best" in html
    # user strings escaped
    assert "demo &lt;run&gt; &amp; co" in html and "<run>" not in html
    # all built-in sections rendered, in order
    order = [html.index(f'id="section-{s}"') for s in
             ("summary", "final-student", "trials-table", "accuracy-vs-params-plot", "budget", "timings", "curves")]
    assert order == sorted(order)
    assert '<div class="error">' not in html


def test_minimal_results_render(tmp_path):
    html = write_report(tmp_path, {"name": "x"}).read_text()
    assert "<h1>x</h1>" in html
    assert "no results to show" in html
    assert "data:image/png" not in html


def test_partial_and_odd_data_does_not_break(tmp_path):
    results = {
        "name": "partial",
        "trials": [{"number": 0, "state": "FAIL"}, {"state": "weird", "params": "n/a"}, "not a dict"],
        "final": {"test_acc": float("nan"), "history": []},
        "budget": {},
        "timings": {"search_s": None},
        "curves": {"series": {"a": [None, None]}},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no section may fail (a failure is reported as a warning)
        html = render_report(results)
    assert '<div class="error">' not in html
    assert "Search trials" in html


def test_results_json_round_trip(tmp_path):
    results = {
        "name": "rt",
        "path": tmp_path / "a" / "b.onnx",
        "np_float": np.float32(0.5),
        "np_int": np.int64(7),
        "np_bool": np.bool_(True),
        "np_array": np.arange(3),
        "torch_scalar": torch.tensor(1.25),
        "torch_int": torch.tensor(3),
        "torch_vec": torch.tensor([1.0, 2.0]),
        "nan": float("nan"),
        "np_nan": np.float64("nan"),
        "inf": float("inf"),
        "nested": {"t": (1, 2), 3: [np.float16(1.5), None]},
    }
    path = write_results(tmp_path / "run", results)
    assert path == tmp_path / "run" / "results.json"
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert text.startswith('{\n  "name": "rt"')  # indent=2
    data = json.loads(text)
    assert data == {
        "name": "rt",
        "path": str(tmp_path / "a" / "b.onnx"),
        "np_float": 0.5,
        "np_int": 7,
        "np_bool": True,
        "np_array": [0, 1, 2],
        "torch_scalar": 1.25,
        "torch_int": 3,
        "torch_vec": [1.0, 2.0],
        "nan": None,
        "np_nan": None,
        "inf": None,
        "nested": {"t": [1, 2], "3": [1.5, None]},
    }
    assert type(data["np_int"]) is int and type(data["np_bool"]) is bool
    # no temp files left behind; overwriting works
    write_results(tmp_path / "run", {"name": "again"})
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["results.json"]
    assert json.loads(path.read_text()) == {"name": "again"}


def test_full_results_round_trip(tmp_path):
    results = full_results()
    path = write_results(tmp_path, results)
    assert json.loads(path.read_text()) == results


def test_name_is_required(tmp_path):
    with pytest.raises(ValueError):
        write_results(tmp_path, {"trials": []})
    with pytest.raises(ValueError):
        write_report(tmp_path, {})
    with pytest.raises(TypeError):
        write_report(tmp_path, ["name"])  # type: ignore[arg-type]


def test_registered_custom_section_appears(tmp_path):
    @register_section("pathway weights", title="DistPro pathways")
    def _pathways(results):
        if "pathways" not in results:
            return None
        return "<p>pathways: " + ", ".join(results["pathways"]) + "</p>"

    try:
        assert report.section_names()[-1] == "pathway weights"
        html = write_report(tmp_path, {"name": "x", "pathways": ["kd", "feat"]}).read_text()
        assert '<section id="section-pathway-weights">' in html
        assert "<h2>DistPro pathways</h2>" in html and "<p>pathways: kd, feat</p>" in html
        assert 'href="#section-pathway-weights"' in html
        # not applicable -> left out
        assert "DistPro pathways" not in render_report({"name": "y"})
        # re-registering replaces in place; `before` positions a new section
        register_section("pathway weights", title="Pathways v2")(lambda r: "<p>v2</p>")
        register_section("early", before="summary")(lambda r: "<p>first</p>")
        names = report.section_names()
        assert names[0] == "early" and names.count("pathway weights") == 1
        html = render_report({"name": "z"})
        assert "Pathways v2" in html and html.index("<p>first</p>") < html.index("<p>v2</p>")
    finally:
        unregister_section("pathway weights")
        unregister_section("early")
    assert "pathway weights" not in report.section_names()


def test_failing_section_does_not_break_report():
    @register_section("broken")
    def _broken(results):
        raise KeyError("boom")

    try:
        with pytest.warns(RuntimeWarning, match="broken"):
            html = render_report(full_results())
        assert '<div class="error">' in html and "KeyError" in html
        assert "94.72%" in html
    finally:
        unregister_section("broken")


def test_builtin_sections_in_order():
    assert report.section_names()[:16] == [
        "summary", "teacher vs student", "generic teacher pool", "final student", "finalists", "family", "fidelity check",
        "pareto front", "parameter importances", "trials table", "search progress", "accuracy-vs-params plot", "budget", "timings", "epoch curves", "curves",
    ]


def test_best_trial_falls_back_to_highest_val_acc():
    results = full_results()
    del results["search"]["best_trial"]
    html = render_report(results)
    # trial 6 has the highest val_acc among COMPLETE trials
    assert '<tr class="best"><td class="num" data-v="6" data-n="1">6 ' in html


def test_matplotlib_backend_untouched():
    import matplotlib

    before = matplotlib.get_backend()
    render_report(full_results())
    assert matplotlib.get_backend() == before
