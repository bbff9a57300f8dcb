"""Run directories: nothing overwritten, nothing shared by accident (issue #24).

One owner per run (a second process is refused with the holder's pid), one verb's results per run, a foreign SQLite
file never used as a study, exports replaced as a set into the checkpoint's own run, failed writes (disk full,
read-only) as one line, and the small things a newcomer meets on the way.
"""
from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archkd.cli import main

ARCHKD = [sys.executable, "-m", "archkd"]


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(args)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def one_line_error(code: int, err: str, text: str) -> None:
    """The bad-input contract on an already captured run (see conftest.cli_error)."""
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("archkd: warning:")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("archkd: error: "), err
    assert " — " in lines[0] and "Traceback" not in err and text in lines[0], err


def digests(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in ("log.txt", ".archkd.lock")}


def base(tmp_path: Path, teacher: str, name: str) -> list[str]:
    return ["--teacher", teacher, "--name", name, "--runs-dir", str(tmp_path / "runs"), "threads=1",
            f"cache_dir={tmp_path / 'cache'}"]


def distill_args(tmp_path: Path, teacher: str, name: str, epochs: int = 1) -> list[str]:
    return ["distill", *base(tmp_path, teacher, name), "--student", "resnet8", "--epochs", str(epochs)]


def search_args(tmp_path: Path, teacher: str, name: str) -> list[str]:
    return ["search", *base(tmp_path, teacher, name), "--n-trials", "2", "--trial-epochs", "1", "--max-params", "30k",
            "search.space_kwargs={widths: [8, 16], depths: [1, 2]}"]


def test_a_second_process_on_a_run_is_refused_with_the_holders_pid(tmp_path, teacher_ckpt, capsys):
    lock = tmp_path / "runs" / "dd" / ".archkd.lock"
    first = subprocess.Popen(ARCHKD + distill_args(tmp_path, teacher_ckpt, "dd", epochs=30),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (lock.is_file() and str(first.pid) in lock.read_text()):
            assert first.poll() is None, first.stderr.read()
            time.sleep(0.05)
        before = digests(tmp_path / "runs" / "dd")
        code, _, err = run_cli(distill_args(tmp_path, teacher_ckpt, "dd"), capsys)
        one_line_error(code, err, f"in use by process {first.pid}")
        assert first.poll() is None  # the first run goes on
        after = digests(tmp_path / "runs" / "dd")
        assert all(after.get(k) == v for k, v in before.items() if not k.endswith(("last.pt", "best.pt", ".csv")))
    finally:
        first.kill()
        first.wait()
    code, _, _ = run_cli(distill_args(tmp_path, teacher_ckpt, "dd"), capsys)  # the holder is gone: the run is free
    assert code == 0


def test_a_foreign_sqlite_file_is_not_made_a_study(tmp_path, teacher_ckpt, capsys):
    run = tmp_path / "runs" / "s"
    run.mkdir(parents=True)
    with sqlite3.connect(run / "study.db") as con:
        con.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        con.execute("INSERT INTO invoices VALUES (1, 9.5)")
    (run / "results.json").write_text('{"mine": true}\n')
    before = digests(run)
    code, _, err = run_cli(search_args(tmp_path, teacher_ckpt, "s"), capsys)
    one_line_error(code, err, "another program's database (tables invoices)")
    assert digests(run) == before
    with sqlite3.connect(run / "study.db") as con:
        assert [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["invoices"]


def test_a_run_holds_one_verbs_results(tmp_path, teacher_ckpt, capsys):
    code, _, _ = run_cli(distill_args(tmp_path, teacher_ckpt, "x"), capsys)
    assert code == 0
    run = tmp_path / "runs" / "x"
    before = digests(run)
    assert json.loads((run / "results.json").read_text())["command"] == "archkd distill"
    code, _, err = run_cli(search_args(tmp_path, teacher_ckpt, "x"), capsys)
    one_line_error(code, err, "holds the results of 'archkd distill'")
    assert digests(run) == before
    code, _, _ = run_cli(distill_args(tmp_path, teacher_ckpt, "x"), capsys)  # the same verb again: it resumes
    assert code == 0


def test_a_refused_command_does_not_take_a_run_over(tmp_path, teacher_ckpt, capsys):
    """A command refused for bad input before its work started leaves the run free for any verb."""
    code, _, _ = run_cli(["search", *base(tmp_path, "no/such/teacher.pt", "y")], capsys)
    assert code == 2
    code, _, _ = run_cli(distill_args(tmp_path, teacher_ckpt, "y"), capsys)
    assert code == 0


def test_python_api_search_then_distill_in_one_run(tmp_path, teacher_ckpt):
    """The README's API flow: a final distillation into the search's run writes no results over the search's."""
    from archkd import api, load_config
    from archkd.models import build_from_spec

    cfg = load_config(overrides=["name=mine", f"runs_dir={tmp_path / 'runs'}", f"cache_dir={tmp_path / 'cache'}",
                                 f"teacher.path={teacher_ckpt}", "budget.max_params=30000", "search.n_trials=2",
                                 "search.epochs=1", "train.epochs=1",
                                 "search.space_kwargs={widths: [8, 16], depths: [1, 2]}"])
    teacher, data = api.prepare(cfg, log=None)
    found = api.search(cfg, log=None, teacher=teacher, data=data)
    results = (cfg.run_dir / "results.json").read_bytes()
    api.distill(cfg, log=None, teacher=teacher, data=data, student=build_from_spec(found["best"]["spec"]))
    assert (cfg.run_dir / "results.json").read_bytes() == results
    from archkd.errors import ArchkdError

    with pytest.raises(ArchkdError, match="holds the results of 'archkd search'"):
        api.process_search(cfg, log=None, teacher=teacher, data=data)


def test_export_goes_to_the_checkpoints_run_and_replaces_only_its_own_export(tmp_path, teacher_ckpt, capsys,
                                                                           monkeypatch):
    code, _, _ = run_cli(distill_args(tmp_path, teacher_ckpt, "e"), capsys)
    assert code == 0
    run = tmp_path / "runs" / "e"
    best = run / "student" / "best.pt"
    code, _, err = run_cli(["export", str(best), "threads=1"], capsys)  # no --name: the checkpoint's own run
    assert code == 0, err
    export = run / "export"
    assert json.loads((export / "student.json").read_text())["source"] == str(best.resolve())
    assert not (Path("runs") / "run" / "export").exists()
    first = digests(export)

    other = run / "other.pt"
    shutil.copy(best, other)
    code, _, err = run_cli(["export", str(other), "--out", str(export), "threads=1"], capsys)
    one_line_error(code, err, "holds the export of")
    assert digests(export) == first

    import archkd.export as ex  # an export that dies half-way leaves the earlier set whole

    def dies(model, out_dir, *a, **k):
        (Path(out_dir) / "student.onnx").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(ex, "export_model", dies)
    with pytest.raises(KeyboardInterrupt):
        from archkd import api, load_config

        api.export(load_config(overrides=["threads=1"]), checkpoint=str(best), log=None)
    assert digests(export) == first
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".export")) == []
    monkeypatch.undo()

    code, _, err = run_cli(["export", str(other), "--out", str(export), "--force", "threads=1"], capsys)
    assert code == 0, err
    assert json.loads((export / "student.json").read_text())["source"] == str(other.resolve())


def test_report_and_measure_take_config_and_overrides(tmp_path, teacher_ckpt, capsys):
    code, _, _ = run_cli(distill_args(tmp_path, teacher_ckpt, "r"), capsys)
    assert code == 0
    run = tmp_path / "runs" / "r"
    assert json.loads((run / "results.json").read_text())["threads"] == 1  # the thread count that ran
    cfg = tmp_path / "m.yaml"
    cfg.write_text("measure:\n  repeats: 3\n")
    code, out, err = run_cli(["report", str(run), "threads=1"], capsys)
    assert code == 0 and "report.html" in out, err
    code, out, err = run_cli(["measure", "resnet8", "--config", str(cfg), "measure.runtimes=[torch]", "--json"],
                             capsys)
    assert code == 0, err
    assert list(json.loads(out)["latency"]) == ["torch"]
    code, _, err = run_cli(["search", "--n-trials", "x"], capsys)
    one_line_error(code, err, "search: argument --n-trials")
    assert "archkd: error: archkd" not in err


def test_rerunning_a_finished_distill_says_it_was_read_back(tmp_path, teacher_ckpt, capsys):
    assert run_cli(distill_args(tmp_path, teacher_ckpt, "f"), capsys)[0] == 0
    code, out, _ = run_cli(distill_args(tmp_path, teacher_ckpt, "f"), capsys)
    assert code == 0 and "trained earlier: read back" in out and "(0 img/s)" not in out


def test_the_live_line_names_the_trial_as_the_table_does():
    from archkd.progress import Progress

    lines: list[str] = []
    p = Progress(lines.append, every=0.0, live=False)
    p.search(0, 8, number=3)
    p.start(1, 100)
    p.step(0, 50, 100.0, 0.5)
    assert "trial #3 (1/8)" in lines[-1]


def test_over_budget_trials_are_in_the_trial_table(tmp_path):
    from archkd.search import Budget, HashRandomSampler, TrialOutcome, run_search
    from archkd.spaces import create_space

    lines: list[str] = []
    space = create_space("stages", widths=(8, 64), depths=(1, 2))
    run_search(space, lambda c, r: TrialOutcome(0.5), storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s",
               sampler=HashRandomSampler(0), n_trials=3, budget=Budget(max_params=20_000), input_shape=(1, 8, 8),
               num_classes=10, log=lines.append)
    rows = [ln.split() for ln in lines if ln.split() and ln.split()[0].isdigit()]
    assert [int(r[0]) for r in rows] == list(range(len(rows)))  # every trial number, none skipped
    assert any(r[1] == "INFEASIBLE" for r in rows)


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here (needs root): {r.stderr.decode().strip()}")


def test_a_full_disk_is_one_line_and_the_run_resumes_after(tmp_path, teacher_ckpt, capsys):
    mnt = tmp_path / "small"
    _mount_tmpfs(mnt, "4m")
    try:
        args = ["search", *base(tmp_path, teacher_ckpt, "s"), "--runs-dir", str(mnt), "--n-trials", "3",
                "--trial-epochs", "1", "--max-params", "30k", "search.space_kwargs={widths: [8, 16], depths: [1, 2]}"]
        filler = mnt / "filler"
        filler.write_bytes(b"\0" * (4 * 2**20 - 900 * 2**10))  # leave ~900 KiB: room for the study, not the trials
        code, _, err = run_cli(args, capsys)
        one_line_error(code, err, "no space left")
        filler.unlink()
        code, out, err = run_cli(args, capsys)  # space again: the same command finishes the search
        assert code == 0, err
        assert len(json.loads((mnt / "s" / "results.json").read_text())["trials"]) >= 3
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def test_a_read_only_run_directory_is_one_line(tmp_path, teacher_ckpt, capsys):
    mnt = tmp_path / "ro"
    _mount_tmpfs(mnt, "64m")
    try:
        args = ["search", *base(tmp_path, teacher_ckpt, "s"), "--runs-dir", str(mnt), "--trial-epochs", "1",
                "--max-params", "30k", "search.space_kwargs={widths: [8, 16], depths: [1, 2]}"]
        assert run_cli([*args, "--n-trials", "1"], capsys)[0] == 0
        before = digests(mnt)
        gc.collect()  # the finished search's study storage (its SQLite connection) is garbage now
        r = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True, text=True)
        assert r.returncode == 0, (r.stderr, subprocess.run(["lsof", "+D", str(mnt)], capture_output=True).stdout)
        code, _, err = run_cli([*args, "--n-trials", "2"], capsys)
        one_line_error(code, err, "Read-only file system")
        assert digests(mnt) == before
        subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=True)
        assert run_cli([*args, "--n-trials", "2"], capsys)[0] == 0  # writable again: it resumes
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def test_the_distpro_recipe_keeps_both_runs_results(tmp_path, teacher_ckpt, capsys):
    """configs/distpro.yaml's two steps, as its header gives them: search a process, then replay it in a run of its
    own; replayed under the search's name instead, the replay is refused and the search's results are kept."""
    recipe = str(Path(__file__).resolve().parents[1] / "configs" / "distpro.yaml")
    common = ["--config", recipe, "--teacher", teacher_ckpt, "--runs-dir", str(tmp_path / "runs"), "threads=1",
              f"cache_dir={tmp_path / 'cache'}", "train.epochs=1"]
    assert run_cli(["process", "search", *common, "--epochs", "1"], capsys)[0] == 0
    search_run = tmp_path / "runs" / "distpro"
    before = digests(search_run)
    process = str(search_run / "process.pt")
    code, _, err = run_cli(["distill", *common, "--process", process], capsys)
    one_line_error(code, err, "holds the results of 'archkd process search'")
    assert digests(search_run) == before
    assert run_cli(["distill", *common, "--process", process, "--name", "distpro-replay"], capsys)[0] == 0
    assert json.loads((search_run / "results.json").read_text())["command"] == "archkd process search"
    replay = json.loads((tmp_path / "runs" / "distpro-replay" / "results.json").read_text())
    assert replay["command"] == "archkd distill" and replay["final"]["process"] == process
