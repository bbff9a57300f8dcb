"""A reference set of students: the ground truth every fidelity, proxy and method comparison is read against.

``bench/proxy.py`` measured its rankings against a reference that was itself noise (two seeds agreed at τ 0.05). This
script builds one that is not: ``--archs`` architectures of the ``stages`` space within the budget (distinct, drawn
with a fixed seed, rejection-sampled into the budget) plus hand-designed students (resnet8, wrn_16_1), each distilled
from the teacher with **one** recipe long enough that two training seeds agree, for ``--seeds`` seeds, with parameters,
FLOPs, ONNX Runtime latency and per-seed validation and test accuracy. Its seed-to-seed Kendall τ (over the
architectures' test accuracies) is the ceiling any cheaper ranking can reach.

It runs as parallel, resumable processes: ``--shard i/n`` takes every n-th (architecture, seed) job; each writes its own
JSON after every job and skips the jobs already in it when started again; ``--combine`` pools the shards into the
committed ``bench/data/<dataset>_reference.json``.

    python bench/reference.py --dataset cifar10 --data cifar10-jpeg.zip --teacher T.pt --shard 0/2 --out a.json &
    python bench/reference.py --dataset cifar10 --data cifar10-jpeg.zip --teacher T.pt --shard 1/2 --out b.json &
    python bench/reference.py --dataset cifar10 --combine a.json b.json --out bench/data/cifar10_reference.json
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import statistics
import time
from typing import Any

import numpy as np

from _common import fill_presets  # noqa: E402  (bench/ is on sys.path when run as a script)
from _searchbench import Setup, add_run_args, bench_parser, run_bench, shared_config  # noqa: E402

from archkd import api  # noqa: E402
from archkd.measure import measure_latency  # noqa: E402
from archkd.models import build_from_spec, create_model, model_spec  # noqa: E402
from archkd.proxies import rank_correlation  # noqa: E402
from archkd.spaces import create_space  # noqa: E402

HAND = ("resnet8", "wrn_16_1")
PRESETS = {
    # 8 epochs on a fifth of CIFAR-10 (the issue's starting point; the two seeds' τ says whether it is long enough)
    "cifar10": {"archs": 24, "epochs": 8, "data_fraction": 0.2, "max_params": 80_000, "val_fraction": 0.1},
    "digits": {"archs": 6, "epochs": 10, "data_fraction": 1.0, "max_params": 80_000, "val_fraction": 0.1},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = bench_parser(__doc__, PRESETS, "cifar10", ("epochs", "data_fraction", "max_params", "val_fraction"))
    p.add_argument("--archs", type=int, help="architectures drawn from the stages space (besides the hand-designed)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--shard", default="0/1", help="i/n: this process runs every n-th job, starting at the i-th")
    add_run_args(p)
    args = fill_presets(p.parse_args(argv), PRESETS, "reference")
    args.methods = None  # jobs are (architecture, seed); the shard picks them
    return args


def architectures(n: int, budget: int, input_shape: tuple, num_classes: int) -> list[tuple[str, dict]]:
    """``n`` distinct stages-space specs within ``budget`` (seed 0), then the hand-designed students."""
    space = create_space("stages")
    rng = np.random.default_rng(0)
    out: list[tuple[str, dict]] = []
    seen: set[str] = set()
    for _ in range(100 * n):
        if len(out) == n:
            break
        config = space.sample_rng(rng)
        spec = space.spec(config, input_shape, num_classes)
        key = json.dumps(spec, sort_keys=True)
        if key in seen or sum(p.numel() for p in build_from_spec(spec).parameters()) > budget:
            continue
        seen.add(key)
        out.append((f"stages{len(out):02d}", spec))
    for name in HAND:
        out.append((name, model_spec(create_model(name, num_classes=num_classes, in_channels=input_shape[0]))))
    return out


def run_one(st: Setup, name: str, seed: int, spec: dict) -> dict:
    cfg = copy.deepcopy(st.cfg)
    cfg.name, cfg.seed = f"{name}-s{seed}", seed
    t0 = time.perf_counter()
    r = api.distill(cfg, log=st.log, teacher=st.teacher, data=st.data, student=build_from_spec(spec))
    lat = measure_latency(build_from_spec(spec), st.data.input_shape, runtime="onnxruntime").median_ms
    return {"method": name, "seed": seed, "spec": spec, "params": r["params"], "flops": r["flops"],
            "latency_ms": lat, "val_acc": r["val_acc"], "test_acc": r["test_acc"], "seconds": time.perf_counter() - t0}


def summarize(rows: list[dict]) -> dict[str, Any]:
    """Per architecture the mean over seeds; the seed-to-seed rank agreement of the test accuracies (the ceiling)."""
    by: dict[str, dict[int, dict]] = {}
    for r in rows:
        by.setdefault(r["method"], {})[r["seed"]] = r
    seeds = sorted({r["seed"] for r in rows})
    archs = {a: {"params": next(iter(s.values()))["params"], "flops": next(iter(s.values()))["flops"],
                 "latency_ms": statistics.median(x["latency_ms"] for x in s.values()),
                 "test_acc_by_seed": {str(k): v["test_acc"] for k, v in sorted(s.items())},
                 "test_acc": statistics.fmean(v["test_acc"] for v in s.values())} for a, s in by.items()}
    pairs = []
    for a, b in itertools.combinations(seeds, 2):
        common = [k for k, s in by.items() if a in s and b in s]
        if len(common) >= 3:
            c = rank_correlation([by[k][a]["test_acc"] for k in common], [by[k][b]["test_acc"] for k in common])
            pairs.append({"seeds": [a, b], "kendall_tau": c.kendall_tau, "spearman_rho": c.spearman_rho,
                          "n": c.n})
    return {"architectures": archs, "seed_agreement": pairs}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    i, n = (int(v) for v in args.shard.split("/"))

    def finish(rows: list[dict], teacher: dict, seconds: float) -> dict:
        s = summarize(rows)
        lines = [f"Reference set — {args.dataset}, {len(s['architectures'])} students × {len(args.seeds)} seeds, "
                 f"{args.epochs} epochs × {args.data_fraction:g} data, within {args.max_params:,} params; teacher "
                 f"test {teacher['test_acc']:.4f}",
                 "| student | params | MFLOPs | latency ms | test acc by seed | mean |", "|---|---|---|---|---|---|"]
        for a, r in sorted(s["architectures"].items(), key=lambda kv: -kv[1]["test_acc"]):
            lines.append(f"| {a} | {r['params']:,} | {r['flops'] / 1e6:.1f} | {r['latency_ms']:.3f} | "
                         + ", ".join(f"{v:.4f}" for v in r["test_acc_by_seed"].values()) + f" | {r['test_acc']:.4f} |")
        for p in s["seed_agreement"]:
            lines.append(f"seeds {p['seeds']}: Kendall τ {p['kendall_tau']:+.3f}, Spearman ρ {p['spearman_rho']:+.3f} "
                         f"over {p['n']} students (the ceiling of any cheaper ranking)")
        return {"summary": s, "table": "\n".join(lines)}

    def jobs_for(setup_data) -> list:
        specs = architectures(args.archs, args.max_params, setup_data.input_shape, setup_data.num_classes)
        every = [(name, spec, seed) for name, spec in specs for seed in args.seeds]
        return [(name, spec, seed) for k, (name, spec, seed) in enumerate(every) if k % n == i]

    chosen: dict[tuple[str, int], dict] = {}

    def job(st: Setup, name: str, seed: int) -> dict:
        if not chosen:
            chosen.update({(nm, sd): sp for nm, sp, sd in jobs_for(st.data)})
        return run_one(st, name, seed, chosen[(name, seed)]) if (name, seed) in chosen else None

    names = [f"stages{k:02d}" for k in range(args.archs)] + list(HAND)
    run_bench(args, "reference", shared_config,
              [(nm, job) for nm in names],
              lambda r: (f"{r['method']:<10} seed {r['seed']}: test {r['test_acc']:.4f}, {r['params']:,} params, "
                         f"{r['seconds'] / 60:.1f} min"),
              finish)


if __name__ == "__main__":
    main()
