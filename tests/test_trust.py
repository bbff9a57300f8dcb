"""Trust (issue 10, first items): safe loading of CIFAR pickles, run names that stay inside the runs directory, and
`archkd export <checkpoint>` as the README writes it."""
import os
import pickle

import numpy as np
import pytest

from archkd.cli import main
from archkd.data.sources import load_cifar_python
from archkd.errors import ArchkdError


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_pickles_cannot_run_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "pwned"
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1], "x": _Evil(marker)}, f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}, f)
    with pytest.raises(ArchkdError, match="refusing to load .*posix.system|refusing to load .*os.system"):
        load_cifar_python(folder)
    assert not marker.exists()  # the payload never ran


def _one_line_exit_2(capsys, args, text):
    with pytest.raises(SystemExit) as e:
        main(args)
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert e.value.code == 2 and len(err) == 1 and text in err[0], err


@pytest.mark.parametrize("name", ["../escape", "/tmp/abs", "a/b", ".."])
def test_run_name_is_one_folder(tmp_path, capsys, name):
    _one_line_exit_2(capsys, ["config", "--runs-dir", str(tmp_path), "--name", name], "is not a single folder name")
    assert not (tmp_path.parent / "escape").exists()


def test_export_takes_the_checkpoint_as_a_positional_path(tmp_path, capsys, teacher_ckpt):
    out = tmp_path / "exported"
    with pytest.raises(SystemExit) as e:
        main(["export", teacher_ckpt, "--runs-dir", str(tmp_path), "--out", str(out)])
    assert e.value.code == 0, capsys.readouterr().err
    assert {p.suffix for p in out.iterdir()} >= {".onnx", ".json"}


def _npz(tmp_path, **arrays):
    p = tmp_path / "d.npz"
    np.savez(p, **arrays)
    return p


@pytest.mark.parametrize("case, arrays, text", [
    ("nan", lambda x, y: {"x": np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x), "y": y}, "NaN or infinite"),
    ("short labels", lambda x, y: {"x": x, "y": y[:-3]}, "labels for 40 images"),
    ("negative label", lambda x, y: {"x": x, "y": np.where(np.arange(40) == 2, -1, y)}, "negative label -1"),
    ("fractional", lambda x, y: {"x": x, "y": y + 0.5}, "non-integer labels"),
    ("beyond classes", lambda x, y: {"x": x, "y": np.where(np.arange(40) == 0, 7, y),
                                     "classes": np.array(["a", "b"])}, "names only 2"),
])
def test_npz_problems_are_one_line_errors(tmp_path, capsys, case, arrays, text):
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 8, 8)), rng.integers(0, 2, 40)
    p = _npz(tmp_path, **arrays(x, y))
    _one_line_exit_2(capsys, ["teacher", "train", "--data", str(p), "--runs-dir", str(tmp_path), "--name", "n"], text)


@pytest.mark.parametrize("override, text", [
    ("train.batch_size=0", "'train.batch_size' is 0"), ("train.epochs=0", "'train.epochs' is 0"),
    ("train.lr=-1", "'train.lr' is -1"), ("search.top_k=-1", "'search.top_k' is -1"),
    ("budget.max_params=-5", "'budget.max_params' is -5"), ("budget.max_latency_ms=-2", "'budget.max_latency_ms'"),
    ("train.data_fraction=1.5", "a fraction is at most 1"), ("search.n_trials=0", "'search.n_trials' is 0"),
])
def test_out_of_range_numbers_are_refused_when_the_config_loads(tmp_path, capsys, override, text):
    """Before any data is read: a clamped batch size or an epoch count of 0 used to surface later, or never."""
    _one_line_exit_2(capsys, ["config", "--runs-dir", str(tmp_path), override], text)


def test_rerunning_a_killed_distill_resumes_and_a_finished_one_is_kept(tmp_path, teacher_ckpt):
    import subprocess
    import sys

    import torch

    from conftest import kill_after_checkpoint

    def args(name):
        return [sys.executable, "-m", "archkd", "distill", "--teacher", teacher_ckpt, "--student", "resnet8",
                "--epochs", "4", "--name", name, "--runs-dir", str(tmp_path), "threads=1",
                f"cache_dir={tmp_path / 'cache'}"]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = subprocess.run(args("ref"), capture_output=True, text=True, env=env, timeout=300)
    assert ref.returncode == 0, ref.stderr[-2000:]
    last = tmp_path / "killed" / "student" / "last.pt"
    epoch = kill_after_checkpoint(args("killed"), last, env)
    again = subprocess.run(args("killed"), capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and f"resumed from {last} at epoch {epoch + 2}" in again.stdout
    a = torch.load(tmp_path / "ref" / "student" / "last.pt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert a["val_acc"] == b["val_acc"] and all(torch.equal(a["state_dict"][k], b["state_dict"][k])
                                                for k in a["state_dict"])
    mtime = last.stat().st_mtime
    done = subprocess.run(args("killed"), capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and "already finished" in done.stdout and last.stat().st_mtime == mtime


def test_every_training_verb_writes_results_and_report(tmp_path, capsys, teacher_ckpt):
    import json

    for args, key in ((["teacher", "train", "--epochs", "1"], "teacher"),
                      (["distill", "--teacher", teacher_ckpt, "--epochs", "1"], "final")):
        name = args[0]
        with pytest.raises(SystemExit) as e:
            main(args + ["--runs-dir", str(tmp_path), "--name", name, "threads=1"])
        assert e.value.code == 0, capsys.readouterr().err
        capsys.readouterr()
        results = json.loads((tmp_path / name / "results.json").read_text())
        assert results["command"].startswith("archkd ") and results[key]["val_acc"] > 0
        assert [r["epoch"] for r in results["metrics"]] == [1]
        assert (tmp_path / name / "report.html").stat().st_size > 1000
