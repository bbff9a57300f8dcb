"""GTN: does one generic teacher distil better into a pool of students than a vanilla teacher of the same architecture
and training length?

Per seed, on one dataset:

1. a **vanilla teacher** (``teacher.arch``, CE, ``teacher_epochs``);
2. a **pool** of students of the ``stages`` space within ``max_params``: ``random`` random ones and the top
   ``searched`` of a short KD-guided search (random sampler, ``search_trials`` trials) guided by the vanilla teacher;
3. a **generic teacher**: the same architecture and epochs, trained from scratch by ``archkd teacher generic`` against
   a weight-sharing supernet of that pool;
4. every pool student distilled from scratch from each teacher with the same KD recipe, and tested.

Reported: both teachers' accuracy and training time (the one-off overhead of GTN), each student's test accuracy under
each teacher, and the paired difference (generic − vanilla) over all (seed, student) pairs with its standard error.

    python bench/gtn.py --dataset digits     # ~5 min on 2 cores
    python bench/gtn.py --dataset cifar10    # ../shared/data/cifar10-jpeg.zip, low fidelity, ~45 min

Writes ``bench/results/gtn_<dataset>.json`` after every seed.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import time
from typing import Any

from _common import bench_config, fill_presets, write_result  # noqa: E402  (bench/ is on sys.path when run as a script)

from archkd import api  # noqa: E402
from archkd.config import Config, set_key  # noqa: E402

PRESETS: dict[str, dict[str, Any]] = {
    "digits": {"arch": "resnet20", "teacher_epochs": 20, "student_epochs": 20, "data_fraction": 1.0,
               "teacher_fraction": 1.0, "search_trials": 8, "search_epochs": 3, "max_params": 30_000,
               "val_fraction": 0.1},
    # CIFAR-10 at CPU scale (one thread on a shared 2-core machine: ~15 min per seed): teachers see a fifth of the
    # training images 3 times, students a tenth twice; accuracies are far from converged
    "cifar10": {"arch": "resnet20", "teacher_epochs": 3, "student_epochs": 2, "data_fraction": 0.1,
                "teacher_fraction": 0.2, "search_trials": 4, "search_epochs": 1, "max_params": 20_000,
                "val_fraction": 0.05},
}
WIDTHS = [8, 12, 16, 24, 32, 48]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=sorted(PRESETS), default="digits")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--random", type=int, default=3, help="random students in the pool")
    p.add_argument("--searched", type=int, default=2, help="searched students in the pool")
    for k in PRESETS["digits"]:
        p.add_argument(f"--{k.replace('_', '-')}", dest=k, type=type(PRESETS["digits"][k]), default=None)
    p.add_argument("--generic", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides of the generic teacher's run, e.g. generic.condition=kd")
    p.add_argument("--out", help="JSON output (default bench/results/gtn_<dataset>.json)")
    return fill_presets(p.parse_args(argv), PRESETS, "gtn")


def base(args: argparse.Namespace, seed: int, name: str) -> Config:
    return bench_config("gtn", args.dataset, f"{name}_s{seed}", seed, args.val_fraction, [
        f"teacher.arch={args.arch}",
        f"teacher.train.epochs={args.teacher_epochs}", f"teacher.train.data_fraction={args.teacher_fraction}",
        f"train.epochs={args.student_epochs}", f"train.data_fraction={args.data_fraction}",
        f"budget.max_params={args.max_params}", f"search.space_kwargs={{widths: {WIDTHS}}}",
        f"generic.space_kwargs={{widths: {WIDTHS}}}"])


def one_seed(args: argparse.Namespace, seed: int) -> dict:
    log = None
    vanilla = api.train_teacher(base(args, seed, "vanilla"), log)
    cfg = base(args, seed, "search")
    shutil.rmtree(cfg.run_dir, ignore_errors=True)  # the teacher was just trained again: a new study
    cfg.teacher.path = vanilla["checkpoint"]
    for k, v in (("search.n_trials", args.search_trials), ("search.epochs", args.search_epochs),
                 ("search.data_fraction", args.data_fraction)):
        set_key(cfg, k, v)
    api.search(cfg, log)
    pool = [f"random:{args.random}", f"{cfg.run_dir / 'results.json'}:{args.searched}"]
    cfg = base(args, seed, "generic")
    cfg.generic.pool = pool
    for item in args.generic:
        set_key(cfg, *item.split("=", 1))
    generic = api.generic_teacher(cfg, log)
    students = []
    for m in generic["pool"]:
        row: dict[str, Any] = {"index": m["index"], "source": "random" if m["index"] < args.random else "searched",
                               "config": m["config"], "params": m["params"], "supernet_val_acc": m["supernet_val_acc"]}
        for label, teacher in (("vanilla", vanilla), ("generic", generic)):
            cfg = base(args, seed, f"kd_{label}_{m['index']}")
            cfg.teacher.path = teacher["checkpoint"]
            cfg.student.checkpoint = m["checkpoint"]  # the architecture only: student.init stays scratch
            r = api.distill(cfg, log)
            row[label] = r["test_acc"]
        row["diff"] = row["generic"] - row["vanilla"]
        students.append(row)
        print(f"  seed {seed} student {m['index']} ({row['source']}, {m['params']:,} params): vanilla "
              f"{row['vanilla']:.4f} generic {row['generic']:.4f}", flush=True)
    keep = ("val_acc", "test_acc", "seconds", "params")
    for t in (vanilla, generic):
        t["epoch_seconds"] = epoch_seconds(t)
    keep += ("epoch_seconds",)
    return {"seed": seed, "vanilla": {k: vanilla[k] for k in keep}, "generic": {k: generic[k] for k in keep},
            "overhead": epoch_seconds(generic) / epoch_seconds(vanilla), "path_entropy": generic["path_entropy"],
            "students": students}


def epoch_seconds(run: dict) -> float:
    """The median epoch's wall time: the overhead of GTN per epoch, free of the first epoch's warm-up."""
    return statistics.median(h["seconds"] for h in run["history"])


def summarise(runs: list[dict]) -> dict:
    diffs = [s["diff"] for r in runs for s in r["students"]]
    mean = statistics.mean(diffs)
    se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
    return {"pairs": len(diffs), "mean_diff": mean, "se_diff": se, "generic_wins": sum(d > 0 for d in diffs),
            "ties": sum(d == 0 for d in diffs),
            "mean_vanilla": statistics.mean(s["vanilla"] for r in runs for s in r["students"]),
            "mean_generic": statistics.mean(s["generic"] for r in runs for s in r["students"]),
            "teacher_test": {k: statistics.mean(r[k]["test_acc"] for r in runs) for k in ("vanilla", "generic")},
            "overhead": statistics.mean(r["overhead"] for r in runs)}


def print_tables(runs: list[dict], summary: dict) -> None:
    print("\n| seed | teacher | test acc | s / epoch (median) | pool mean KD test acc |")
    print("|---|---|---|---|---|")
    for r in runs:
        for k in ("vanilla", "generic"):
            mean = statistics.mean(s[k] for s in r["students"])
            print(f"| {r['seed']} | {k} | {100 * r[k]['test_acc']:.2f} | {r[k]['epoch_seconds']:.2f} | {100 * mean:.2f} |")
    print("\n| seed | student | source | params | supernet val | KD from vanilla | KD from generic | Δ |")
    print("|---|---|---|---|---|---|---|---|")
    for r in runs:
        for s in r["students"]:
            print(f"| {r['seed']} | {s['index']} | {s['source']} | {s['params']:,} | {100 * s['supernet_val_acc']:.1f} | "
                  f"{100 * s['vanilla']:.2f} | {100 * s['generic']:.2f} | {100 * s['diff']:+.2f} |")
    print(f"\npaired Δ (generic − vanilla) over {summary['pairs']} pairs: {100 * summary['mean_diff']:+.2f} ± "
          f"{100 * summary['se_diff']:.2f} points (s.e.); generic better in {summary['generic_wins']}, ties "
          f"{summary['ties']}; teachers' test acc vanilla {100 * summary['teacher_test']['vanilla']:.2f} / generic "
          f"{100 * summary['teacher_test']['generic']:.2f}; GTN epoch time × {summary['overhead']:.2f} of vanilla")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    runs, t0 = [], time.perf_counter()
    for seed in args.seeds:
        print(f"seed {seed}", flush=True)
        runs.append(one_seed(args, seed))
        summary = summarise(runs)
        write_result(args.out, {"bench": "gtn", "dataset": args.dataset, "args": vars(args), "runs": runs,
                                "summary": summary, "seconds": time.perf_counter() - t0})
    print_tables(runs, summary)


if __name__ == "__main__":
    main()
