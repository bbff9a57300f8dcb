"""The fidelity check of a search at two trial fidelities: does it tell a fidelity that ranks students from one that
does not?

For each trial fidelity (``EPOCHSxFRACTION``: trial epochs × share of the training images), one ``archkd search``
with the same space, budget, teacher, data, seed and full recipe, ``--top-k 1`` and ``search.check_fidelity=K``:
the finalist and K more trials spanning the trial accuracies are re-trained with the full recipe, and the search
reports Kendall's τ between trial and full-recipe validation accuracy with its bootstrap interval, and whether it
trusts its own ranking (``archkd.search.fidelity``). The table puts the two side by side with what each cost.

    python bench/fidelity.py --dataset cifar10 --data cifar10-jpeg.zip --teacher T.pt   # ~40 min on one core
    python bench/fidelity.py --dataset digits                                            # ~3 min

Writes ``bench/results/fidelity_<dataset>.json`` after every search (re-running resumes) and the log beside it.
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Any

from _common import fill_presets  # noqa: E402  (bench/ is on sys.path when run as a script)
from _searchbench import Setup, add_run_args, bench_parser, run_bench, shared_config  # noqa: E402

from archkd import api  # noqa: E402
from archkd.config import Config  # noqa: E402

PRESETS: dict[str, dict[str, Any]] = {
    # the cheap fidelity is one a user short of time might pick (one pass over 2 % of the images); the other the
    # benchmarks' search fidelity (one pass over a fifth); the full recipe 3 epochs on a fifth
    "cifar10": {"fidelities": ["1x0.02", "1x0.2"], "trials": 12, "check": 6, "final_epochs": 3,
                "final_data_fraction": 0.2, "max_params": 150_000, "val_fraction": 0.1},
    "digits": {"fidelities": ["1x0.05", "6x1.0"], "trials": 12, "check": 6, "final_epochs": 20,
               "final_data_fraction": 1.0, "max_params": 60_000, "val_fraction": 0.1},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = bench_parser(__doc__, PRESETS, "digits", ("trials", "final_epochs", "final_data_fraction", "max_params",
                                                   "val_fraction"))
    p.add_argument("--fidelities", nargs="+", metavar="EPOCHSxFRACTION")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--space", default="stages")
    p.add_argument("--check", type=int, help="search.check_fidelity: trials re-trained besides the finalist")
    add_run_args(p)
    args = fill_presets(p.parse_args(argv), PRESETS, "fidelity")
    args.methods = args.fidelities  # the jobs of this benchmark (resuming may add or drop some)
    return args


def fidelity(text: str) -> tuple[int, float]:
    epochs, frac = text.lower().split("x")
    return int(epochs), float(frac)


def base_config(args: argparse.Namespace, runs_dir: Path) -> Config:
    cfg = shared_config(args, runs_dir)
    cfg.search.space = args.space
    cfg.search.top_k = 1
    cfg.search.check_fidelity = args.check
    return cfg


def run_one(st: Setup, name: str, seed: int) -> dict:
    cfg = copy.deepcopy(st.cfg)
    cfg.name, cfg.seed = f"f{name}-s{seed}", seed
    cfg.search.epochs, cfg.search.data_fraction = fidelity(name)
    t0 = time.perf_counter()
    found = api.search(cfg, log=st.log, teacher=st.teacher, data=st.data)
    done = [t for t in found["trials"] if t["state"] == "COMPLETE"]
    return {"method": name, "seed": seed, "fidelity": name, "check": st.cfg.search.check_fidelity,
            "seconds": time.perf_counter() - t0,
            "trial_seconds": sum(t.get("seconds") or 0.0 for t in done), "fidelity_check": found["fidelity_check"],
            "finalist": found["top_k"][0], "trial_val_acc_range": [min(t["val_acc"] for t in done),
                                                                  max(t["val_acc"] for t in done)]}


def format_table(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [f"Fidelity check — {args.dataset}, {args.trials} trials, the finalist and the check's trials re-trained "
             f"with the full recipe ({args.final_epochs} epochs × {args.final_data_fraction:g} data)",
             "| trial fidelity | seed | trial val acc range | Kendall τ (trial vs full) | 95 % interval | verdict | "
             "search s (trials) | check s | finalist test acc |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fc, lo_hi = r["fidelity_check"] or {}, r["trial_val_acc_range"]
        ci = fc.get("ci") or [float("nan")] * 2
        lines.append(f"| {r['fidelity']} | {r['seed']} | {lo_hi[0]:.3f}–{lo_hi[1]:.3f} | {fc.get('tau', float('nan')):+.2f} "
                     f"| [{ci[0]:+.2f}, {ci[1]:+.2f}] | {'trusted' if fc.get('trusted') else 'not trusted'} | "
                     f"{r['trial_seconds']:.0f} | {fc.get('seconds', 0):.0f} | {r['finalist']['test_acc']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    def finish(rows: list[dict], teacher: dict, seconds: float) -> dict:
        return {"table": format_table(rows, args)}

    run_bench(args, "fidelity", base_config,
              [(f, run_one) for f in args.fidelities],
              lambda r: (f"{r['fidelity']:<8} seed {r['seed']}: τ {(r['fidelity_check'] or {}).get('tau', float('nan')):+.2f}"
                         f" ({'trusted' if (r['fidelity_check'] or {}).get('trusted') else 'not trusted'}), "
                         f"{r['seconds'] / 60:.1f} min"), finish)


if __name__ == "__main__":
    main()
