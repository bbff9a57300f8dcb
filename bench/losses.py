"""Every registered KD loss on one teacher/student pair, at equal epochs and seeds.

One teacher, one student architecture, one recipe (SGD, cosine, the same epochs, data share and batch size); per seed
the same student initialisation for every loss. Losses, each in its usual protocol:

- ``ce``: no teacher (the floor);
- logit losses — ``kd`` (Hinton, α 0.9, T 4), ``dkd`` (decoupled KD, α 0.9 on the DKD term with its own α 1, β 8,
  T 4);
- feature losses with cross-entropy and no logit term (RepDistiller's protocol for feature methods), each at its
  default weight: ``fitnet``, ``at`` and ``hcl`` on the last stage, ``rkd`` and ``pkt`` on the pooled embedding,
  ``reviewkd`` on every stage.

    python bench/losses.py                       # CIFAR-10 (../shared), 10 % of the images, 3 epochs, seeds 0 1 2
    python bench/losses.py --dataset digits

Writes ``bench/results/losses_<dataset>.json``; prints mean ± std test accuracy per loss and the difference to ``kd``.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path
from typing import Any

from _common import bench_config, fill_presets, write_result  # noqa: E402  (bench/ is on sys.path when run as a script)

from archkd import api  # noqa: E402
from archkd.config import Config  # noqa: E402
from archkd.device import seed_everything  # noqa: E402
from archkd.models import create_model  # noqa: E402

LAST = {"student": "layer3", "teacher": "layer3"}
EMBED = {"student": "head.pool", "teacher": "head.pool"}
STAGES = {"student": ["layer1", "layer2", "layer3"], "teacher": ["layer1", "layer2", "layer3"]}
LOSSES: dict[str, dict[str, Any]] = {
    "ce": {"distill.alpha": 0.0},
    "kd": {},
    "dkd": {"distill.loss": "dkd"},
    "fitnet": {"distill.alpha": 0.0, "features": [{"loss": "fitnet", **LAST}]},
    "at": {"distill.alpha": 0.0, "features": [{"loss": "at", **LAST}]},
    "hcl": {"distill.alpha": 0.0, "features": [{"loss": "hcl", **LAST}]},
    "rkd": {"distill.alpha": 0.0, "features": [{"loss": "rkd", **EMBED}]},
    "pkt": {"distill.alpha": 0.0, "features": [{"loss": "pkt", **EMBED}]},
    "reviewkd": {"distill.alpha": 0.0, "features": [{"loss": "reviewkd", **STAGES}]},
}
PRESETS: dict[str, dict[str, Any]] = {
    "digits": {"epochs": 5, "data_fraction": 1.0, "teacher_epochs": 30, "val_fraction": 0.1},
    "cifar10": {"epochs": 3, "data_fraction": 0.1, "teacher_epochs": 4, "val_fraction": 0.05},
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=sorted(PRESETS), default="cifar10")
    p.add_argument("--losses", nargs="+", choices=list(LOSSES), default=list(LOSSES))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--student", default="resnet8")
    p.add_argument("--teacher", help="archkd teacher checkpoint (default: a resnet20 trained here, cached)")
    for k, v in PRESETS["digits"].items():
        p.add_argument(f"--{k.replace('_', '-')}", dest=k, type=type(v), default=None)
    p.add_argument("--out")
    return fill_presets(p.parse_args(), PRESETS, "losses")


def base(args: argparse.Namespace, name: str, seed: int) -> Config:
    return bench_config("losses", args.dataset, name, seed, args.val_fraction, [
        f"train.epochs={args.epochs}",
        f"train.data_fraction={args.data_fraction}", f"student.arch={args.student}", "teacher.arch=resnet20",
        f"teacher.train.epochs={args.teacher_epochs}", "budget.latency_runtime=torch"])


def teacher_path(args: argparse.Namespace) -> str:
    if args.teacher:
        return args.teacher
    cfg = base(args, f"teacher_e{args.teacher_epochs}", 0)
    ckpt = cfg.run_dir / "teacher" / "best.pt"
    return str(ckpt) if ckpt.is_file() else api.train_teacher(cfg, None)["checkpoint"]


def main() -> None:
    args = parse_args()
    t0 = time.perf_counter()
    tpath = teacher_path(args)
    cfg = base(args, "prepare", 0)
    cfg.teacher.path = tpath
    teacher, data = api.prepare(cfg, None)
    rows = []
    for seed in args.seeds:
        seed_everything(seed)
        student0 = create_model(args.student, num_classes=data.num_classes, in_channels=data.input_shape[0])
        for loss in args.losses:
            cfg = base(args, f"{loss}_s{seed}", seed)
            cfg.teacher.path = tpath
            spec = LOSSES[loss]
            for k, v in spec.items():
                if k == "features":
                    cfg.distill.features = copy.deepcopy(v)
                else:
                    section, key = k.split(".")
                    setattr(getattr(cfg, section), key, v)
            r = api.distill(cfg, None, teacher=teacher, data=data, student=copy.deepcopy(student0))
            rows.append({"loss": loss, "seed": seed, "test_acc": r["test_acc"], "val_acc": r["val_acc"],
                         "seconds": r["seconds"], "teacher_test_acc": r["teacher_test_acc"]})
            print(f"  seed {seed} {loss:<9} test {r['test_acc']:.4f} ({r['seconds']:.0f} s)", flush=True)
        write_result(args.out, {"args": vars(args), "teacher": tpath, "rows": rows})
    summary = {}
    for loss in args.losses:
        accs = [r["test_acc"] for r in rows if r["loss"] == loss]
        kd = {r["seed"]: r["test_acc"] for r in rows if r["loss"] == "kd"}
        diffs = [r["test_acc"] - kd[r["seed"]] for r in rows if r["loss"] == loss and r["seed"] in kd]
        summary[loss] = {"mean": statistics.mean(accs), "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                         "minus_kd": statistics.mean(diffs) if diffs else None,
                         "seconds": statistics.mean(r["seconds"] for r in rows if r["loss"] == loss)}
    t_acc = rows[0]["teacher_test_acc"]
    lines = [f"KD losses — {args.dataset}: {args.student} <- {Path(tpath).name} (test {100 * t_acc:.2f} %), "
             f"{args.epochs} epochs × "
             f"{args.data_fraction:g} of the images, seeds {args.seeds}",
             "| loss | test acc (mean ± std) | − kd (paired, points) | s per run |", "|---|---|---|---|"]
    for loss, s in summary.items():
        d = "—" if s["minus_kd"] is None or loss == "kd" else f"{100 * s['minus_kd']:+.2f}"
        lines.append(f"| {loss} | {100 * s['mean']:.2f} ± {100 * s['std']:.2f} % | {d} | {s['seconds']:.0f} |")
    text = "\n".join(lines)
    print("\n" + text, flush=True)
    write_result(args.out, {"args": vars(args), "teacher": tpath, "teacher_acc": t_acc, "rows": rows,
                            "summary": summary, "table": text, "seconds": time.perf_counter() - t0})


if __name__ == "__main__":
    main()
