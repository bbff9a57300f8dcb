"""AutoKD: Bayesian optimisation of a NAGO student *family* and its KD recipe, against AKD and random search.

Every method gets the same budget of **trained networks** (AutoKD trains ``family_size`` networks per trial, AKD one)
and the same parameter budget, with the same teacher, data, trial epochs and seeds:

1. ``autokd``:    TPE + Hyperband over trained epochs (η = 2) on the 8 NAGO generator dims + KD temperature and α;
2. ``autokd-gp``: Optuna's GP sampler on the same vector, every family trained to the end;
3. ``random``:    random search on the same vector with the same family objective (the baseline of the paper);
4. ``akd``:       AKD's RL controller on its MnasNet-style space, one network per trial, KD-guided.

For each (method, seed): the best-so-far validation accuracy after each trained network (a family member, or a
fraction of one for a trial Hyperband stopped early), then the winner re-trained with the full KD recipe and tested.
The second table is the paper's headline at our scale: the smallest final student within 1 point of the teacher's
test accuracy, with its parameters and peak activation memory against the teacher's (or, honestly, that none got
there).

    python bench/autokd.py --dataset digits     # resnet20 teacher (cached in bench/results/), ~25 min on 2 cores
    python bench/autokd.py --dataset cifar10    # ../shared data and teacher, low fidelity

Writes ``bench/results/autokd_<dataset>.json`` after every run and the library's log beside it.
"""
from __future__ import annotations

import argparse
import copy
import statistics
from typing import Any


from _common import fill_presets  # noqa: E402  (bench/ is on sys.path when run as a script)
from _searchbench import SEARCH_PRESETS, Setup, add_run_args, bench_parser, run_bench, search_and_distill, shared_config  # noqa: E402

from archkd.config import Config, load_config, method_presets  # noqa: E402

# method -> config overrides (on top of the shared base); the AutoKD methods bring their preset (space nago, KD recipe)
METHODS: dict[str, list[str]] = {
    "autokd": ["search.method=autokd"],
    "autokd-gp": ["search.method=autokd-gp"],
    "random": ["search.method=random", "search.space=nago"],  # + the AutoKD recipe dims (method_config)
    "akd": ["search.method=akd"],  # AKD's own preset: mnas space, latency-aware reward, batch scaled to the trials
}
# On CIFAR-10 a NAGO network at 150k params trains at ~110 images/s on one thread (~80 s a trial); 8 networks = 4
# families of 2, the default trial count.
PRESETS: dict[str, dict[str, Any]] = {
    "digits": {**SEARCH_PRESETS["digits"], "networks": 12, "max_params": 100_000},
    "cifar10": {**SEARCH_PRESETS["cifar10"], "networks": 8, "max_params": 150_000},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = bench_parser(__doc__, PRESETS, "digits", ("trial_epochs", "search_data_fraction", "final_epochs",
                                                   "final_data_fraction", "final_bn_recalibration", "max_params",
                                                   "val_fraction"))
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--networks", type=int, help="trained networks per search (the budget every method gets)")
    p.add_argument("--family-size", type=int, default=2, help="k: networks sampled per AutoKD configuration")
    add_run_args(p)
    return fill_presets(p.parse_args(argv), PRESETS, "autokd")


def method_config(base: Config, args: argparse.Namespace, method: str, seed: int) -> Config:
    cfg = load_config(None, METHODS[method], base=copy.deepcopy(base))
    cfg.name, cfg.seed = f"{method}-s{seed}", seed
    family = cfg.search.space == "nago"
    if family and not cfg.search.recipe:  # random search over the same vector as AutoKD's
        cfg.search.recipe = copy.deepcopy(method_presets()["autokd"]["search.recipe"])
    if family:
        cfg.search.space_kwargs = {"family_size": args.family_size}
    cfg.search.n_trials = args.networks // (args.family_size if family else 1)
    return cfg


def curve(trials: list[dict], epochs: int, family_size: int) -> list[tuple[float, float]]:
    """(trained networks so far, best single-network validation accuracy so far), trial by trial in order.

    A complete family counts its k members and its best member's accuracy; a pruned trial counts the epochs it
    trained (its last reported step) as a fraction of networks and its last running mean."""
    out, n, best = [], 0.0, 0.0
    for t in sorted(trials, key=lambda t: t["number"]):
        if t["state"] == "COMPLETE":
            n += len(t.get("family_accs") or [0])
            best = max(best, max(t.get("family_accs") or [t["val_acc"] or 0.0]))
        elif t["state"] == "PRUNED":
            n += (t.get("steps") or epochs) / epochs
            best = max(best, t["val_acc"] or 0.0)
        else:
            continue
        out.append((round(n, 3), best))
    return out


def run_one(st: Setup, args: argparse.Namespace, method: str, seed: int) -> dict:
    cfg = method_config(st.cfg, args, method, seed)
    found, t_search, final = search_and_distill(st, cfg)
    best = found["best"]
    k = args.family_size if cfg.search.space == "nago" else 1
    spreads = [t["family_std"] for t in found["trials"] if t.get("family_std") is not None]
    return {"method": method, "seed": seed, "n_trials": cfg.search.n_trials, "family_size": k,
            "curve": curve(found["trials"], cfg.search.epochs, k), "best_trial": best["number"],
            "best_config": best["config"], "best_recipe": best.get("recipe"), "search_val_acc": best["val_acc"],
            "family_spread_mean": statistics.fmean(spreads) if spreads else None,
            "final_val_acc": final["val_acc"], "final_test_acc": final["test_acc"], "params": final["params"],
            "peak_activation_bytes": final["peak_activation_bytes"], "student": final["spec"]["name"],
            "search_seconds": t_search, "final_seconds": final["seconds"],
            "states": {s: sum(t["state"] == s for t in found["trials"]) for s in ("COMPLETE", "PRUNED", "INFEASIBLE")}}


def best_at(c: list[tuple[float, float]], n: float) -> float:
    """Best-so-far accuracy once ``n`` networks were trained (the last point at or below n)."""
    vals = [acc for k, acc in c if k <= n + 1e-9]
    return vals[-1] if vals else 0.0


def summarize(rows: list[dict], methods: list[str], networks: int) -> dict:
    marks = sorted({max(1, networks // 4), networks // 2, networks})
    out = {}
    for m in methods:
        rs = [r for r in rows if r["method"] == m]
        if not rs:
            continue
        out[m] = {"seeds": len(rs), **{f"best_val@{n}": statistics.fmean(best_at(r["curve"], n) for r in rs)
                                        for n in marks},
                  "final_test_acc": statistics.fmean(r["final_test_acc"] for r in rs),
                  "final_test_std": statistics.stdev([r["final_test_acc"] for r in rs]) if len(rs) > 1 else 0.0,
                  "params_mean": statistics.fmean(r["params"] for r in rs),
                  "search_seconds_mean": statistics.fmean(r["search_seconds"] for r in rs),
                  "family_spread_mean": (statistics.fmean(r["family_spread_mean"] for r in rs)
                                         if all(r["family_spread_mean"] is not None for r in rs) else None)}
    return {"marks": marks, "methods": out}


def smallest_within(rows: list[dict], teacher: dict, points: float = 0.01) -> dict:
    ok = [r for r in rows if r["final_test_acc"] >= teacher["test_acc"] - points]
    if not ok:
        closest = max(rows, key=lambda r: r["final_test_acc"])
        return {"found": False, "closest": {k: closest[k] for k in ("method", "seed", "final_test_acc", "params",
                                                                     "peak_activation_bytes")}}
    r = min(ok, key=lambda r: r["params"])
    return {"found": True, **{k: r[k] for k in ("method", "seed", "final_test_acc", "params", "peak_activation_bytes")},
            "params_ratio": teacher["params"] / r["params"],
            "memory_ratio": (teacher["peak_activation_bytes"] / r["peak_activation_bytes"]
                             if teacher["peak_activation_bytes"] else None)}


def format_tables(summary: dict, small: dict, teacher: dict, title: str) -> str:
    marks = summary["marks"]
    head = f"{'method':<10} {'seeds':>5} " + " ".join(f"{'best val @' + str(n):>12}" for n in marks) + \
        f" {'final test':>16} {'params':>9} {'spread':>7} {'search s':>8}"
    lines = [title, head, "-" * len(head)]
    for m, s in summary["methods"].items():
        spread = "-" if s["family_spread_mean"] is None else f"{s['family_spread_mean']:.4f}"
        lines.append(f"{m:<10} {s['seeds']:>5} " + " ".join(f"{s[f'best_val@{n}']:>12.4f}" for n in marks)
                     + f" {s['final_test_acc']:>8.4f} ± {s['final_test_std']:.4f} {s['params_mean']:>9.0f} "
                     f"{spread:>7} {s['search_seconds_mean']:>8.0f}")
    lines.append("best val @n: best single-network validation accuracy after n trained networks (mean over seeds); "
                 "spread: mean std of the k members' accuracies within a family.")
    peak = teacher["peak_activation_bytes"]
    t = f"teacher {teacher['name']}: test {teacher['test_acc']:.4f}, {teacher['params']:,} params, peak activations " \
        + (f"{peak / 1024:.0f} KiB" if peak else "n/a (TorchScript: no forward hooks)")
    if small["found"]:
        lines.append(f"smallest final student within 1 point of the teacher: {small['method']} seed {small['seed']}, "
                     f"test {small['final_test_acc']:.4f}, {small['params']:,} params "
                     f"({small['params_ratio']:.1f}× fewer), peak activations "
                     f"{small['peak_activation_bytes'] / 1024:.0f} KiB"
                     + (f" ({small['memory_ratio']:.1f}× less)" if small["memory_ratio"] else "") + f"; {t}")
    else:
        c = small["closest"]
        lines.append(f"no final student came within 1 point of the teacher at this scale; closest: {c['method']} "
                     f"seed {c['seed']}, test {c['final_test_acc']:.4f}, {c['params']:,} params; {t}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    def finish(rows: list[dict], teacher: dict, seconds: float) -> dict:
        summary = summarize(rows, args.methods, args.networks)
        small = smallest_within(rows, teacher)
        title = (f"AutoKD benchmark — {args.dataset}, {args.networks} networks per search, {len(args.seeds)} seeds, "
                 f"{seconds / 60:.1f} min")
        return {"summary": summary, "smallest_within_1pt": small, "table": format_tables(summary, small, teacher, title)}

    run_bench(args, "autokd", shared_config,
              [(m, lambda st, m, seed: run_one(st, args, m, seed)) for m in args.methods],
              lambda r: (f"{r['method']:<10} seed {r['seed']}: best val {r['search_val_acc']:.4f} -> final test "
                         f"{r['final_test_acc']:.4f}, {r['params']:,} params, {r['states']}, search "
                         f"{r['search_seconds']:.0f} s"), finish)


if __name__ == "__main__":
    main()
