"""The student beside its teacher and a hand-designed baseline (issue #28): speed-up, accuracy gap, search gain."""
from __future__ import annotations

import json

import pytest
from conftest import small_config

from archkd import api
from archkd.errors import ArchkdError
from archkd.search.importance import param_importances


def test_a_search_compares_its_student_with_the_teacher_and_a_baseline(tmp_path, teacher_ckpt):
    cfg = small_config(tmp_path, **{"teacher.path": teacher_ckpt, "search.top_k": 1, "search.check_fidelity": 0,
                                    "search.baseline": "resnet8", "budget.max_params": 100_000})
    r = api.search(cfg, log=None)
    c = r["comparison"]
    assert c["runtime"] == cfg.budget.latency_runtime
    assert c["baseline"]["name"] == "resnet8" and c["baseline"]["params"] <= 100_000
    assert (cfg.run_dir / "baseline" / "best.pt").is_file()  # distilled with the full recipe beside the finalists
    t, s, b = c["teacher"], c["student"], c["baseline"]
    assert all(side["latency_ms"] > 0 for side in (t, s, b))
    assert c["speedup"] == pytest.approx(t["latency_ms"] / s["latency_ms"])
    assert c["gap"] == pytest.approx(t["test_acc"] - s["test_acc"])
    assert c["search_gain"] == pytest.approx(s["test_acc"] - b["test_acc"])
    assert s["test_acc"] == r["top_k"][0]["test_acc"] and c["params_ratio"] == pytest.approx(t["params"] / s["params"])
    saved = json.loads((cfg.run_dir / "results.json").read_text())
    assert saved["comparison"] == json.loads(json.dumps(c)) and saved["teacher"]["test_acc"] == t["test_acc"]
    report = (cfg.run_dir / "report.html").read_text()
    assert "Teacher, student and baseline" in report and "hand-designed baseline" in report
    assert f"{c['speedup']:.1f}×" in report
    # the same search rates which parameters mattered (Optuna's fANOVA over the trained students), deterministically
    imp = r["importances"]
    assert imp and set(imp) <= set(r["best"]["config"]) and sum(imp.values()) == pytest.approx(1.0)
    assert list(imp.values()) == sorted(imp.values(), reverse=True)
    assert param_importances(r["storage"], r["study_name"], cfg.seed) == imp
    assert saved["search"]["importances"] == pytest.approx(imp)
    assert "What mattered: parameter importances" in report


def test_a_baseline_is_refused_before_any_training_when_it_cannot_be_compared(tmp_path, teacher_ckpt):
    over = small_config(tmp_path, **{"teacher.path": teacher_ckpt, "search.top_k": 1, "search.baseline": "resnet20",
                                     "budget.max_params": 30_000})
    with pytest.raises(ArchkdError, match=r"search.baseline=resnet20 is over the budget \(params .* > 30,000\)"):
        api.search(over, log=None)
    assert not (over.run_dir / "trials").exists()
    alone = small_config(tmp_path, name="alone", **{"teacher.path": teacher_ckpt, "search.baseline": "resnet8"})
    with pytest.raises(ArchkdError, match="search.top_k is 0") as e:
        api.search(alone, log=None)
    assert "--top-k 1" in e.value.fix


def test_distill_reports_the_student_against_its_teacher(tmp_path, teacher_ckpt):
    cfg = small_config(tmp_path, **{"teacher.path": teacher_ckpt, "student.arch": "resnet8", "train.epochs": 1})
    r = api.distill(cfg, log=None, write=True)
    c = json.loads((cfg.run_dir / "results.json").read_text())["comparison"]
    assert c["student"]["test_acc"] == r["test_acc"] and c["teacher"]["test_acc"] == r["teacher_test_acc"]
    assert c["speedup"] > 0 and "baseline" not in c
    assert "Teacher, student and baseline" in (cfg.run_dir / "report.html").read_text()
