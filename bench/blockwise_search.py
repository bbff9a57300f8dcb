"""Blockwise-scored search against trial-trained search at about equal search time, the winners distilled with the
reference set's recipe and tested beside the reference's hand-designed students.

Each arm is ``KIND:TRIALS``: ``trained:8`` is an ``archkd search`` whose trials KD-train each student
(``search.fidelity=trained``) at the trial fidelity, ``blockwise:N`` one whose trials are rated by blockwise KD
(``search.fidelity=blockwise``) at the same epochs and data; N is chosen so both arms spend about the same search time
(``bench/rank_fidelity.py`` measures the cost of each rating; the table reports the time each arm actually took).
Same space (``stages``), budget (the reference's 80k parameters), teacher, data and seed; random sampling; the winner
distilled with the reference recipe (8 epochs on a fifth of the images) and tested. Search cost is the CPU time of
the search (one thread per process), which stays comparable when other jobs share the cores. The hand-designed
baseline is the reference set's resnet8 (``--reference``), trained with the same recipe.

    python bench/blockwise_search.py --dataset cifar10 --data D.zip --teacher T.pt --arms trained:8 blockwise:10 \\
        --reference bench/data/cifar10_reference.json
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path
from typing import Any

from _common import fill_presets  # noqa: E402  (bench/ is on sys.path when run as a script)
from _searchbench import Setup, add_run_args, bench_parser, run_bench, shared_config  # noqa: E402
from rank_fidelity import reference_accuracy  # noqa: E402

from archkd import api  # noqa: E402
from archkd.config import Config  # noqa: E402
from archkd.models import build_from_spec  # noqa: E402

PRESETS: dict[str, dict[str, Any]] = {
    "cifar10": {"arms": ["trained:8", "blockwise:10"], "trial_epochs": 1, "trial_data_fraction": 0.2,
                "final_epochs": 8, "final_data_fraction": 0.2, "max_params": 80_000, "val_fraction": 0.1},
    "digits": {"arms": ["trained:4", "blockwise:12"], "trial_epochs": 1, "trial_data_fraction": 1.0,
               "final_epochs": 10, "final_data_fraction": 1.0, "max_params": 80_000, "val_fraction": 0.1},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = bench_parser(__doc__, PRESETS, "cifar10", ("trial_epochs", "trial_data_fraction", "final_epochs",
                                                    "final_data_fraction", "max_params", "val_fraction"))
    p.add_argument("--arms", nargs="+", metavar="KIND:TRIALS")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--reference", nargs="+", help="the reference set's JSON (or its shard files): the baseline")
    add_run_args(p)
    args = fill_presets(p.parse_args(argv), PRESETS, "blockwise_search")
    args.methods = args.arms
    return args


def base_config(args: argparse.Namespace, runs_dir: Path) -> Config:
    cfg = shared_config(args, runs_dir)
    cfg.search.top_k, cfg.search.check_fidelity = 0, 0
    return cfg


def run_one(st: Setup, arm: str, seed: int) -> dict:
    """The search alone (its CPU time: one thread, whatever else the machine runs), then its winner distilled with the
    reference recipe exactly as ``bench/reference.py`` distils its students."""
    kind, n = arm.split(":")
    cfg = copy.deepcopy(st.cfg)
    cfg.name, cfg.seed = f"{kind}-s{seed}", seed
    cfg.search.fidelity, cfg.search.n_trials = kind, int(n)
    c0, t0 = time.process_time(), time.perf_counter()
    found = api.search(cfg, log=st.log, teacher=st.teacher, data=st.data)
    search_cpu, search_wall = time.process_time() - c0, time.perf_counter() - t0
    best = found["best"]
    final_cfg = copy.deepcopy(cfg)
    final_cfg.name = f"{kind}-s{seed}-final"
    won = api.distill(final_cfg, log=st.log, teacher=st.teacher, data=st.data, student=build_from_spec(best["spec"]))
    done = [t for t in found["trials"] if t["state"] == "COMPLETE"]
    return {"method": arm, "seed": seed, "search_cpu_seconds": search_cpu, "search_seconds": search_wall,
            "seconds": time.perf_counter() - t0, "trials": len(done), "winner": best["number"],
            "winner_spec": best["spec"], "params": best["params"], "test_acc": won["test_acc"],
            "val_acc": won["val_acc"],
            "blocks": {"trained": sum((t.get("blockwise") or {}).get("trained", 0) for t in done),
                       "reused": sum((t.get("blockwise") or {}).get("reused", 0) for t in done)}
            if kind == "blockwise" else None}


def summarize(rows: list[dict], reference: dict[str, dict[int, float]]) -> dict[str, Any]:
    arms: dict[str, Any] = {}
    for arm in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == arm]
        accs = [r["test_acc"] for r in mine]
        arms[arm] = {"seeds": len(mine), "test_acc": statistics.fmean(accs),
                     "test_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                     "search_minutes": statistics.fmean(r["search_seconds"] for r in mine) / 60,
                     "search_cpu_minutes": statistics.fmean(r["search_cpu_seconds"] for r in mine) / 60,
                     "trials": statistics.fmean(r["trials"] for r in mine),
                     "params": statistics.fmean(r["params"] for r in mine)}
    base = {k: v for k, v in reference.items() if not k.startswith("stages")}
    hand = {k: {"seeds": len(v), "test_acc": statistics.fmean(v.values()),
                "test_std": statistics.stdev(v.values()) if len(v) > 1 else 0.0} for k, v in base.items()}
    return {"arms": arms, "hand": hand}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    def finish(rows: list[dict], teacher: dict, seconds: float) -> dict:
        s = summarize(rows, reference_accuracy(args.reference))
        lines = [f"Blockwise vs trial-trained search — {args.dataset}, stages space within {args.max_params:,} params, "
                 f"trials at {args.trial_epochs} epoch(s) × {args.trial_data_fraction:g} data, winner "
                 f"{args.final_epochs} epochs × {args.final_data_fraction:g}; teacher test {teacher['test_acc']:.4f}",
                 "| search | seeds | trials | search CPU min | winner params | winner test acc |", "|---|---|---|---|---|---|"]
        for arm, r in s["arms"].items():
            lines.append(f"| {arm} | {r['seeds']} | {r['trials']:.0f} | {r['search_cpu_minutes']:.1f} | "
                         f"{r['params']:,.0f} | {100 * r['test_acc']:.2f} ± {100 * r['test_std']:.2f} % |")
        for name, r in s["hand"].items():
            lines.append(f"| {name} (reference set) | {r['seeds']} | — | — | — | "
                         f"{100 * r['test_acc']:.2f} ± {100 * r['test_std']:.2f} % |")
        return {"summary": s, "table": "\n".join(lines)}

    run_bench(args, "blockwise_search", base_config,
              [(a, run_one) for a in args.arms],
              lambda r: (f"{r['method']:<14} seed {r['seed']}: winner test {r['test_acc']:.4f} after "
                         f"{r['trials']} trials in {r['search_cpu_seconds'] / 60:.1f} CPU min"), finish)


if __name__ == "__main__":
    main()
