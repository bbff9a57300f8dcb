"""The command line: one-line user errors with a non-zero exit, and the whole demo slice end to end."""
import json
import subprocess
import sys

import pytest
import torch

from archkd.cli import main


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def assert_one_line_error(code, err, text):
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("archkd: error:") and text in lines[0], err
    assert "Traceback" not in err


def test_missing_data_path(tmp_path, capsys, teacher_ckpt):
    code, _, err = run_cli(["distill", "--teacher", teacher_ckpt, "--data", str(tmp_path / "none"),
                            "--runs-dir", str(tmp_path)], capsys)
    assert_one_line_error(code, err, "data path not found")


def test_unsupported_format(tmp_path, capsys, teacher_ckpt):
    f = tmp_path / "data.csv"
    f.write_text("a,b")
    code, _, err = run_cli(["distill", "--teacher", teacher_ckpt, "--data", str(f), "--runs-dir", str(tmp_path)],
                           capsys)
    assert_one_line_error(code, err, "unsupported data format")


def test_unloadable_teacher(tmp_path, capsys):
    f = tmp_path / "t.pt"
    f.write_bytes(b"garbage")
    code, _, err = run_cli(["distill", "--teacher", str(f), "--runs-dir", str(tmp_path)], capsys)
    assert_one_line_error(code, err, "cannot load teacher")


def test_class_count_and_shape_mismatch(tmp_path, capsys):
    from archkd.models import create_model

    m = create_model("resnet8", num_classes=5, in_channels=1).eval()
    p = tmp_path / "five.pt"
    torch.jit.trace(m, torch.zeros(1, 1, 8, 8)).save(str(p))
    code, _, err = run_cli(["distill", "--teacher", str(p), "--runs-dir", str(tmp_path)], capsys)
    assert_one_line_error(code, err, "teacher predicts 5 classes but the data has 10")
    m3 = create_model("resnet8", num_classes=10, in_channels=3).eval()
    p3 = tmp_path / "rgb.pt"
    torch.jit.trace(m3, torch.zeros(1, 3, 32, 32)).save(str(p3))
    code, _, err = run_cli(["distill", "--teacher", str(p3), "--runs-dir", str(tmp_path)], capsys)
    assert_one_line_error(code, err, "teacher cannot run on the data's 1×8×8 inputs")


def test_impossible_budget(tmp_path, capsys, teacher_ckpt):
    code, _, err = run_cli(["search", "--teacher", teacher_ckpt, "--max-params", "50", "--runs-dir", str(tmp_path)],
                           capsys)
    assert_one_line_error(code, err, "no architecture in space 'stages' can meet the budget")


def test_unknown_config_key(tmp_path, capsys):
    code, _, err = run_cli(["demo", "--runs-dir", str(tmp_path), "serach.n_trials=3"], capsys)
    assert_one_line_error(code, err, "did you mean 'search.n_trials'?")


def test_config_and_measure_verbs(capsys):
    code, out, _ = run_cli(["config", "--keys"], capsys)
    assert code == 0 and "budget.max_latency_ms" in out
    code, out, _ = run_cli(["measure", "resnet8", "--input-shape", "1,8,8", "--repeats", "3", "--json"], capsys)
    r = json.loads(out)
    assert code == 0 and r["params"] > 70_000 and set(r["latency"]) == {"torch", "onnxruntime"}


def test_demo_end_to_end(tmp_path):
    """The demo verb in a subprocess, as a user runs it, on a tiny recipe."""
    cmd = [sys.executable, "-m", "archkd", "demo", "--runs-dir", str(tmp_path), "--name", "d",
           "teacher.arch=resnet8", "teacher.train.epochs=3", "search.n_trials=3", "search.epochs=1",
           "train.epochs=2", f"cache_dir={tmp_path / 'cache'}"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    run = tmp_path / "d"
    res = json.loads((run / "results.json").read_text())
    assert sum(t["state"] == "COMPLETE" for t in res["trials"]) == 3
    assert all(t["params"] <= 30_000 for t in res["trials"] if t["state"] == "COMPLETE")
    assert res["final"]["test_acc"] is not None and max(res["export"]["max_abs_diff"].values()) <= 1e-4
    html = (run / "report.html").read_text()
    assert "data:image/png;base64," in html and "<script src" not in html
    for f in ("config.yaml", "study.db", "export/student.onnx", "export/student.torchscript.pt", "export/student.json"):
        assert (run / f).exists(), f
    import onnxruntime as ort
    import numpy as np

    sess = ort.InferenceSession(str(run / "export" / "student.onnx"))
    out = sess.run(None, {"input": np.zeros((2, 1, 8, 8), np.float32)})[0]
    assert out.shape == (2, 10)
