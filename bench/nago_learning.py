"""Do NAGO students learn at a fidelity this machine affords? The question behind AutoKD's CIFAR-10 benchmark.

AutoKD's space (``nago``) scales every network to the parameter budget, so a generator with many nodes gets narrow
channels: at 150k parameters a 6/4/8-node network has 2–4 channels per op. This script distils a few NAGO networks
(the generator with the fewest nodes, and random generators) from the teacher, epoch by epoch, and records the
validation accuracy after each epoch, the channels, the parameter count and the throughput — the evidence for the
fidelity (epochs × data) an AutoKD search would need before its trial scores mean anything.

    python bench/nago_learning.py --data cifar10-jpeg.zip --teacher T.pt   # 3 networks × 3 epochs, ~25 min on one core

Writes ``bench/results/nago_learning_cifar10.json`` after every network (re-running resumes).
"""
from __future__ import annotations

import argparse
import copy
import time

import numpy as np

from _common import fill_presets  # noqa: E402  (bench/ is on sys.path when run as a script)
from _searchbench import Setup, add_run_args, bench_parser, run_bench, shared_config  # noqa: E402

from archkd import api  # noqa: E402
from archkd.models import build_from_spec  # noqa: E402
from archkd.spaces import create_space  # noqa: E402

PRESETS = {"cifar10": {"epochs": 3, "data_fraction": 0.2, "max_params": 150_000, "val_fraction": 0.1},
           "digits": {"epochs": 10, "data_fraction": 1.0, "max_params": 60_000, "val_fraction": 0.1}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = bench_parser(__doc__, PRESETS, "cifar10", ("epochs", "data_fraction", "max_params", "val_fraction"))
    p.add_argument("--networks", nargs="+", default=["fewest", "random0", "random1"],
                   help="'fewest' (3 nodes at every level) or 'randomN' (a random generator, seed N)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    add_run_args(p)
    args = fill_presets(p.parse_args(argv), PRESETS, "nago_learning")
    args.methods = args.networks  # the jobs (resuming may add some)
    return args


def generator(space, name: str) -> dict:
    if name == "fewest":
        return {k: v for k, v in space.smallest().items() if k in {d.name for d in space.arch_dims()}}
    return space.sample_rng(np.random.default_rng(int(name.removeprefix("random"))))


def run_one(st: Setup, name: str, seed: int, args: argparse.Namespace) -> dict:
    space = create_space("nago").scale_to(args.max_params)
    config = generator(space, name)
    spec = space.spec(config, st.data.input_shape, st.data.num_classes)
    cfg = copy.deepcopy(st.cfg)
    cfg.name, cfg.seed = f"{name}-s{seed}", seed
    t0 = time.perf_counter()
    r = api.distill(cfg, log=st.log, teacher=st.teacher, data=st.data, student=build_from_spec(spec))
    return {"method": name, "seed": seed, "config": config, "channels": spec["kwargs"].get("channels"),
            "nodes": [config[k] for k in ("top_nodes", "mid_nodes", "bottom_nodes")], "params": r["params"],
            "flops": r["flops"], "val_acc_by_epoch": [h.get("val_acc") for h in r["history"]],
            "test_acc": r["test_acc"], "images_per_s": r["images_per_s"], "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    def finish(rows: list[dict], teacher: dict, seconds: float) -> dict:
        lines = [f"NAGO students on {args.dataset} within {args.max_params:,} parameters, KD from {teacher['name']} "
                 f"(test {teacher['test_acc']:.4f}), {args.epochs} epochs × {args.data_fraction:g} data",
                 "| network | nodes top/mid/bottom | channels | params | val acc by epoch | test acc | img/s | min |",
                 "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['method']} | {'/'.join(map(str, r['nodes']))} | {r['channels']} | {r['params']:,} | "
                         + " → ".join(f"{100 * a:.1f}" for a in r["val_acc_by_epoch"])
                         + f" % | {100 * (r['test_acc'] or 0):.1f} % | {r['images_per_s'] or 0:.0f} | "
                         f"{r['seconds'] / 60:.1f} |")
        return {"table": "\n".join(lines)}

    run_bench(args, "nago_learning", shared_config,
              [(n, lambda st, name, seed: run_one(st, name, seed, args)) for n in args.networks],
              lambda r: (f"{r['method']:<8} nodes {r['nodes']} channels {r['channels']}: val "
                         + " → ".join(f"{a:.3f}" for a in r["val_acc_by_epoch"])), finish)


if __name__ == "__main__":
    main()
