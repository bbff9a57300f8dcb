"""One model trained over 2 processes with torch.distributed (gloo on CPU), launched by torchrun."""
import os
import subprocess
import sys

import pytest

from archkd.distill import read_metrics


def _distill(tmp_path, teacher, name, nproc):
    args = ["distill", "--teacher", teacher, "--student", "resnet8", "--epochs", "3", "--name", name,
            "--runs-dir", str(tmp_path / "runs"), "threads=1", f"cache_dir={tmp_path / 'cache'}",
            "train.batch_size=64"]
    launch = [sys.executable, "-m", "archkd"] if nproc == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "archkd"]
    r = subprocess.run(launch + args, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r.stdout, tmp_path / "runs" / name


def test_two_processes_match_one_with_the_same_global_batch(tmp_path, teacher_ckpt):
    _, one = _distill(tmp_path, teacher_ckpt, "one", 1)
    out, two = _distill(tmp_path, teacher_ckpt, "two", 2)
    a, b = read_metrics(one / "metrics.csv"), read_metrics(two / "metrics.csv")
    assert [r["epoch"] for r in b] == [1, 2, 3]  # one row per epoch: rank 1 wrote none
    # same global batches and gradient; BatchNorm normalises each 32-image shard on its own, hence a tolerance:
    for ra, rb in zip(a, b):
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=0.05)
        assert rb["lr"] == ra["lr"]
    assert abs(a[-1]["val_acc"] - b[-1]["val_acc"]) <= 0.05
    log = (two / "log.txt").read_text().splitlines()
    messages = [ln.split(" ", 2)[2] for ln in log]
    assert len(messages) == len(set(messages))  # nothing logged twice
    assert out.count("distilled student") == 1  # one summary printed
    assert sorted(p.name for p in (two / "student").iterdir()) == ["best.pt", "last.pt"]
