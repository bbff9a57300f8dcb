"""The command line: verbs that print, and the whole demo slice end to end (bad input: test_bad_input.py)."""
import json
import subprocess
import sys

import pytest

from archkd.cli import main


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_config_and_measure_verbs(capsys):
    code, out, _ = run_cli(["config", "--keys"], capsys)
    assert code == 0 and "budget.max_latency_ms" in out
    lines = {ln.split()[0]: ln for ln in out.splitlines()}
    assert "sgd | adamw  (default sgd)" in lines["train.optimizer"]  # closed choices spelled out
    assert "random" in lines["search.method"] and "trade" in lines["search.method"]  # registry-backed choices
    assert "float | null  (default null)" in lines["budget.max_latency_ms"]
    assert "— training images that re-estimate BatchNorm" in lines["train.bn_recalibration"]  # the field's comment
    assert len(lines) > 100
    assert not [k for k, ln in lines.items() if "—" not in ln]  # every key has a line of help
    code, out, _ = run_cli(["measure", "resnet8", "--input-shape", "1,8,8", "--repeats", "3", "--json"], capsys)
    r = json.loads(out)
    assert code == 0 and r["params"] > 70_000 and set(r["latency"]) == {"torch", "onnxruntime"}


def test_overrides_may_sit_between_flags(capsys):
    """`--seed 2 train.epochs=3 --name x data.val_fraction=0.2` keeps both overrides (argparse alone rejects the
    second); a stray word or unknown flag is still an error."""
    import yaml

    code, out, _ = run_cli(["config", "--seed", "2", "train.epochs=3", "--name", "x", "data.val_fraction=0.2"], capsys)
    cfg = yaml.safe_load(out)
    assert code == 0 and cfg["seed"] == 2 and cfg["name"] == "x"
    assert cfg["train"]["epochs"] == 3 and cfg["data"]["val_fraction"] == 0.2
    for bad in (["--bogus", "1"], ["train.epochs=3", "--name", "x", "stray"]):
        code, _, err = run_cli(["config", "--seed", "2", *bad], capsys)
        assert code == 2 and "unrecognized arguments" in err


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
    c = res["comparison"]  # the exported student beside its teacher: speed-up and accuracy gap, in the report too
    assert c["student"]["test_acc"] == res["final"]["test_acc"] and c["speedup"] > 0
    assert "Teacher, student and baseline" in html
    for f in ("config.yaml", "study.db", "export/student.onnx", "export/student.torchscript.pt", "export/student.json"):
        assert (run / f).exists(), f
    import onnxruntime as ort
    import numpy as np

    sess = ort.InferenceSession(str(run / "export" / "student.onnx"))
    out = sess.run(None, {"input": np.zeros((2, 1, 8, 8), np.float32)})[0]
    assert out.shape == (2, 10)


def test_every_option_of_every_verb_has_help_text():
    """``archkd <verb> --help`` explains every option: none is listed bare."""
    import argparse

    from archkd.cli import build_parser

    bare = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    walk(sub, path + [name])
            elif not (a.help and a.help.strip()) and "--help" not in a.option_strings:
                bare.append(f"archkd {' '.join(path)} {a.option_strings[-1] if a.option_strings else a.dest}")

    walk(build_parser(), [])
    assert not bare, f"options without help: {bare}"
