"""Shared fixtures: an isolated cache directory, digits data, and a small trained teacher checkpoint."""
from __future__ import annotations

import pytest
import torch

from archkd.config import Config


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ARCHKD_CACHE", str(tmp_path_factory.getbasetemp() / "archkd_cache"))
    torch.set_num_threads(1)


def small_config(tmp_path, **over) -> Config:
    cfg = Config(name="t", runs_dir=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache"))
    cfg.teacher.arch = "resnet8"
    cfg.teacher.train.epochs = 3
    cfg.train.epochs = 2
    cfg.search.n_trials = 3
    cfg.search.epochs = 1
    cfg.search.space_kwargs = {"widths": [8, 16], "depths": [1, 2]}
    for k, v in over.items():
        from archkd.config import set_key

        set_key(cfg, k, v)
    return cfg


def cifar_python_folder(root, classes: list[str] | None = None):
    """A small folder in CIFAR-10's python format (32×32 RGB, 100 training and 10 test images of 10 classes), made
    here: tests never download."""
    import pickle

    import numpy as np

    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump({"data": rng.integers(0, 255, (20, 3072), dtype=np.uint8), "labels": list(range(10)) * 2}, f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": rng.integers(0, 255, (10, 3072), dtype=np.uint8), "labels": list(range(10))}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": classes or [f"c{i}" for i in range(10)]}, f)
    return folder


@pytest.fixture(scope="session")
def digits():
    from archkd.data import load_data

    return load_data("digits", seed=0)


@pytest.fixture(scope="session")
def teacher_ckpt(tmp_path_factory):
    """A resnet8 teacher trained 3 epochs on digits (≈90 % val accuracy); shared by the whole session."""
    from archkd import api

    tmp = tmp_path_factory.mktemp("teacher")
    cfg = small_config(tmp)
    out = api.train_teacher(cfg, log=None)
    return out["checkpoint"]


def kill_after_checkpoint(args: list[str], checkpoint, env: dict, timeout: float = 120.0) -> int:
    """Start ``args``, SIGKILL it as soon as ``checkpoint`` exists (an epoch has been saved: training is under way),
    and return the epoch that checkpoint holds; fails the test if the process ended first."""
    import signal
    import subprocess
    import time

    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + timeout
    while p.poll() is None and time.time() < deadline and not checkpoint.exists():
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    return int(torch.load(checkpoint, weights_only=True)["epoch"])


def cli_error(argv: list[str], capsys) -> str:
    """Run the CLI on ``argv`` and return its one error line (``archkd: warning:`` lines aside), checking the
    bad-input contract: exit status 2, one ``archkd: error: <problem> — <fix>`` line, no traceback."""
    from archkd.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("archkd: warning:")]
    assert e.value.code == 2, err
    assert len(lines) == 1 and lines[0].startswith("archkd: error: ") and "Traceback" not in err, err
    assert " — " in lines[0], f"no fix after the problem: {lines[0]}"
    return lines[0]


def snapshot(*dirs) -> dict[str, str]:
    """Every file under ``dirs``: a log's text (it may only grow), any other file's SHA-256 (run locks aside: they name
    their last holder's pid)."""
    import hashlib

    out = {}
    for d in dirs:
        for p in sorted(d.rglob("*")) if d.exists() else []:
            if p.is_file() and p.name != ".archkd.lock":
                out[str(p)] = p.read_text() if p.name == "log.txt" else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_nothing_lost(before: dict[str, str], after: dict[str, str]) -> None:
    """No file of ``before`` was deleted or changed; logs were only appended to."""
    for path, digest in before.items():
        assert path in after, f"{path} was deleted"
        if path.endswith("log.txt"):
            assert after[path].startswith(digest), f"{path} was rewritten"
        else:
            assert after[path] == digest, f"{path} was changed"
