"""Hostile and damaged inputs (issue #24): files crafted or broken so that a naive reader hangs, exhausts memory,
keeps one of two settings silently, or stops with a traceback. Each must end like any bad input: exit status 2 and one
line ``archkd: error: <problem> — <fix>`` naming the file — and quickly, before the harm is done.

Cases that would run away on a naive reader run under ``_deadline``, so a regression fails in seconds instead of
taking the machine's memory and minutes.
"""
from __future__ import annotations

import contextlib
import resource
import signal
import time
from pathlib import Path
from typing import Iterator

import pytest
import torch

from archkd.cli import main
from conftest import assert_nothing_lost, cli_error, snapshot


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Fail with ``TimeoutError`` when the block runs longer than ``seconds`` (a runaway input must not run on)."""
    def stop(_signum: int, _frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# --- YAML ------------------------------------------------------------------------------------------------------------

def _billion_laughs() -> str:
    """421 bytes under generic.pool standing for 9⁹ (387 million) values: 9 levels of 9 aliases each."""
    names = "abcdefghi"
    lines = ["generic:", "  pool:", "    - &a [x, x, x, x, x, x, x, x, x]"]
    lines += [f"    - &{n} [" + ", ".join([f"*{p}"] * 9) + "]" for p, n in zip(names, names[1:])]
    return "\n".join(lines) + "\n"


def test_billion_laughs_config_is_refused_in_seconds(tmp_path, capsys):
    path = _write(tmp_path / "laughs.yaml", _billion_laughs())
    assert len(Path(path).read_bytes()) < 1024
    t0 = time.process_time()  # CPU time: the expansion is CPU-bound, and wall time on a loaded machine is not
    with _deadline(20):
        line = cli_error(["config", "--config", path], capsys)
    assert time.process_time() - t0 < 2
    assert "laughs.yaml" in line and "aliases" in line


def test_a_few_aliases_and_merges_still_load(tmp_path, capsys):
    """What config files use aliases for (one recipe shared by two sections, a merged base) is unaffected."""
    path = _write(tmp_path / "shared.yaml", "train: &recipe {epochs: 3, lr: 0.02}\n"
                                            "teacher:\n  train:\n    <<: *recipe\n    epochs: 4\n")
    with pytest.raises(SystemExit) as e:
        main(["config", "--config", path])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "lr: 0.02" in out and "epochs: 4" in out


@pytest.mark.parametrize("case, text, expected", [
    ("alias inside itself", "generic:\n  pool: &p [random:2, *p]\n", "has an alias inside the value it names"),
    ("nesting past the parser", "generic:\n  pool: " + "[" * 2000 + "]" * 2000 + "\n", "nests its values too deeply"),
], ids=["alias inside itself", "nesting past the parser"])
def test_self_referencing_or_deeply_nested_yaml_is_one_line(tmp_path, capsys, case, text, expected):
    path = _write(tmp_path / "odd.yaml", text)
    with _deadline(20):
        line = cli_error(["config", "--config", path], capsys)
    assert "odd.yaml" in line and expected in line, line


def test_duplicate_key_in_a_config_file_names_key_file_and_lines(tmp_path, capsys):
    path = _write(tmp_path / "twice.yaml", "train:\n  epochs: 3\n  lr: 0.1\n  epochs: 30\n")
    line = cli_error(["config", "--config", path], capsys)
    assert "twice.yaml" in line and "'epochs'" in line and "lines 2 and 4" in line, line


def test_duplicate_key_in_a_pool_file_is_refused(tmp_path):
    from archkd.errors import ArchkdError
    from archkd.spaces import create_space
    from archkd.teacher.generic import make_pool

    pool = _write(tmp_path / "pool.yaml", "- depth_0: 1\n  width_0: 8\n  depth_0: 2\n")
    with pytest.raises(ArchkdError, match="pool.yaml repeats key 'depth_0' \\(lines 1 and 3\\)"):
        make_pool(create_space("stages"), [pool], (1, 8, 8), 10)


def test_override_that_is_not_yaml_is_one_line(capsys):
    line = cli_error(["config", "teacher.path=[1"], capsys)
    assert "config key 'teacher.path'" in line and "not valid YAML" in line, line


# --- threads ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["0", "garbage", "-3"])
def test_invalid_omp_num_threads_is_one_line(monkeypatch, capsys, value):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    line = cli_error(["config"], capsys)
    assert f"OMP_NUM_THREADS is '{value}'" in line and "unset it or give a positive integer" in line, line


def test_zero_threads_in_the_config_is_one_line(monkeypatch, capsys):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert "'threads' is 0" in cli_error(["config", "threads=0"], capsys)


def test_the_thread_count_in_use_is_knowable(monkeypatch):
    from archkd.device import configure_threads, threads_in_use

    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert configure_threads() == threads_in_use() == 2
    assert configure_threads(1) == threads_in_use() == 1  # an explicit count (config key threads) wins


# --- checkpoints -----------------------------------------------------------------------------------------------------

def _edited(teacher_ckpt: str, path: Path, edit) -> str:  # noqa: ANN001 - a function editing the checkpoint's dict
    d = torch.load(teacher_ckpt, map_location="cpu", weights_only=True)
    edit(d)
    torch.save(d, path)
    return str(path)


def _set(d: dict, key: str, value: object) -> None:
    d[key] = value


DAMAGE = [
    ("spec of another network", lambda d: d["spec"].update(num_classes=7),
     "'head.fc.weight' is (10, 64) in the file but (7, 64) in the network its spec describes"),
    ("no state_dict", lambda d: d.pop("state_dict"), "has no 'state_dict'"),
    ("a weight removed", lambda d: d["state_dict"].pop("head.fc.bias"), "lacks 'head.fc.bias'"),
    ("a weight reshaped", lambda d: _set(d["state_dict"], "head.fc.weight", torch.zeros(10, 32)),
     "'head.fc.weight' is (10, 32) in the file but (10, 64)"),
    ("a weight added", lambda d: _set(d["state_dict"], "extra.weight", torch.zeros(3)), "stores 'extra.weight'"),
    ("spec that cannot build", lambda d: d["spec"]["kwargs"].update(widths="abc"), "has a spec archkd cannot build"),
    ("spec of an unknown model", lambda d: d["spec"].update(name="resnet9000"), "unknown model 'resnet9000'"),
    ("preprocessing edited", lambda d: d["preprocessing"].update(mean="abc"), "unusable 'preprocessing'"),
]


@pytest.mark.parametrize("verb", ["export", "distill --teacher"])
@pytest.mark.parametrize("case, edit, expected", DAMAGE, ids=[c[0] for c in DAMAGE])
def test_checkpoint_whose_parts_disagree_is_one_line(tmp_path, capsys, teacher_ckpt, verb, case, edit, expected):
    path = _edited(teacher_ckpt, tmp_path / "edited.pt", edit)
    argv = ["export", path] if verb == "export" else ["distill", "--teacher", path, "train.epochs=1"]
    line = cli_error(argv + ["--runs-dir", str(tmp_path / "runs"), "--name", "x"], capsys)
    assert path in line and expected in line and "damaged or was edited" in line, line


def _absurd(teacher_ckpt: str, path: Path, kwargs: dict) -> str:
    """A small checkpoint (the digits teacher's weights) whose spec describes a network far too large to build."""
    return _edited(teacher_ckpt, path, lambda d: d["spec"].update(name="resnet", kwargs=kwargs))


@pytest.mark.parametrize("kwargs", [{"widths": [10**6] * 4}, {"depths": [10**9] * 3}], ids=["width 1e6", "depth 1e9"])
def test_spec_of_a_huge_network_is_refused_without_building_it(tmp_path, capsys, teacher_ckpt, kwargs):
    path = _absurd(teacher_ckpt, tmp_path / "huge.pt", kwargs)
    assert Path(path).stat().st_size < 400_000
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.process_time()  # CPU time (a loaded machine stretches wall time); the first meta build imports dynamo
    with _deadline(20):
        line = cli_error(["export", path, "--runs-dir", str(tmp_path / "runs")], capsys)
    assert time.process_time() - t0 < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 300_000  # KiB: nothing large was allocated
    assert path in line and "damaged or was edited" in line, line


def test_a_student_checkpoint_with_a_huge_spec_is_refused_before_building(tmp_path, teacher_ckpt):
    """``student.checkpoint`` (a student architecture from a file) reads the same checkpoints."""
    from archkd.distill import load_checkpoint
    from archkd.errors import ArchkdError

    path = _absurd(teacher_ckpt, tmp_path / "huge.pt", {"widths": [10**6] * 4})
    with _deadline(20), pytest.raises(ArchkdError, match="'stem.0.weight' is \\(16, 1, 3, 3\\) in the file"):
        load_checkpoint(path)


# --- a damaged checkpoint of the run itself ---------------------------------------------------------------------------

def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _drop_optimizer(path: Path) -> None:
    d = torch.load(path, map_location="cpu", weights_only=True)
    del d["optimizer"]
    torch.save(d, path)


@pytest.mark.parametrize("damage", [_truncate, _drop_optimizer], ids=["truncated", "optimizer state removed"])
def test_damaged_last_pt_of_the_run_names_the_file_and_the_way_out(tmp_path, capsys, teacher_ckpt, damage):
    runs = tmp_path / "runs"
    argv = ["distill", "--teacher", teacher_ckpt, "--runs-dir", str(runs), "--name", "x", "train.epochs=1"]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0, capsys.readouterr().err
    capsys.readouterr()
    last = runs / "x" / "student" / "last.pt"
    damage(last)
    before = snapshot(runs)
    line = cli_error(argv, capsys)
    assert str(last) in line and f"rm {last}" in line and "damaged" in line, line
    assert "give a checkpoint written by archkd" not in line
    assert_nothing_lost(before, snapshot(runs))


# --- the generic teacher's pool ---------------------------------------------------------------------------------------

def test_random_pool_without_a_budget_stays_well_within_the_teacher():
    from archkd.models import create_model
    from archkd.spaces import create_space
    from archkd.teacher.generic import POOL_TEACHER_SHARE, make_pool

    shape = (1, 8, 8)
    teacher = sum(p.numel() for p in create_model("resnet20", num_classes=10, in_channels=1).parameters())
    space = create_space("stages")
    pool = make_pool(space, ["random:3"], shape, 10, seed=0, max_params=None, teacher_params=teacher)
    cap = int(teacher * POOL_TEACHER_SHARE)
    sizes = [sum(p.numel() for p in space.build(c, shape, 10).parameters()) for c in pool.configs]
    assert len(sizes) == 3 and all(s <= cap < teacher for s in sizes), (sizes, cap)
    given = make_pool(space, ["random:3"], shape, 10, seed=0, max_params=200_000, teacher_params=teacher)
    assert given.configs == make_pool(space, ["random:3"], shape, 10, seed=0, max_params=200_000).configs  # it wins
