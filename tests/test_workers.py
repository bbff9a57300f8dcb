"""Many workers on one study, and searches killed with SIGKILL: real processes, real storages.

Each worker is a separate ``archkd search`` process. PostgreSQL runs as a real server on loopback, started here from
the Debian packages that ``.ci/run`` installs (skipped outside CI when they are absent; under CI its absence fails).
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import torch

from archkd.search import open_storage
from conftest import kill_after_checkpoint

WORKER = [sys.executable, "-c", "from archkd.cli import main; main()"]


def _search_args(tmp_path: Path, teacher: str, name: str, storage: str, n_trials: int, epochs: int = 1,
                 study: str = "shared", widths: str = "[8,16]") -> list[str]:
    return ["search", "--teacher", teacher, "--name", name, "--runs-dir", str(tmp_path / "runs"),
            "--storage", storage, "--study", study, "--n-trials", str(n_trials), "--trial-epochs", str(epochs),
            "--max-params", "30000", "threads=1", f"cache_dir={tmp_path / 'cache'}",
            f"search.space_kwargs={{widths: {widths}, depths: [1, 2]}}", "search.stale_after_seconds=30",
            "search.heartbeat_seconds=2"]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _run_workers(tmp_path: Path, teacher: str, storage: str, n_trials: int = 6) -> list[subprocess.CompletedProcess]:
    procs = [subprocess.Popen(WORKER + _search_args(tmp_path, teacher, f"w{i}", storage, n_trials),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
             for i in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    return [json.loads((tmp_path / "runs" / f"w{i}" / "results.json").read_text()) for i in range(2)]


def _check_shared_study(storage: str, results: list[dict], n_trials: int) -> None:
    study = optuna.load_study(study_name="shared", storage=open_storage(storage))
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == n_trials  # the requested total, not n_trials per worker
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    workers = {t.user_attrs["archkd_lease"]["pid"] for t in done}
    assert len(workers) == 2  # both worked on it
    configs = [json.dumps(t.params, sort_keys=True) for t in done]
    evaluated = [t for t in done if "duplicate_of" not in t.user_attrs]
    assert len({json.dumps(t.params, sort_keys=True) for t in evaluated}) == len(evaluated)  # none trained twice
    assert len(configs) == n_trials
    for r in results:  # every trial visible to both workers at the end
        assert sorted(t["number"] for t in r["trials"] if t["state"] == "COMPLETE") == sorted(t.number for t in done)


def test_two_workers_share_a_journal_file_study(tmp_path, teacher_ckpt):
    storage = f"journal:{tmp_path / 'study.log'}"
    results = _run_workers(tmp_path, teacher_ckpt, storage)
    _check_shared_study(storage, results, 6)


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="module")
def postgres_url():
    """A throw-away PostgreSQL server on 127.0.0.1 (as the ``postgres`` user when the tests run as root)."""
    bindir = _pg_bin()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed: .ci/run installs the Debian package 'postgresql'")
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    pytest.importorskip("psycopg")
    root = Path(tempfile.mkdtemp(prefix="archkd-pg-"))
    os.chmod(root, 0o777)
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    subprocess.run(as_user + [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
                              f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        subprocess.run(as_user + [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                                  "archkd"], check=True, capture_output=True)
        yield f"postgresql://postgres@127.0.0.1:{port}/archkd"
    finally:
        subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_share_a_postgresql_study(tmp_path, teacher_ckpt, postgres_url):
    results = _run_workers(tmp_path, teacher_ckpt, postgres_url)
    _check_shared_study(postgres_url, results, 6)


def _study_rows(storage: str) -> list[tuple]:
    study = optuna.load_study(study_name="shared", storage=open_storage(storage))
    done = sorted((t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE),
                  key=lambda t: t.number)
    return [(json.dumps(t.params, sort_keys=True), t.user_attrs["val_acc"], t.value) for t in done]


def _epochs_saved(run: Path) -> set[tuple[str, int]]:
    out = set()
    for p in run.glob("trials/*/last.pt"):
        try:
            out.add((p.parent.name, int(torch.load(p, weights_only=True)["epoch"])))
        except Exception:  # noqa: BLE001 - a file being replaced right now is read on the next poll
            pass
    return out


def test_sigkilled_search_resumes_to_the_uninterrupted_result(tmp_path, teacher_ckpt):
    n, epochs = 4, 4
    ref_storage = f"sqlite:///{tmp_path / 'ref.db'}"
    ref = subprocess.run(WORKER + _search_args(tmp_path, teacher_ckpt, "ref", ref_storage, n, epochs, widths="[16,24]"),
                         capture_output=True, text=True, env=_env(), timeout=300)
    assert ref.returncode == 0, ref.stdout[-2000:] + ref.stderr[-2000:]
    storage = f"sqlite:///{tmp_path / 'killed.db'}"
    args = WORKER + _search_args(tmp_path, teacher_ckpt, "killed", storage, n, epochs, widths="[16,24]")
    run = tmp_path / "runs" / "killed"
    kills, seen, killed = 0, set(), set()  # three kills, each in another trial
    while kills < 3:
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
        deadline = time.time() + 120
        while p.poll() is None and time.time() < deadline:
            fresh = {(slot, e) for slot, e in _epochs_saved(run) - seen if e < epochs - 1 and slot not in killed}
            if fresh:  # an epoch checkpoint of an unfinished trial was just written: training is under way
                p.send_signal(signal.SIGKILL)
                p.wait()
                seen |= fresh
                killed |= {slot for slot, _ in fresh}
                kills += 1
                break
            time.sleep(0.02)
        assert p.poll() is not None and p.returncode == -signal.SIGKILL, "the search ended before it could be killed"
    final = subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=300)
    assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-2000:]
    study = optuna.load_study(study_name="shared", storage=open_storage(storage))
    trials = study.get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    retries = [t for t in trials if t.system_attrs.get("failed_trial") is not None]
    assert len(failed) == 3 and len(retries) == 3  # each killed trial was re-queued once, nothing else failed
    rows = _study_rows(storage)
    assert len(rows) == n  # no finished trial lost, none duplicated
    # the same architectures, trained to the same accuracies, in the same order, with the same winner
    assert rows == _study_rows(ref_storage)
    resumed = [t.user_attrs.get("resumed_at_epoch") for t in retries]
    assert all(r is not None and 1 <= r < epochs for r in resumed), resumed  # continued from its last epoch
    res_ref = json.loads((tmp_path / "runs" / "ref" / "results.json").read_text())
    res = json.loads((run / "results.json").read_text())
    assert res["search"]["best_trial"] is not None
    best = next(t for t in res["trials"] if t["number"] == res["search"]["best_trial"])
    best_ref = next(t for t in res_ref["trials"] if t["number"] == res_ref["search"]["best_trial"])
    assert best["config"] == best_ref["config"] and best["val_acc"] == best_ref["val_acc"]


def test_sigkilled_process_search_resumes_from_its_last_epoch(tmp_path, teacher_ckpt):
    """DistPro's bi-level search runs in the one training loop: killed after an epoch, it continues from that epoch
    and ends with the α trajectory and student an uninterrupted search reaches."""
    def args(name: str) -> list[str]:
        return WORKER + ["process", "search", "--teacher", teacher_ckpt, "--student", "resnet8", "--epochs", "3",
                         "--name", name, "--runs-dir", str(tmp_path / "runs"), "threads=1",
                         f"cache_dir={tmp_path / 'cache'}", "train.batch_size=64"]

    ref = subprocess.run(args("ref"), capture_output=True, text=True, env=_env(), timeout=300)
    assert ref.returncode == 0, ref.stdout[-2000:] + ref.stderr[-2000:]
    last = tmp_path / "runs" / "killed" / "process_student" / "last.pt"
    epoch = kill_after_checkpoint(args("killed"), last, _env())
    assert epoch < 2
    again = subprocess.run(args("killed"), capture_output=True, text=True, env=_env(), timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert f"resumed from {last} at epoch {epoch + 2}" in again.stdout
    a = torch.load(tmp_path / "runs" / "ref" / "process.pt", weights_only=True)
    b = torch.load(tmp_path / "runs" / "killed" / "process.pt", weights_only=True)
    assert a["trajectory"].shape == b["trajectory"].shape and torch.equal(a["trajectory"], b["trajectory"])
    ra = json.loads((tmp_path / "runs" / "ref" / "results.json").read_text())["process_search"]
    rb = json.loads((tmp_path / "runs" / "killed" / "results.json").read_text())["process_search"]
    timing = ("images_per_s", "seconds")
    assert ra["val_acc"] == rb["val_acc"]
    assert [{k: v for k, v in r.items() if k not in timing} for r in ra["history"]] == \
        [{k: v for k, v in r.items() if k not in timing} for r in rb["history"]]
