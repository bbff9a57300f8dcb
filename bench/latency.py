"""Latency: how repeatable one measurement is, and how well the predictor stands in for measuring.

1. **Repeatability** — per space, ``--networks`` random networks, each measured ``--rounds`` times under the archkd
   protocol (10 warm-up, 50 timed calls, median) and under the cheaper 5/30 the search budgets used before; the
   coefficient of variation (std / mean) of a network's medians across rounds, averaged and worst over networks, and
   the cost of one measurement. It bounds what any predictor can reach: a network whose own measurements vary by
   20 % cannot be predicted within ±10 % of one of them.
2. **Predictor accuracy** — per space and runtime, ``--samples`` random networks measured; the predictor
   (``archkd.measure.predictor``: per-block lookup table + non-negative linear correction) is fitted on the first 70 %
   and scored on the held-out 30 %: share within ±10 % of measured, median error, Kendall τ. Beside it, on the same
   split, the usual proxy: latency linear in FLOPs (fitted the same way).

    python bench/latency.py                       # digits input (1×8×8), all four spaces, both runtimes
    python bench/latency.py --input-shape 3 32 32 --spaces stages mnas

Writes ``bench/results/latency.json``. One torch thread, one ONNX Runtime thread, batch 1.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from scipy.optimize import nnls
from scipy.stats import kendalltau

from _common import RESULTS, write_result  # noqa: E402  (bench/ is on sys.path when run as a script)

from archkd.measure import count_flops, measure_latency  # noqa: E402
from archkd.measure.predictor import LatencyPredictor  # noqa: E402
from archkd.models import build_from_spec  # noqa: E402
from archkd.search import sample_latencies  # noqa: E402
from archkd.spaces import create_space  # noqa: E402

PROTOCOLS = {"10/50 (archkd)": (10, 50), "5/30": (5, 30)}


def repeatability(args: argparse.Namespace) -> list[dict]:
    rows = []
    for space_name, runtime in [(s, r) for s in args.spaces for r in args.runtimes]:
        space = create_space(space_name)
        rng = np.random.default_rng(args.seed + 1)  # networks other than the predictor's
        models = [space.build(space.sample_rng(rng), args.input_shape, 10) for _ in range(args.networks)]
        for name, (warmup, repeats) in PROTOCOLS.items():
            cvs, t0 = [], time.perf_counter()
            for m in models:
                med = [measure_latency(m, args.input_shape, runtime=runtime, warmup=warmup, repeats=repeats).median_ms
                       for _ in range(args.rounds)]
                cvs.append(statistics.stdev(med) / statistics.mean(med))
            rows.append({"space": space_name, "runtime": runtime, "protocol": name, "mean_cv": float(np.mean(cvs)),
                         "max_cv": float(np.max(cvs)),
                         "seconds_per_measurement": (time.perf_counter() - t0) / (len(models) * args.rounds)})
            print(f"  repeatability {space_name:<12} {runtime:<11} {name:<15} mean CV {rows[-1]['mean_cv']:.2%}, "
                  f"max {rows[-1]['max_cv']:.2%}", flush=True)
    return rows


def _score(pred: np.ndarray, t: np.ndarray) -> dict:
    rel = np.abs(pred - t) / t
    return {"within_10pct": float(np.mean(rel <= 0.1)), "median_rel_error": float(np.median(rel)),
            "kendall_tau": float(kendalltau(pred, t).statistic)}


def accuracy(args: argparse.Namespace) -> list[dict]:
    rows = []
    for space_name in args.spaces:
        space = create_space(space_name)
        n = args.samples if space_name != "nago" else min(args.samples, args.nago_samples)
        for runtime in args.runtimes:
            t0 = time.perf_counter()
            pred = LatencyPredictor(runtime=runtime, space=space_name, input_shape=list(args.input_shape))
            drawn = sample_latencies(pred, space, args.input_shape, 10, n, seed=args.seed)
            k = int(round(0.7 * len(drawn)))
            fit, test = drawn[:k], drawn[k:]
            pred.fit([s.features for s in fit], [s.latency_ms for s in fit])
            v = pred.validate([s.features for s in test], [s.latency_ms for s in test])
            flops = np.array([count_flops(build_from_spec(s.spec), args.input_shape).flops for s in drawn], float)
            t = np.array([s.latency_ms for s in drawn])
            X = np.stack([np.ones_like(flops), flops / flops.max()], 1)
            w, _ = nnls(X[:k] / t[:k, None], np.ones(k))
            rows.append({"space": space_name, "runtime": runtime, "networks": len(drawn), "held_out": len(test),
                         "blocks_timed": len(pred.lut), "latency_range_ms": [float(t.min()), float(t.max())],
                         "predictor": {"within_10pct": v.within_10pct, "median_rel_error": v.median_rel_error,
                                       "kendall_tau": v.kendall_tau},
                         "flops_linear": _score(X[k:] @ w, t[k:]), "seconds": time.perf_counter() - t0})
            r = rows[-1]
            print(f"  {space_name:<12} {runtime:<11} predictor {v.within_10pct:.0%} within ±10 %, τ "
                  f"{v.kendall_tau:.2f} | FLOPs-linear {r['flops_linear']['within_10pct']:.0%}, τ "
                  f"{r['flops_linear']['kendall_tau']:.2f} ({r['seconds']:.0f} s)", flush=True)
    return rows


def tables(rep: list[dict], acc: list[dict]) -> str:
    out = ["| space | runtime | protocol (warm-up/timed) | mean CV | worst CV | s per measurement |",
           "|---|---|---|---|---|---|"]
    out += [f"| {r['space']} | {r['runtime']} | {r['protocol']} | {r['mean_cv']:.2%} | {r['max_cv']:.2%} | "
            f"{r['seconds_per_measurement']:.3f} |" for r in rep]
    out += ["", "| space | runtime | held out | predictor within ±10 % | median error | Kendall τ | FLOPs-linear "
            "within ±10 % | FLOPs-linear τ | latency range (ms) |", "|---|---|---|---|---|---|---|---|---|"]
    out += [f"| {r['space']} | {r['runtime']} | {r['held_out']} | **{r['predictor']['within_10pct']:.0%}** | "
            f"{r['predictor']['median_rel_error']:.1%} | {r['predictor']['kendall_tau']:.2f} | "
            f"{r['flops_linear']['within_10pct']:.0%} | {r['flops_linear']['kendall_tau']:.2f} | "
            f"{r['latency_range_ms'][0]:.3f}–{r['latency_range_ms'][1]:.3f} |" for r in acc]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--spaces", nargs="+", default=["stages", "mnas", "multifamily", "nago"])
    p.add_argument("--runtimes", nargs="+", default=["onnxruntime", "torch"])
    p.add_argument("--input-shape", type=int, nargs="+", default=[1, 8, 8])
    p.add_argument("--samples", type=int, default=150, help="networks measured per space and runtime (70%% fit)")
    p.add_argument("--nago-samples", type=int, default=60, help="cap for nago, whose networks are slow to export")
    p.add_argument("--networks", type=int, default=8, help="networks per space of the repeatability part")
    p.add_argument("--rounds", type=int, default=5, help="measurements of each network")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS / "latency.json"))
    args = p.parse_args()
    args.input_shape = tuple(args.input_shape)
    t0 = time.perf_counter()
    rep, acc = repeatability(args), accuracy(args)
    text = tables(rep, acc)
    print("\n" + text, flush=True)
    write_result(args.out, {"args": {k: v for k, v in vars(args).items()}, "repeatability": rep, "accuracy": acc,
                            "table": text, "seconds": time.perf_counter() - t0})


if __name__ == "__main__":
    main()
