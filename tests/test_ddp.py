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


def test_rank0_stopping_a_run_stops_every_process():
    """A pruner's verdict (or a lost trial) reaches rank 0 only; the other processes must stop at the same epoch
    instead of waiting in the next all-reduce."""
    script = os.path.join(os.path.dirname(__file__), "ddp_stop_script.py")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", script],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "rank 0/2: pruned" in r.stdout and "rank 1/2: stopped" in r.stdout


def test_a_search_whose_trials_run_on_two_processes(tmp_path, teacher_ckpt):
    """torchrun + archkd search: rank 0 asks the study and announces each candidate, both processes train it, and
    the top-1 finalist too; one study, one row per epoch per run, one results.json."""
    args = ["search", "--teacher", teacher_ckpt, "--name", "s", "--runs-dir", str(tmp_path / "runs"), "--n-trials", "2",
            "--trial-epochs", "2", "--top-k", "1", "--epochs", "2", "--max-params", "30000", "threads=1",
            f"cache_dir={tmp_path / 'cache'}", "train.batch_size=64",
            "search.space_kwargs={widths: [8, 16], depths: [1, 2]}"]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
                        "archkd"] + args, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    run = tmp_path / "runs" / "s"
    rows = read_metrics(run / "metrics.csv")
    results = __import__("json").loads((run / "results.json").read_text())
    trials = [t for t in results["trials"] if t["state"] == "COMPLETE"]
    assert len(trials) == 2 and len(results["top_k"]) == 1
    runs = {}
    for row in rows:
        runs.setdefault(row["run"], []).append(row["epoch"])
    # the fidelity check (on by default with --top-k) re-trains the other trial with the full recipe, on both ranks
    other = next(t["number"] for t in trials if t["number"] != results["top_k"][0]["trial"])
    assert runs == {f"trial {trials[0]['number']}": [1, 2], f"trial {trials[1]['number']}": [1, 2],
                    f"final/01_trial{results['top_k'][0]['trial']:04d}": [1, 2],
                    f"fidelity/01_trial{other:04d}": [1, 2]}
    assert results["search"]["fidelity_check"]["n"] == 2
    assert r.stdout.count("best trial #") == 1
