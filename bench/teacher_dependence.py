"""Teacher dependence (AKD's title claim): is the best student for KD a function of the teacher?

Two teachers of different families (``--teachers``, default a ResNet and a MobileNetV2), trained here by archkd on the
same data and seed. Per seed:

1. a KD-guided search with each teacher over the same space and budget. With ``--method random`` (the default) both
   searches draw *the same* candidates (same sampler seed), so the only difference between them is the teacher whose
   KD-trained accuracy ranks the candidates — a paired design; ``--method akd`` lets each controller steer;
2. each search's winner distilled from *both* teachers with the full recipe and tested: the 2×2 table of test
   accuracies (rows: the teacher that searched; columns: the teacher that distils).

The claim predicts a dominant diagonal: each teacher's own winner distils better from it than the other teacher's
winner does. Reported per seed and as the mean diagonal advantage
``[(A←A − B←A) + (B←B − A←B)] / 2`` (points), with how many seeds picked the same winner under both teachers (then the
table says nothing about the claim).

    python bench/teacher_dependence.py --dataset digits      # ~10 min on 2 cores
    python bench/teacher_dependence.py --dataset cifar10     # ../shared data, low fidelity

Writes ``bench/results/teacher_dependence_<dataset>.json`` after every seed. With ``--teacher-paths`` a re-run resumes:
finished searches and trainings are read back, an interrupted one continues from its last epoch. Seeds run as separate processes
(``--seeds 1 --out ..._s1.json``) are pooled with ``--combine a.json b.json ...``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from _common import bench_config, fill_presets, write_result  # noqa: E402  (bench/ is on sys.path when run as a script)

from archkd import api  # noqa: E402
from archkd.config import Config  # noqa: E402
from archkd.device import seed_everything  # noqa: E402
from archkd.models import build_from_spec  # noqa: E402
from archkd.proxies import rank_correlation  # noqa: E402

PRESETS: dict[str, dict[str, Any]] = {
    "digits": {"teacher_epochs": 30, "teacher_fraction": 1.0, "trials": 16, "trial_epochs": 2,
               "search_data_fraction": 1.0, "final_epochs": 15, "final_data_fraction": 1.0, "max_params": 100_000,
               "val_fraction": 0.1, "final_bn_recalibration": 0},
    # CIFAR-10 at CPU scale: teachers see 30 % of the images 6 times; a trial one epoch on 5 %, a winner 3 on 10 %.
    # A final training that short needs its BatchNorm statistics re-estimated before validation, as search trials do
    # (search.bn_recalibration): without it the running averages lag and every student predicted one class (10.00 %).
    "cifar10": {"teacher_epochs": 6, "teacher_fraction": 0.3, "trials": 8, "trial_epochs": 1,
                "search_data_fraction": 0.05, "final_epochs": 3, "final_data_fraction": 0.1, "max_params": 100_000,
                "val_fraction": 0.05, "final_bn_recalibration": 2048},
}
# mobilenetv2 trains at 15–35 img/s on CIFAR-10 here (2.2M params at full resolution): shufflenetv2 is the CPU choice
TEACHERS = {"digits": ["resnet20", "mobilenetv2"], "cifar10": ["resnet20", "shufflenetv2"]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=sorted(PRESETS), default="digits")
    p.add_argument("--teachers", nargs=2, help="two registry architectures (default: resnet20 and mobilenetv2 on "
                   "digits, resnet20 and shufflenetv2 on cifar10)")
    p.add_argument("--method", default="random", help="search.method of both searches (random: paired candidates)")
    p.add_argument("--space", default="mnas")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--teacher-paths", nargs=2, help="archkd checkpoints of the two teachers, instead of training them")
    p.add_argument("--fixed-teachers", action="store_true",
                   help="train each teacher once (seed 0) and reuse it for every seed (default: one per seed)")
    for k, v in PRESETS["digits"].items():
        p.add_argument(f"--{k.replace('_', '-')}", dest=k, type=type(v), default=None)
    p.add_argument("--out", help="JSON output (default bench/results/teacher_dependence_<dataset>.json)")
    p.add_argument("--combine", nargs="+", metavar="JSON",
                   help="train nothing: pool the seeds of these outputs (e.g. one process per seed) into one table")
    args = fill_presets(p.parse_args(argv), PRESETS, "teacher_dependence")
    args.teachers = args.teachers or TEACHERS[args.dataset]
    return args


def base(args: argparse.Namespace, seed: int, name: str) -> Config:
    return bench_config("teacher_dependence", args.dataset, f"{name}_s{seed}", seed, args.val_fraction, [
        f"teacher.train.epochs={args.teacher_epochs}",
        f"teacher.train.data_fraction={args.teacher_fraction}", f"train.epochs={args.final_epochs}",
        f"train.data_fraction={args.final_data_fraction}", f"train.bn_recalibration={args.final_bn_recalibration}",
        f"budget.max_params={args.max_params}",
        f"search.method={args.method}", f"search.space={args.space}", f"search.n_trials={args.trials}",
        f"search.epochs={args.trial_epochs}", f"search.data_fraction={args.search_data_fraction}",
        "budget.latency_runtime=torch"])


FIXED: dict[str, dict] = {}  # --fixed-teachers: each teacher's training result, trained at the first seed


def ranking(args: argparse.Namespace, seed: int) -> dict | None:
    """How much the teacher reorders the candidates: the two searches of a seed scored the same configurations (paired
    random search), so Kendall's τ between their validation accuracies is 1 when the teacher changes nothing.
    Read from the searches' ``results.json``, so it is also computed for runs written before it existed."""
    a, b = args.teachers
    acc = []
    for arch in (a, b):
        path = base(args, seed, f"search_{arch}").run_dir / "results.json"
        if not path.exists():
            return None
        acc.append({json.dumps(t["config"], sort_keys=True): t["val_acc"] for t in json.loads(path.read_text())["trials"]
                    if t["state"] == "COMPLETE" and t["val_acc"] is not None})
    paired = sorted(set(acc[0]) & set(acc[1]))
    if len(paired) < 3:
        return None
    r = rank_correlation([acc[0][k] for k in paired], [acc[1][k] for k in paired])
    return {"kendall_tau": r.kendall_tau, "paired_trials": r.n}


def one_seed(args: argparse.Namespace, seed: int) -> dict:
    teachers, winners = {}, {}
    for arch, path in zip(args.teachers, args.teacher_paths or []):
        teachers[arch] = {"checkpoint": path, "test_acc": None, "val_acc": None, "params": None, "seconds": None}
    for arch in [] if args.teacher_paths else args.teachers:
        t_seed = 0 if args.fixed_teachers else seed
        if args.fixed_teachers and arch in FIXED:
            teachers[arch] = FIXED[arch]
            continue
        cfg = base(args, t_seed, f"teacher_{arch}")
        cfg.teacher.arch = arch
        teachers[arch] = FIXED[arch] = api.train_teacher(cfg, None)
    for arch in args.teachers:
        cfg = base(args, seed, f"search_{arch}")
        if not args.teacher_paths:  # the teacher was just trained again: a new study
            shutil.rmtree(cfg.run_dir, ignore_errors=True)
        cfg.teacher.path = teachers[arch]["checkpoint"]
        found = api.search(cfg, None)
        winners[arch] = {"trial": found["best"]["number"], "config": found["best"]["config"],
                         "spec": found["best"]["student_spec"], "params": found["best"]["params"],
                         "search_val_acc": found["best"]["val_acc"]}
    table: dict[str, dict[str, float]] = {}
    for searched_by, w in winners.items():
        twin = next((k for k in table if winners[k]["config"] == w["config"]), None)
        if twin is not None:  # the same winner, initialisation and teachers: the same trainings, so the same row
            table[searched_by] = dict(table[twin])
            continue
        table[searched_by] = {}
        for distilled_by in args.teachers:
            cfg = base(args, seed, f"kd_{searched_by}_from_{distilled_by}")
            cfg.teacher.path = teachers[distilled_by]["checkpoint"]
            seed_everything(seed)  # one initialisation per (seed, architecture): the cells differ by teacher only
            r = api.distill(cfg, None, student=build_from_spec(w["spec"]), resume=bool(args.teacher_paths))
            table[searched_by][distilled_by] = r["test_acc"]
            teachers[distilled_by].update(test_acc=r["teacher_test_acc"], val_acc=r["teacher_val_acc"])
    a, b = args.teachers
    same = winners[a]["config"] == winners[b]["config"]
    advantage = ((table[a][a] - table[b][a]) + (table[b][b] - table[a][b])) / 2
    print(f"  seed {seed}: teachers {a} {teachers[a]['test_acc']:.4f}, {b} {teachers[b]['test_acc']:.4f}; "
          f"{a}-searched: {table[a][a]:.4f} from {a}, {table[a][b]:.4f} from {b}; {b}-searched: {table[b][a]:.4f} "
          f"from {a}, {table[b][b]:.4f} from {b}; diagonal advantage {100 * advantage:+.2f} points"
          + (" (same winner)" if same else ""), flush=True)
    return {"seed": seed, "teachers": {k: {m: v[m] for m in ("test_acc", "val_acc", "params", "seconds")}
                                       for k, v in teachers.items()},
            "winners": {k: {m: v[m] for m in ("trial", "config", "params", "search_val_acc")} for k, v in winners.items()},
            "table": table, "same_winner": same, "diagonal_advantage": advantage, "ranking": ranking(args, seed)}


def summarise(args: argparse.Namespace, runs: list[dict]) -> dict:
    a, b = args.teachers
    cells = {f"{s}<-{d}": [r["table"][s][d] for r in runs] for s in (a, b) for d in (a, b)}
    adv = [r["diagonal_advantage"] for r in runs]
    taus = [r["ranking"]["kendall_tau"] for r in runs if r.get("ranking")]
    return {"cells": {k: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0) for k, v in cells.items()},
            "diagonal_advantage": (statistics.mean(adv), statistics.stdev(adv) if len(adv) > 1 else 0.0),
            "diagonal_wins": sum(x > 0 for x in adv), "same_winner": sum(r["same_winner"] for r in runs),
            "teacher_test": {t: statistics.mean(r["teachers"][t]["test_acc"] for r in runs) for t in (a, b)},
            "ranking_tau": (statistics.mean(taus), statistics.stdev(taus) if len(taus) > 1 else 0.0) if taus else None}


def table_text(args: argparse.Namespace, s: dict, n: int, minutes: float | None) -> str:
    a, b = args.teachers
    pct = lambda m: f"{100 * m[0]:.2f} ± {100 * m[1]:.2f} %"  # noqa: E731
    lines = [f"Teacher dependence — {args.dataset}, {n} seeds, {args.method} search ({args.trials} trials) in "
             f"'{args.space}' within {args.max_params:,} params" + (f", {minutes:.0f} min" if minutes is not None else ""),
             f"| winner searched with ↓ / distilled from → | {a} (test {100 * s['teacher_test'][a]:.2f} %) | "
             f"{b} (test {100 * s['teacher_test'][b]:.2f} %) |", "|---|---|---|",
             f"| {a} | **{pct(s['cells'][f'{a}<-{a}'])}** | {pct(s['cells'][f'{a}<-{b}'])} |",
             f"| {b} | {pct(s['cells'][f'{b}<-{a}'])} | **{pct(s['cells'][f'{b}<-{b}'])}** |", "",
             f"diagonal advantage {100 * s['diagonal_advantage'][0]:+.2f} ± {100 * s['diagonal_advantage'][1]:.2f} "
             f"points (positive in {s['diagonal_wins']}/{n} seeds); same winner under both teachers in "
             f"{s['same_winner']}/{n} seeds"
             + (f"; Kendall τ between the two teachers' rankings of the same candidates {s['ranking_tau'][0]:.2f} ± "
                f"{s['ranking_tau'][1]:.2f}" if s["ranking_tau"] else "")]
    return "\n".join(lines)


def combine(args: argparse.Namespace) -> None:
    """One table from several outputs of the same benchmark (seeds run as separate processes)."""
    parts = [json.loads(Path(f).read_text()) for f in args.combine]
    for k, v in parts[0]["args"].items():
        if k in ("seeds", "out", "combine"):
            continue
        if len({str(p["args"].get(k)) for p in parts}) > 1:
            raise SystemExit(f"--combine: the outputs differ in {k}; pool runs of one configuration only")
        setattr(args, k, v)
    runs = sorted((r for p in parts for r in p["runs"]), key=lambda r: r["seed"])
    for r in runs:
        r["ranking"] = r.get("ranking") or ranking(args, r["seed"])
    s = summarise(args, runs)
    text = table_text(args, s, len(runs), None)  # the parts ran side by side, maybe resumed: no one duration
    print(text, flush=True)
    write_result(args.out, {"args": vars(args), "runs": runs, "summary": s, "table": text, "combined": args.combine})


def main() -> None:
    args = parse_args()
    if args.combine:
        return combine(args)
    t0 = time.perf_counter()
    runs = []
    for seed in args.seeds:
        runs.append(one_seed(args, seed))
        write_result(args.out, {"args": vars(args), "runs": runs, "summary": summarise(args, runs)})
    s = summarise(args, runs)
    text = table_text(args, s, len(runs), (time.perf_counter() - t0) / 60)
    print("\n" + text, flush=True)
    write_result(args.out, {"args": vars(args), "runs": runs, "summary": s, "table": text,
                            "seconds": time.perf_counter() - t0})


if __name__ == "__main__":
    main()
