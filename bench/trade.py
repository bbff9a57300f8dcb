"""TRADE: trust-region BO (TuRBO-1) over a multi-family student space, against AKD and random search.

Three searches with the same number of trials, trial fidelity, parameter budget, teacher and seeds:

1. ``trade``:  TuRBO-1 over the ``multifamily`` space (ResNet basic/bottleneck, MobileNetV2, ShuffleNetV2, ViT,
   MLP-Mixer; family one-hot + knobs in [0, 1]^d);
2. ``akd``:    AKD's RL controller over its MnasNet-style space (convolutions only);
3. ``random``: random search over the ``multifamily`` space.

Read at **equal trials** (best-so-far validation accuracy after n trials) and at **equal wall-clock** (after the
same number of search seconds, the shortest method's mean search time). Each search's winner is re-trained with the
full KD recipe and tested, beside the hand-designed students resnet8x4, wrn_16_2, mobilenetv2 and shufflenetv2,
each scaled (where its factory has a width knob) to the largest size within the same parameter budget and trained
with the same KD recipe; the table says which family won.

    python bench/trade.py --dataset digits
    python bench/trade.py --dataset cifar10     # ../shared data and teacher, low fidelity

Writes ``bench/results/trade_<dataset>.json`` after every run and the library's log beside it.
"""
from __future__ import annotations

import argparse
import copy
import statistics
from typing import Any

import torch

from _common import fill_presets  # noqa: E402  (bench/ is on sys.path when run as a script)
from _searchbench import SEARCH_PRESETS, Setup, add_run_args, bench_parser, run_bench, search_and_distill, shared_config  # noqa: E402

from archkd import api  # noqa: E402
from archkd.config import load_config  # noqa: E402
from archkd.models import create_model, model_spec  # noqa: E402

METHODS: dict[str, list[str]] = {
    "trade": ["search.method=trade"],
    "akd": ["search.method=akd"],  # AKD's own preset: mnas space, latency-aware reward, batch scaled to the trials
    "random": ["search.method=random", "search.space=multifamily"],
}
# hand-designed students: name -> its sizes, smallest first (registry name, kwargs); the largest within the budget is
# trained (the smallest when none fits, and the table shows its parameters), so they meet the search at matched size
HAND: dict[str, list[tuple[str, dict]]] = {
    "resnet8x4": [("resnet8", {}), ("resnet8x4", {})],
    "wrn_16_2": [("wrn_16_1", {}), ("wrn_16_2", {})],
    "mobilenetv2": [("mobilenetv2", {"width_mult": w}) for w in (0.25, 0.35, 0.5, 0.75, 1.0)],
    "shufflenetv2": [("shufflenetv2", {"net_size": s}) for s in (0.5, 1.0, 1.5, 2.0)],
}
# On CIFAR-10 a trial takes ~30 s for a student within 150k params (17-27 % validation accuracy); 8 trials is
# archkd's default trial count.
PRESETS: dict[str, dict[str, Any]] = {
    "digits": {**SEARCH_PRESETS["digits"], "trials": 16, "max_params": 300_000},
    "cifar10": {**SEARCH_PRESETS["cifar10"], "trials": 8, "max_params": 150_000},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = bench_parser(__doc__, PRESETS, "digits", ("trials", "trial_epochs", "search_data_fraction", "final_epochs",
                                                   "final_data_fraction", "final_bn_recalibration", "max_params",
                                                   "val_fraction"))
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    p.add_argument("--hand", nargs="*", choices=list(HAND), default=list(HAND))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    add_run_args(p)
    return fill_presets(p.parse_args(argv), PRESETS, "trade")


def curve(trials: list[dict]) -> list[tuple[int, float, float]]:
    """(trials so far, search seconds so far, best validation accuracy so far), in trial order."""
    out, n, secs, best = [], 0, 0.0, 0.0
    for t in sorted(trials, key=lambda t: t["number"]):
        secs += t.get("seconds") or 0.0
        if t["state"] in ("COMPLETE", "PRUNED"):
            n += 1
            best = max(best, t["val_acc"] or 0.0)
            out.append((n, round(secs, 2), best))
    return out


def run_search(st: Setup, method: str, seed: int) -> dict:
    cfg = load_config(None, METHODS[method], base=copy.deepcopy(st.cfg))
    cfg.name, cfg.seed = f"{method}-s{seed}", seed
    found, t_search, final = search_and_distill(st, cfg)
    best = found["best"]
    done = [t for t in found["trials"] if t["state"] == "COMPLETE"]
    return {"method": method, "seed": seed, "curve": curve(found["trials"]), "best_trial": best["number"],
            "best_config": best["config"], "family": str(best["config"].get("family", best["student_spec"]["name"])),
            "families_tried": sorted({str(t["config"].get("family", "mnas")) for t in done}),
            "search_val_acc": best["val_acc"], "final_val_acc": final["val_acc"], "final_test_acc": final["test_acc"],
            "params": final["params"], "search_seconds": t_search, "final_seconds": final["seconds"]}


def scaled(name: str, budget: int, data) -> torch.nn.Module:
    """The hand-designed model at its largest listed size within ``budget`` (its smallest if none fits)."""
    models = [create_model(n, num_classes=data.num_classes, in_channels=data.input_shape[0], **kw)
              for n, kw in HAND[name]]
    fits = [m for m in models if sum(p.numel() for p in m.parameters()) <= budget]
    return fits[-1] if fits else models[0]


def run_hand(st: Setup, name: str, seed: int) -> dict:
    teacher, data, log = st.teacher, st.data, st.log
    cfg = copy.deepcopy(st.cfg)
    cfg.name, cfg.seed = f"hand-{name}-s{seed}", seed
    model = scaled(name, st.cfg.budget.max_params, data)
    final = api.distill(cfg, log=log, teacher=teacher, data=data, student=model)
    spec = model_spec(model)
    used = spec["name"] + "".join(f" {k}={v}" for k, v in spec["kwargs"].items() if k in ("width_mult", "net_size"))
    return {"method": f"hand:{name}", "seed": seed, "family": used, "spec": spec,
            "final_val_acc": final["val_acc"], "final_test_acc": final["test_acc"], "params": final["params"],
            "final_seconds": final["seconds"]}


def best_at(c: list[tuple[int, float, float]], *, trials: int | None = None, seconds: float | None = None) -> float:
    pts = [b for n, s, b in c if (trials is None or n <= trials) and (seconds is None or s <= seconds + 1e-9)]
    return pts[-1] if pts else 0.0


def summarize(rows: list[dict], args: argparse.Namespace) -> dict:
    searched = [r for r in rows if not r["method"].startswith("hand:")]
    methods = [m for m in args.methods if any(r["method"] == m for r in searched)]
    wall = min(statistics.fmean(r["search_seconds"] for r in searched if r["method"] == m) for m in methods)
    marks = sorted({max(1, args.trials // 4), args.trials // 2, args.trials})
    out: dict[str, Any] = {"trial_marks": marks, "wall_seconds": wall, "methods": {}}
    for m in sorted({r["method"] for r in rows}, key=lambda m: (m.startswith("hand:"), m)):
        rs = [r for r in rows if r["method"] == m]
        s = {"seeds": len(rs), "final_test_acc": statistics.fmean(r["final_test_acc"] for r in rs),
             "final_test_std": statistics.stdev([r["final_test_acc"] for r in rs]) if len(rs) > 1 else 0.0,
             "params_mean": statistics.fmean(r["params"] for r in rs),
             "winning_families": sorted({r["family"] for r in rs})}
        if "curve" in rs[0]:
            s.update({f"best_val@{n}": statistics.fmean(best_at(r["curve"], trials=n) for r in rs) for n in marks})
            s.update({"best_val@half_wall": statistics.fmean(best_at(r["curve"], seconds=wall / 2) for r in rs),
                      "best_val@wall": statistics.fmean(best_at(r["curve"], seconds=wall) for r in rs),
                      "search_seconds_mean": statistics.fmean(r["search_seconds"] for r in rs)})
        out["methods"][m] = s
    return out


def format_table(summary: dict, teacher: dict, title: str) -> str:
    marks, wall = summary["trial_marks"], summary["wall_seconds"]
    head = (f"{'method':<18} {'seeds':>5} " + " ".join(f"{'val @' + str(n) + ' tr':>10}" for n in marks)
            + f" {'val @' + f'{wall / 2:.0f}s':>10} {'val @' + f'{wall:.0f}s':>10} {'final test':>16} {'params':>9}"
              f" {'family':<24}")
    lines = [title, head, "-" * len(head)]
    for m, s in summary["methods"].items():
        cells = (" ".join(f"{s[f'best_val@{n}']:>10.4f}" for n in marks)
                 + f" {s['best_val@half_wall']:>10.4f} {s['best_val@wall']:>10.4f}") if f"best_val@{marks[0]}" in s \
            else " ".join(f"{'-':>10}" for _ in marks) + f" {'-':>10} {'-':>10}"
        lines.append(f"{m:<18} {s['seeds']:>5} {cells} {s['final_test_acc']:>8.4f} ± {s['final_test_std']:.4f} "
                     f"{s['params_mean']:>9.0f} {','.join(s['winning_families']):<24}")
    best = max(summary["methods"].items(), key=lambda kv: kv[1]["final_test_acc"])
    lines.append(f"val @n tr: best validation accuracy after n trials; val @Ns: after N search seconds (the fastest "
                 f"method's mean search time and half of it); mean over seeds. Best final test: {best[0]} "
                 f"({best[1]['final_test_acc']:.4f}); teacher {teacher['name']} test {teacher['test_acc']:.4f}, "
                 f"{teacher['params']:,} params.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    def finish(rows: list[dict], teacher: dict, seconds: float) -> dict:
        summary = summarize(rows, args)
        title = (f"TRADE benchmark — {args.dataset}, {args.trials} trials per search, {len(args.seeds)} seeds, "
                 f"{seconds / 60:.1f} min")
        return {"summary": summary, "table": format_table(summary, teacher, title)}

    run_bench(args, "trade", shared_config,
              [(m, run_search) for m in args.methods] + [(h, run_hand) for h in args.hand],
              lambda r: (f"{r['method']:<18} seed {r['seed']}: final test {r['final_test_acc']:.4f}, "
                         f"{r['params']:,} params, {r['family']}"), finish)


if __name__ == "__main__":
    main()
