"""Fault injection: kill an ``archkd search`` with SIGKILL at random moments, restart it each time, and check that
nothing computed is lost and that the interrupted search ends exactly where an uninterrupted one does.

What it runs (digits, 1 torch thread, a resnet8 teacher trained here first):

    archkd search --n-trials N --trial-epochs E --top-k 1 --epochs F --max-params 60000 --max-latency 50ms

once without interruption (the reference), then again under fire: ``--kills`` SIGKILLs, each at a random moment of
one phase — *training* (a random time into the epoch after a trial's epoch checkpoint appears), *measurement* (while
a trial's candidate is being measured, i.e. it holds a lease but has no ``spec`` yet: ONNX export and latency on
ONNX Runtime) and the *final* phase (top-1 re-training with the full recipe) — restarting the same command after each
kill. At the end it prints and writes to ``bench/results/chaos.json``:

- finished trials lost (a COMPLETE trial seen before a kill and missing after it; must be 0);
- duplicated trials (a configuration trained to COMPLETE twice, or more COMPLETE trials than requested; must be 0);
- whether the study's trial results (configuration, validation accuracy, value, in order) and the final student's
  accuracies equal the uninterrupted run's;
- the time lost to kills, in seconds and in epochs of trial training (process restarts included).

    python bench/chaos.py                  # 20 kills, ~3 min on 2 cores
    python bench/chaos.py --kills 6 --n-trials 6   # a quicker look
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import optuna
import torch

from _common import CLI, RESULTS, train_digits_teacher, write_result  # bench/ is on sys.path when run as a script

from archkd.search import open_storage


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--n-trials", type=int, default=16)
    p.add_argument("--trial-epochs", type=int, default=4)
    p.add_argument("--final-epochs", type=int, default=40)
    p.add_argument("--seed", type=int, default=0, help="search seed and the seed of the kill moments")
    p.add_argument("--out", default=str(RESULTS / "chaos.json"))
    return p.parse_args(argv)


def command(a: argparse.Namespace, root: Path, teacher: str, name: str) -> list[str]:
    return CLI + ["search", "--teacher", teacher, "--name", name, "--runs-dir", str(root / "runs"),
                  "--storage", f"sqlite:///{root / (name + '.db')}", "--study", "chaos", "--seed", str(a.seed),
                  "--n-trials", str(a.n_trials), "--trial-epochs", str(a.trial_epochs), "--top-k", "1",
                  "--epochs", str(a.final_epochs), "--max-params", "60000", "--max-latency", "50ms", "threads=1",
                  f"cache_dir={root / 'cache'}", "search.space_kwargs={widths: [8, 16, 24, 32], depths: [1, 2]}"]


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def load(root: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name="chaos", storage=open_storage(f"sqlite:///{root / (name + '.db')}"))


def epoch_files(run: Path, pattern: str, since: float) -> set[tuple[str, int]]:
    """(directory, epoch) of epoch checkpoints written after ``since``."""
    out = set()
    for p in run.glob(pattern):
        try:
            if p.stat().st_mtime >= since:
                out.add((p.parent.name, int(torch.load(p, weights_only=True)["epoch"])))
        except Exception:  # noqa: BLE001 - being replaced right now: seen on the next poll
            pass
    return out


def measuring(root: Path, name: str, pid: int) -> bool:
    """Whether process ``pid`` holds a trial it has not finished measuring."""
    try:
        trials = load(root, name).get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    except Exception:  # noqa: BLE001 - the study may not exist yet
        return False
    return any((t.user_attrs.get("archkd_lease") or {}).get("pid") == pid and "spec" not in t.user_attrs
               for t in trials)


def complete(root: Path, name: str) -> dict[int, str]:
    try:
        trials = load(root, name).get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    except Exception:  # noqa: BLE001
        return {}
    return {t.number: json.dumps(t.params, sort_keys=True) for t in trials}


def rows(root: Path, name: str) -> list[tuple]:
    done = [t for t in load(root, name).get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    done.sort(key=lambda t: (t.datetime_complete, t.number))
    return [(json.dumps(t.params, sort_keys=True), t.user_attrs.get("val_acc"), t.value) for t in done]


def final_student(root: Path, name: str) -> dict:
    """The top-1 student's configuration and accuracies (trial numbers differ: retries get new numbers)."""
    res = json.loads((root / "runs" / name / "results.json").read_text())
    top = (res.get("top_k") or [{}])[0]
    config = next((t["config"] for t in res["trials"] if t["number"] == top.get("trial")), None)
    return {"config": config, "val_acc": top.get("val_acc"), "test_acc": top.get("test_acc")}


def main(argv: list[str] | None = None) -> dict:
    a = parse_args(argv)
    rng = random.Random(a.seed)
    root = Path(tempfile.mkdtemp(prefix="archkd-chaos-"))
    teacher = train_digits_teacher(root / "teacher")
    print(f"teacher {teacher}; working in {root}")

    t0, launched = time.perf_counter(), time.time()
    ref = subprocess.run(command(a, root, teacher, "ref"), capture_output=True, text=True, env=env())
    ref_s = time.perf_counter() - t0
    if ref.returncode != 0:
        raise SystemExit(f"reference run failed:\n{ref.stdout[-2000:]}{ref.stderr[-2000:]}")
    trial_s = [t.user_attrs["seconds"] for t in load(root, "ref").get_trials(deepcopy=False)
               if t.state == optuna.trial.TrialState.COMPLETE]
    epoch_s = sum(trial_s) / (len(trial_s) * a.trial_epochs)
    first = min(t.datetime_start for t in load(root, "ref").get_trials(deepcopy=False)).timestamp()
    startup_s = first - launched  # process launch → first trial asked: imports, data, teacher, study
    print(f"uninterrupted: {ref_s:.1f}s, {len(trial_s)} trials, {epoch_s:.2f}s per trial epoch, "
          f"{startup_s:.1f}s from launch to the first trial")

    run = root / "runs" / "chaos"
    n_final = max(1, a.kills * 3 // 10)
    plan = [("training", "measurement")[i % 2] for i in range(a.kills - n_final)] + ["final"] * n_final
    kills: list[dict] = []
    lost: set[int] = set()
    seen_complete: dict[int, str] = {}
    t0 = time.perf_counter()
    for phase in plan:
        if phase != "final" and len(complete(root, "chaos")) >= a.n_trials:
            phase = "final"  # the search is over: the remaining kills go to the final phase
        started = time.time()
        p = subprocess.Popen(command(a, root, teacher, "chaos"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=env())
        fired = False
        while p.poll() is None:
            if phase == "measurement":
                hit = measuring(root, "chaos", p.pid)
                delay = rng.uniform(0.0, 0.1)
            else:
                hit = bool(epoch_files(run, "trials/*/last.pt" if phase == "training" else "final/*/last.pt",
                                       started))
                delay = rng.uniform(0.0, epoch_s)
            if hit:
                time.sleep(delay)
                if p.poll() is None:
                    p.send_signal(signal.SIGKILL)
                    p.wait()
                    fired = True
                break
            time.sleep(0.03)
        if not fired:
            print(f"  the search finished before a kill in phase '{phase}' could land")
            break
        now = complete(root, "chaos")
        lost |= set(seen_complete) - set(now)
        seen_complete.update(now)
        kills.append({"phase": phase, "after_s": round(time.time() - started, 2), "complete": len(now)})
        print(f"  kill {len(kills):>2}/{a.kills} during {phase:<11} after {kills[-1]['after_s']:.1f}s "
              f"({len(now)} trials complete)")
    last = subprocess.run(command(a, root, teacher, "chaos"), capture_output=True, text=True, env=env())
    chaos_s = time.perf_counter() - t0
    if last.returncode != 0:
        raise SystemExit(f"final restart failed:\n{last.stdout[-2000:]}{last.stderr[-2000:]}")
    now = complete(root, "chaos")
    lost |= set(seen_complete) - set(now)
    got, want = rows(root, "chaos"), rows(root, "ref")
    trained = [r[0] for r in got]
    duplicated = (len(trained) - len(set(trained))) + max(0, len(got) - a.n_trials)
    same_trials = got == want
    same_final = final_student(root, "chaos") == final_student(root, "ref")
    lost_s = chaos_s - ref_s
    summary = {
        "kills": len(kills), "by_phase": {ph: sum(k["phase"] == ph for k in kills) for ph in ("training", "measurement",
                                                                                            "final")},
        "finished_trials_lost": len(lost), "duplicated_trials": duplicated,
        "trial_results_equal_uninterrupted": same_trials, "final_student_equal_uninterrupted": same_final,
        "uninterrupted_s": round(ref_s, 1), "with_kills_s": round(chaos_s, 1), "time_lost_s": round(lost_s, 1),
        "time_lost_epochs": round(lost_s / epoch_s, 1), "time_lost_per_kill_s": round(lost_s / max(1, len(kills)), 2),
        "startup_s": round(startup_s, 2),
        "time_lost_beyond_restarts_epochs": round((lost_s - len(kills) * startup_s) / epoch_s, 1),
        "trial_epoch_s": round(epoch_s, 3),
        "retried_trials": sum(1 for t in load(root, "chaos").get_trials(deepcopy=False)
                              if t.system_attrs.get("failed_trial") is not None),
        "final_student": final_student(root, "chaos"),
    }
    print()
    print(f"{'kills':<40} {summary['kills']} ({', '.join(f'{k} {v}' for k, v in summary['by_phase'].items())})")
    print(f"{'finished trials lost':<40} {summary['finished_trials_lost']}")
    print(f"{'duplicated trials':<40} {summary['duplicated_trials']}")
    print(f"{'trial results = uninterrupted run':<40} {same_trials}")
    print(f"{'final student = uninterrupted run':<40} {same_final}")
    print(f"{'time lost to kills':<40} {lost_s:.1f}s = {lost_s / epoch_s:.1f} trial epochs "
          f"({lost_s / max(1, len(kills)):.1f}s per kill, restarts included)")
    print(f"{'  of which process restarts':<40} {len(kills)} × {startup_s:.1f}s; the rest "
          f"{(lost_s - len(kills) * startup_s) / epoch_s:.1f} trial epochs ({summary['retried_trials']} retried trials)")
    return write_result(a.out, {"args": vars(a), "summary": summary, "kills": kills})


if __name__ == "__main__":
    main()
