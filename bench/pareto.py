"""Multi-objective search: the Pareto front of NSGA-II and of multi-objective TPE against random search's, at equal
trials.

Every method searches the same space with ``search.objectives=[accuracy, COST]`` for the same number of trials, with
the same teacher, data, trial fidelity and seeds. Per seed, all methods' fronts are measured against **one**
reference point (accuracy 0; the cost at 1.1 × the largest feasible value any method saw in that seed), so their
hypervolumes compare: larger means the front dominates more of the accuracy–cost plane. Also per method: the front's
size, its best accuracy and its cheapest member, and the hypervolume after a quarter, half and all of the trials
(how fast each method builds its front).

The default cost is FLOPs, which is deterministic: latency measured on a loaded 2-core machine would make the fronts
differ by timing noise. ``--cost latency`` runs the deployment question (ONNX Runtime, one thread).

    python bench/pareto.py                      # digits, 24 trials, 3 seeds, ~10 min on one core
    python bench/pareto.py --cost latency --seeds 0

Writes ``bench/results/pareto_<dataset>.json`` after every search (re-running resumes) and the library's log beside it.
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

from archkd import api  # noqa: E402
from archkd.config import Config, load_config  # noqa: E402
from archkd.search.pareto import Objectives  # noqa: E402

METHODS: dict[str, list[str]] = {"nsga2": ["search.method=nsga2"], "tpe": ["search.method=tpe"],
                                 "random": ["search.method=random"]}
PRESETS: dict[str, dict[str, Any]] = {
    "digits": {"trials": 24, "trial_epochs": 6, "search_data_fraction": 1.0, "max_params": 60_000,
               "val_fraction": 0.1},
    "cifar10": {"trials": 16, "trial_epochs": 1, "search_data_fraction": 0.2, "max_params": 150_000,
                "val_fraction": 0.1},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = bench_parser(__doc__, PRESETS, "digits", ("trials", "trial_epochs", "search_data_fraction", "max_params",
                                                   "val_fraction"))
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--cost", choices=["flops", "latency", "params"], default="flops",
                   help="the objective traded against accuracy")
    p.add_argument("--space", default="stages")
    add_run_args(p)
    return fill_presets(p.parse_args(argv), PRESETS, "pareto")


def base_config(args: argparse.Namespace, runs_dir: Path) -> Config:
    cfg = shared_config(args, runs_dir)
    cfg.search.space = args.space
    cfg.search.objectives = ["accuracy", args.cost]
    return cfg


def run_search(st: Setup, method: str, seed: int) -> dict:
    cfg = load_config(None, METHODS[method], base=copy.deepcopy(st.cfg))
    cfg.name, cfg.seed = f"{method}-s{seed}", seed
    t0 = time.perf_counter()
    found = api.search(cfg, log=st.log, teacher=st.teacher, data=st.data)
    keep = ("number", "state", "val_acc", "params", "flops", "latency_ms", "duplicate_of", "proposer")
    return {"method": method, "seed": seed, "seconds": time.perf_counter() - t0,
            "trials": [{k: t.get(k) for k in keep} for t in found["trials"]],
            "front": found["pareto"]["trials"], "own_hypervolume": found["pareto"]["hypervolume"],
            "own_reference": found["pareto"]["reference"],
            "proposers": {p: sum(t.get("proposer") == p for t in found["trials"])
                          for p in sorted({str(t.get("proposer")) for t in found["trials"]})}}


def hypervolume_at(obj: Objectives, trials: list[dict], ref: dict, n: int | None = None) -> float:
    """Hypervolume against ``ref`` of the front of the first ``n`` trained trials (all without ``n``): over-budget
    proposals cost no training and are not counted, as the search does not count them."""
    trained = sorted((t for t in trials if t["state"] == "COMPLETE"), key=lambda t: t["number"])[:n]
    return obj.hypervolume(obj.front(trained), ref)


def summarize(rows: list[dict], args: argparse.Namespace) -> dict:
    obj = Objectives.parse(["accuracy", args.cost])
    key = obj.keys[1]
    marks = sorted({max(1, args.trials // 4), args.trials // 2, args.trials})
    per_seed: dict[int, dict[str, dict]] = {}
    for seed in sorted({r["seed"] for r in rows}):
        mine = [r for r in rows if r["seed"] == seed]
        costs = [t[key] for r in mine for t in r["trials"] if t["state"] == "COMPLETE" and t.get(key) is not None]
        ref = {"accuracy": 0.0, args.cost: 1.1 * max(costs, default=1.0)}
        per_seed[seed] = {r["method"]: {"reference": ref, **{f"hv@{n}": hypervolume_at(obj, r["trials"], ref, n)
                                                              for n in marks},
                                        "front_size": len(obj.front(r["trials"])),
                                        "best_acc": max((t["val_acc"] or 0.0 for t in obj.front(r["trials"])),
                                                        default=0.0),
                                        "cheapest": min((t[key] for t in obj.front(r["trials"])), default=None)}
                          for r in mine}
    methods = [m for m in args.methods if any(m in s for s in per_seed.values())] + \
        sorted({r["method"] for r in rows} - set(args.methods))
    out: dict[str, Any] = {"cost": args.cost, "marks": marks, "per_seed": per_seed, "methods": {}}
    for m in methods:
        seeds = [s for s, d in per_seed.items() if m in d]
        hv = [per_seed[s][m][f"hv@{args.trials}"] for s in seeds]
        s_out = {"seeds": len(seeds), **{f"hv@{n}": statistics.fmean(per_seed[s][m][f"hv@{n}"] for s in seeds)
                                         for n in marks},
                 "hv_std": statistics.stdev(hv) if len(hv) > 1 else 0.0,
                 "front_size": statistics.fmean(per_seed[s][m]["front_size"] for s in seeds),
                 "best_acc": statistics.fmean(per_seed[s][m]["best_acc"] for s in seeds)}
        paired = [per_seed[s][m][f"hv@{args.trials}"] - per_seed[s]["random"][f"hv@{args.trials}"]
                  for s in seeds if "random" in per_seed[s]]
        if m != "random" and paired:
            s_out.update({"hv_minus_random": statistics.fmean(paired),
                          "hv_minus_random_std": statistics.stdev(paired) if len(paired) > 1 else 0.0,
                          "seeds_ahead_of_random": sum(d > 0 for d in paired)})
        out["methods"][m] = s_out
    return out


def format_table(summary: dict, title: str) -> str:
    marks = summary["marks"]
    lines = [title, "| method | seeds | " + " | ".join(f"hypervolume @{n} trials" for n in marks)
             + " | front size | best front acc | Δ hypervolume vs random (paired) |",
             "|---|---|" + "---|" * len(marks) + "---|---|---|"]
    for m, s in summary["methods"].items():
        diff = (f"{s['hv_minus_random']:+.4g} ± {s['hv_minus_random_std']:.2g} ({s['seeds_ahead_of_random']}/"
                f"{s['seeds']} seeds ahead)") if "hv_minus_random" in s else "-"
        cells = " | ".join(f"{s[f'hv@{n}']:.4g}" + (f" ± {s['hv_std']:.2g}" if n == marks[-1] else "") for n in marks)
        lines.append(f"| {m} | {s['seeds']} | {cells} | {s['front_size']:.1f} | {s['best_acc']:.4f} | {diff} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    def finish(rows: list[dict], teacher: dict, seconds: float) -> dict:
        summary = summarize(rows, args)
        title = (f"Pareto fronts — {args.dataset}, accuracy vs {args.cost}, {args.trials} trials per search, "
                 f"{len({r['seed'] for r in rows})} seeds, {seconds / 60:.1f} min (hypervolume against one "
                 "reference per seed: accuracy 0, 1.1 × the largest cost seen)")
        return {"summary": summary, "table": format_table(summary, title)}

    run_bench(args, "pareto", base_config,
              [(m, run_search) for m in args.methods],
              lambda r: (f"{r['method']:<8} seed {r['seed']}: front of {len(r['front'])}, own hypervolume "
                         f"{r['own_hypervolume']:.4g}, {r['seconds']:.0f} s"), finish)


if __name__ == "__main__":
    main()
