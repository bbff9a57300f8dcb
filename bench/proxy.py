"""Cheap fidelities that rank: zero-cost proxies and short trainings against the longest training affordable here.

Part 1 (rank correlation), per space: ``n_archs`` distinct random architectures within ``max_params``; for each,
- every zero-cost proxy at initialisation (DisWOT's against a freshly initialised copy of the teacher's architecture,
  as the paper does, and against the trained teacher; grad_norm, params, flops), with its cost;
- KD training at each search fidelity (epochs × data fraction), scored on the validation split as a search trial is,
  without and with BatchNorm recalibration;
- the reference: KD training at ``ref_epochs`` on all the training data, scored on the test split;
then Kendall τ and Spearman ρ of every proxy and fidelity with the reference.

Part 2 (end to end), per seed: a random search of ``search_trials`` trials at the default search fidelity, without and
with the DisWOT pre-screen (``factor``× as many candidates scored, the best trained) — the same training budget — and
each winner re-trained with the reference recipe and tested.

    python bench/proxy.py --dataset digits          # ~20 min on 2 cores
    python bench/proxy.py --dataset cifar10 --spaces stages --parts rank noise \
        --teacher bench/results/gtn_cifar10/vanilla_s0/teacher/best.pt   # ../shared data, low fidelity, ~40 min

Writes ``bench/results/proxy_<dataset>.json`` after every space and seed.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from _common import RESULTS, fill_presets, write_result  # noqa: E402  (bench/ is on sys.path when run as a script)
from akd import CIFAR_DATA  # noqa: E402

from archkd import api  # noqa: E402
from archkd.config import Config, load_config  # noqa: E402
from archkd.distill import evaluate, fit, objective_from_config, recalibrate_bn  # noqa: E402
from archkd.models import build_from_spec  # noqa: E402
from archkd.proxies import ProxyScorer, rank_correlation  # noqa: E402
from archkd.search import Budget  # noqa: E402
from archkd.spaces import create_space  # noqa: E402

PROXIES = ["diswot", "diswot_semantic", "diswot_relation", "grad_norm", "params", "flops"]
PRESETS: dict[str, dict[str, Any]] = {
    "digits": {"n_archs": 50, "ref_epochs": 20, "fidelities": "1x0.25,1x1,3x0.25,3x1", "max_params": 60_000,
               "teacher_epochs": 20, "search_trials": 8, "factor": 10, "val_fraction": 0.1},
    # CIFAR-10 at CPU scale (one thread, a shared machine: ~40 s per architecture with the noise part): the reference
    # is itself a short training, one epoch on a tenth of the images
    "cifar10": {"n_archs": 50, "ref_epochs": 1, "fidelities": "1x0.02,1x0.05", "ref_fraction": 0.1,
                "max_params": 20_000, "teacher_epochs": 4, "search_trials": 6, "factor": 10, "val_fraction": 0.05},
}
SPACE_KWARGS = {"stages": {"widths": [8, 12, 16, 24, 32, 48]}, "mnas": {}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=sorted(PRESETS), default="digits")
    p.add_argument("--spaces", nargs="+", default=["stages", "mnas"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the end-to-end searches")
    p.add_argument("--parts", nargs="+", default=["rank", "noise", "search"], choices=["rank", "noise", "search"],
                   help="noise: the reference trained again with another seed, on part 1's architectures (read back "
                        "from --out): its rank correlation with the first is the ceiling of what any score can reach")
    for k, v in {**PRESETS["digits"], "ref_fraction": 1.0}.items():
        p.add_argument(f"--{k.replace('_', '-')}", dest=k, type=type(v), default=None)
    p.add_argument("--teacher", help="an archkd teacher checkpoint to use instead of training one here")
    p.add_argument("--out", help="JSON output (default bench/results/proxy_<dataset>.json)")
    args = fill_presets(p.parse_args(argv), PRESETS, "proxy")
    args.ref_fraction = args.ref_fraction or 1.0
    return args


def base(args: argparse.Namespace, name: str, seed: int = 0) -> Config:
    root = RESULTS / f"proxy_{args.dataset}"
    data = "digits" if args.dataset == "digits" else str(CIFAR_DATA)
    return load_config(overrides=[
        f"name={name}", f"runs_dir={root}", f"cache_dir={root / 'cache'}", f"seed={seed}", f"data.source={data}",
        f"data.val_fraction={args.val_fraction}", "teacher.arch=resnet20", f"teacher.train.epochs={args.teacher_epochs}",
        f"train.epochs={args.ref_epochs}", f"train.data_fraction={args.ref_fraction}",
        f"budget.max_params={args.max_params}"])


def fidelities(text: str) -> list[tuple[int, float]]:
    return [(int(e), float(f)) for e, f in (item.split("x") for item in text.split(","))]


def kd_train(spec: dict, data, teacher, cache, train, distill, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_from_spec(spec)
    fit(model, data, train, objective=objective_from_config(distill, train.label_smoothing), teacher=teacher.module,
        cache=cache, seed=seed, device="cpu", log=None)
    return model


def rank_part(args: argparse.Namespace, teacher_ckpt: str) -> dict:
    cfg = base(args, "rank")
    cfg.teacher.path = teacher_ckpt
    teacher, data = api.prepare(cfg, log=None)
    cache = api.make_cache(cfg, teacher, data)
    torch.manual_seed(0)
    random_teacher = build_from_spec(teacher.spec)
    scorers = {"": ProxyScorer(PROXIES, random_teacher, data, n_batches=2),
               " (trained teacher)": ProxyScorer(["diswot", "diswot_semantic", "diswot_relation"], teacher.module,
                                                 data, n_batches=2, teacher_trained=True)}
    out: dict[str, Any] = {}
    for space_name in args.spaces:
        space = create_space(space_name, **SPACE_KWARGS.get(space_name, {}))
        feasible = Budget.from_config(cfg.budget).feasibility(space, data.input_shape, data.num_classes)
        from archkd.search import prescreen

        archs = [s.config for s in prescreen(space, lambda c: 0.0, args.n_archs, args.n_archs, seed=1,
                                             feasible=feasible)]  # n distinct feasible draws (score-free)
        rows = []
        for i, config in enumerate(archs):
            spec = space.spec(config, data.input_shape, data.num_classes)
            row: dict[str, Any] = {"config": config, "proxy": {}, "proxy_seconds": {}, "fidelity": {}}
            for suffix, scorer in scorers.items():
                t0 = time.perf_counter()
                for name, v in scorer(spec).items():
                    row["proxy"][name + suffix] = v
                row["proxy_seconds"][suffix or "all"] = time.perf_counter() - t0
            for epochs, fraction in fidelities(args.fidelities):
                t0 = time.perf_counter()
                model = kd_train(spec, data, teacher, cache, replace(cfg.train, epochs=epochs, data_fraction=fraction),
                                 cfg.distill, cfg.seed)
                raw = evaluate(model, data.val, data.normalize)
                recalibrate_bn(model, data.train, data.normalize, indices=data.train.subset(fraction, cfg.seed),
                               n=cfg.search.bn_recalibration, batch_size=cfg.train.batch_size)
                row["fidelity"][f"{epochs}ep x {fraction:g}"] = raw
                row["fidelity"][f"{epochs}ep x {fraction:g} +BN"] = evaluate(model, data.val, data.normalize)
                row.setdefault("fidelity_seconds", {})[f"{epochs}ep x {fraction:g}"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            model = kd_train(spec, data, teacher, cache, cfg.train, cfg.distill, cfg.seed)
            row["reference"] = evaluate(model, data.test, data.normalize)
            row["reference_seconds"] = time.perf_counter() - t0
            row["params"] = sum(p.numel() for p in model.parameters())
            rows.append(row)
            print(f"  {space_name} {i + 1}/{len(archs)}: reference {row['reference']:.4f}, diswot "
                  f"{row['proxy']['diswot']:.4f}, {row['reference_seconds']:.1f}s", flush=True)
        ref = [r["reference"] for r in rows]
        corr = {}
        for key in list(rows[0]["proxy"]) + list(rows[0]["fidelity"]):
            kind = "proxy" if key in rows[0]["proxy"] else "fidelity"
            c = rank_correlation([r[kind][key] for r in rows], ref)
            corr[key] = {"kind": kind, "tau": c.kendall_tau, "rho": c.spearman_rho}
        cost = {"proxy_s": statistics.mean(r["proxy_seconds"]["all"] for r in rows),
                "reference_s": statistics.mean(r["reference_seconds"] for r in rows),
                **{f"{k}_s": statistics.mean(r["fidelity_seconds"][k] for r in rows)
                   for k in rows[0]["fidelity_seconds"]}}
        out[space_name] = {"rows": rows, "correlation": corr, "cost": cost,
                           "reference_spread": [min(ref), statistics.median(ref), max(ref)]}
        save_results(args, {"rank": out})
    return out


def search_part(args: argparse.Namespace, teacher_ckpt: str) -> list[dict]:
    runs = []
    for seed in args.seeds:
        for variant, proxy in (("random", None), ("random + DisWOT pre-screen", "diswot")):
            cfg = base(args, f"search_{'prescreen' if proxy else 'plain'}_s{seed}", seed)
            cfg.teacher.path = teacher_ckpt
            cfg.search.n_trials, cfg.search.top_k = args.search_trials, 1
            cfg.search.space_kwargs = SPACE_KWARGS["stages"]
            cfg.search.prescreen.proxy, cfg.search.prescreen.factor = proxy, args.factor
            t0 = time.perf_counter()
            r = api.search(cfg, log=None, write=False)
            best = r["top_k"][0]
            runs.append({"seed": seed, "variant": variant, "best_val": r["best"]["val_acc"],
                         "test_acc": best["test_acc"], "params": best["params"], "seconds": time.perf_counter() - t0,
                         "trials_trained": sum(t["state"] == "COMPLETE" for t in r["trials"])})
            print(f"  seed {seed} {variant}: best val {r['best']['val_acc']:.4f}, re-trained test "
                  f"{best['test_acc']:.4f}", flush=True)
    return runs


def noise_part(args: argparse.Namespace, teacher_ckpt: str) -> None:
    """The reference's own rank noise: part 1's architectures trained again with another seed."""
    import json

    cfg = base(args, "rank")  # the same data split as part 1; only the training seed differs
    cfg.teacher.path = teacher_ckpt
    teacher, data = api.prepare(cfg, log=None)
    saved = json.loads(Path(args.out).read_text())
    _STATE.update({k: saved[k] for k in ("rank", "search") if k in saved})
    for space_name, r in _STATE["rank"].items():
        space = create_space(space_name, **SPACE_KWARGS.get(space_name, {}))
        for i, row in enumerate(r["rows"]):
            if "reference_seed1" not in row:
                spec = space.spec(row["config"], data.input_shape, data.num_classes)
                model = kd_train(spec, data, teacher, None, cfg.train, cfg.distill, seed=1)  # the cache is seed 0's
                row["reference_seed1"] = evaluate(model, data.test, data.normalize)
                print(f"  noise {space_name} {i + 1}/{len(r['rows'])}: {row['reference']:.4f} / "
                      f"{row['reference_seed1']:.4f}", flush=True)
        c = rank_correlation([x["reference_seed1"] for x in r["rows"]], [x["reference"] for x in r["rows"]])
        r["correlation"]["reference, another seed"] = {"kind": "ceiling", "tau": c.kendall_tau,
                                                       "rho": c.spearman_rho}
        save_results(args, {})


_STATE: dict[str, Any] = {}


def save_results(args: argparse.Namespace, part: dict) -> None:
    _STATE.update(part)
    write_result(args.out, {"bench": "proxy", "dataset": args.dataset, "args": vars(args), **_STATE})


def print_tables(result: dict) -> None:
    for space, r in (result.get("rank") or {}).items():
        print(f"\n{space}: {len(r['rows'])} architectures, reference test acc min/median/max "
              + " / ".join(f"{100 * v:.1f}" for v in r["reference_spread"]))
        print("| score | kind | Kendall τ | Spearman ρ |\n|---|---|---|---|")
        for k, c in sorted(r["correlation"].items(), key=lambda kv: -kv[1]["tau"]):
            print(f"| {k} | {c['kind']} | {c['tau']:+.3f} | {c['rho']:+.3f} |")
        print("cost per architecture: " + ", ".join(f"{k} {v:.2f}s" for k, v in r["cost"].items()))
    runs = result.get("search") or []
    if runs:
        print("\n| variant | seeds | best trial val acc | winner re-trained, test acc | trials trained |")
        print("|---|---|---|---|---|")
        for variant in dict.fromkeys(r["variant"] for r in runs):
            rs = [r for r in runs if r["variant"] == variant]
            sd = statistics.stdev([r["test_acc"] for r in rs]) if len(rs) > 1 else 0.0
            print(f"| {variant} | {len(rs)} | {100 * statistics.mean(r['best_val'] for r in rs):.2f} | "
                  f"{100 * statistics.mean(r['test_acc'] for r in rs):.2f} ± {100 * sd:.2f} | "
                  f"{statistics.mean(r['trials_trained'] for r in rs):.0f} |")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    teacher_ckpt = args.teacher or api.train_teacher(base(args, "teacher"), log=None)["checkpoint"]  # resumed if there
    if "rank" in args.parts:
        rank_part(args, teacher_ckpt)
    if "noise" in args.parts:
        noise_part(args, teacher_ckpt)
    if "search" in args.parts:
        save_results(args, {"search": search_part(args, teacher_ckpt)})
    print_tables(_STATE)


if __name__ == "__main__":
    main()
