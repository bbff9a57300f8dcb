"""Scaling of one search over worker processes: trials per hour with 1 and with 2 ``archkd search`` workers (1 torch
thread each) on one study, in one run, and the search overhead of each.

Both settings search the same study definition (digits, stages space, the same seed: the random sampler proposes the
same candidates whichever worker asks) on Optuna's journal file storage, the storage for several processes on one
machine, each from a cold teacher-output cache of its own. Wall-clock runs from launching the workers to the last one
exiting (process start-up included). Reported per setting: trials/hour, the speed-up over one worker, the search
overhead ``wall-clock / Σ trial time`` (Σ over trials of the time from ask to tell) and the worker efficiency
``Σ trial time / (workers × wall-clock)``. Trials are slower when two share the machine's two cores (memory
bandwidth), which the per-trial times show. Results go to ``bench/results/workers.json``.

    python bench/workers.py                 # 16 trials × 8 epochs per setting, ~3 min on 2 idle cores
    python bench/workers.py --repeats 3     # medians over interleaved rounds
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import optuna

from _common import CLI, RESULTS, train_digits_teacher, write_result  # bench/ is on sys.path when run as a script

from archkd.search import open_storage


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-trials", type=int, default=16)
    p.add_argument("--trial-epochs", type=int, default=8)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", default=str(RESULTS / "workers.json"))
    return p.parse_args(argv)


def one_setting(a: argparse.Namespace, root: Path, teacher: str, workers: int, tag: str) -> dict:
    storage = f"journal:{root / (tag + '.log')}"
    args = ["search", "--teacher", teacher, "--runs-dir", str(root / "runs"), "--storage", storage,
            "--study", tag, "--n-trials", str(a.n_trials), "--trial-epochs", str(a.trial_epochs), "threads=1",
            f"cache_dir={root / tag / 'cache'}", "search.space_kwargs={widths: [16, 24, 32, 48], depths: [1, 2, 3]}"]
    # each setting its own (cold) teacher-output cache: with one shared cache the first setting (1 worker) paid for
    # filling it and every later one trained on a warm cache, which favoured the settings measured after it
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0, launched = time.perf_counter(), datetime.datetime.now()
    procs = [subprocess.Popen(CLI + args + ["--name", f"{tag}_w{i}"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, env=env) for i in range(workers)]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"worker failed: {err[-2000:]}")
    wall, ended = time.perf_counter() - t0, datetime.datetime.now()
    study = optuna.load_study(study_name=tag, storage=open_storage(storage))
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    trial_s = sum(t.user_attrs["seconds"] for t in done)
    pids = {(t.user_attrs.get("archkd_lease") or {}).get("pid") for t in done}
    return {"workers": workers, "trials": len(done), "wall_s": wall, "trials_per_hour": len(done) / wall * 3600,
            "sum_trial_s": trial_s, "mean_trial_s": trial_s / len(done), "overhead": wall / trial_s,
            "efficiency": trial_s / (workers * wall), "workers_that_trained": len(pids),
            **where_time_goes(trials, launched, ended)}


def where_time_goes(trials: list[optuna.trial.FrozenTrial], launched: datetime.datetime,
                    ended: datetime.datetime) -> dict:
    """Each worker's wall-clock split into start-up (launch to its first trial's ask: imports, teacher, data, study),
    trials (ask to tell, every state), between trials (tell to the next ask) and tail (last tell to the last
    worker's exit); means over workers, in seconds. Their sum is the wall-clock (up to clock resolution)."""
    per: dict[object, list] = {}
    for t in trials:
        if t.datetime_start is not None and t.datetime_complete is not None:
            per.setdefault((t.user_attrs.get("archkd_lease") or {}).get("pid"), []).append(t)
    parts = []
    for ts in per.values():
        ts.sort(key=lambda t: t.datetime_start)
        parts.append({
            "startup_s": (ts[0].datetime_start - launched).total_seconds(),
            "in_trials_s": sum((t.datetime_complete - t.datetime_start).total_seconds() for t in ts),
            "between_trials_s": sum(max(0.0, (b.datetime_start - a.datetime_complete).total_seconds())
                                    for a, b in zip(ts, ts[1:])),
            "tail_s": (ended - ts[-1].datetime_complete).total_seconds(),
            "first_trial_s": (ts[0].datetime_complete - ts[0].datetime_start).total_seconds(),
            "asked": len(ts)})
    return {k: statistics.mean(p[k] for p in parts) for k in parts[0]} if parts else {}


def main(argv: list[str] | None = None) -> dict:
    a = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="archkd-workers-"))
    teacher = train_digits_teacher(root / "teacher")
    runs: dict[int, list[dict]] = {w: [] for w in a.workers}
    for r in range(a.repeats):
        for w in a.workers:  # interleaved: a drift in machine load hits every setting alike
            res = one_setting(a, root, teacher, w, f"r{r}_w{w}")
            runs[w].append(res)
            print(f"round {r + 1}: {w} worker(s): {res['trials']} trials in {res['wall_s']:.1f}s "
                  f"({res['trials_per_hour']:.0f}/h), mean trial {res['mean_trial_s']:.2f}s", flush=True)
    med = {w: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for w, rs in runs.items()}
    base = med[a.workers[0]]["trials_per_hour"]
    print()
    print(f"{'workers':>7} {'trials/h':>9} {'speed-up':>8} {'wall s':>7} {'mean trial s':>12} "
          f"{'overhead wall/Σtrial':>20} {'efficiency':>10}")
    for w, m in med.items():
        m["speedup"] = m["trials_per_hour"] / base
        print(f"{w:>7} {m['trials_per_hour']:>9.0f} {m['speedup']:>7.2f}× {m['wall_s']:>7.1f} {m['mean_trial_s']:>12.2f} "
              f"{m['overhead']:>20.3f} {m['efficiency']:>10.2f}")
    print()
    print("per worker (mean), seconds: start-up | in trials (first) | between trials | tail")
    for w, m in med.items():
        print(f"{w:>7} {m.get('startup_s', 0):>8.2f} | {m.get('in_trials_s', 0):>7.2f} ({m.get('first_trial_s', 0):.2f}) "
              f"| {m.get('between_trials_s', 0):>7.2f} | {m.get('tail_s', 0):>5.2f}")
    return write_result(a.out, {"args": vars(a), "median": {str(w): m for w, m in med.items()},
                                "runs": {str(w): r for w, r in runs.items()}})


if __name__ == "__main__":
    main()
