"""Training throughput of KD through archkd's real trainer: student-only CE vs naive KD vs cached KD (cold, warm).

Every mode calls ``archkd.distill.fit`` with the same student architecture, data subset, seed, epochs and batch size
and reads ``FitResult.images_per_s`` (training images per second, evaluation excluded):

1. ``student_only``: CE objective, no teacher;
2. ``naive_kd``: Hinton KD (alpha 0.9, T 4), teacher forward on every step (``cache=None``);
3. ``cached_kd_cold``: KD with an empty ``TeacherCache`` in a fresh temp dir (the one-off cost of filling it);
4. ``cached_kd_warm``: KD with a new ``TeacherCache`` over the same key (what every later search trial sees).

Run from the repository root:

    python bench/kd_throughput.py            # default: CIFAR-10 zip (else synthetic), 5000 images, 2 epochs
    python bench/kd_throughput.py --quick    # smoke test: synthetic data, 1024 images, 1 epoch, < 30 s

Prints a table and writes ``bench/results/kd_throughput.json``. All archkd cache dirs (decoded data, teacher logits)
live in a temporary directory that is removed at the end.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from archkd.api import make_cache
from archkd.config import Config, DistillConfig, TrainConfig
from archkd.data import DataBundle, load_data
from archkd.data.sources import RawData, open_source
from archkd.distill import fit, objective_from_config, save_checkpoint
from archkd.models import create_model, list_models, model_spec
from archkd.teacher import Teacher, check_teacher, load_teacher
from _common import cpu_busy, load_avg  # noqa: E402  (bench/ is on sys.path when run as a script)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg.zip"
DEFAULT_TEACHER = REPO.parent / "shared" / "teachers" / "cifar10_resnet_w32.torchscript.pt"
FALLBACK_TEACHER = "resnet56"
MODES = ("student_only", "naive_kd", "cached_kd_cold", "cached_kd_warm")
LABELS = {"student_only": "student only (CE)", "naive_kd": "naive KD (teacher fwd)",
          "cached_kd_cold": "cached KD, cold (fill)", "cached_kd_warm": "cached KD, warm"}
TARGET_WARM_RATIO = 0.9


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=None,
                   help=f"data source for archkd.data.open_source, or 'synthetic' (default: {DEFAULT_DATA} if it "
                        "exists, else synthetic CIFAR-shaped data)")
    p.add_argument("--subset", type=int, default=None, help="training images used (default 5000; quick 1024)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per mode, the same for all (default 2; quick 1)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--teacher", default=None,
                   help=f"TorchScript/archkd checkpoint or registry name (default: {DEFAULT_TEACHER.name} when it "
                        f"exists and the data is CIFAR-10, else registry '{FALLBACK_TEACHER}', random init)")
    p.add_argument("--student", default=None, help="registry name of the student (default resnet20; quick resnet8)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for every mode")
    p.add_argument("--repeats", type=int, default=1, help="rounds of all four modes; the median is reported")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="training device passed to fit (cpu, cuda, auto)")
    p.add_argument("--alpha", type=float, default=0.9, help="KD weight (CE gets 1 - alpha)")
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--no-warmup", action="store_true", help="skip the short untimed warm-up fit")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: synthetic data, subset 1024, 1 epoch, student resnet8, teacher resnet20")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "kd_throughput.json"), help="JSON output path")
    a = p.parse_args(argv)
    if a.quick:
        a.data = a.data or "synthetic"
        a.subset = a.subset or 1024
        a.epochs = a.epochs or 1
        a.student = a.student or "resnet8"
        a.teacher = a.teacher or "resnet20"
    a.subset = a.subset or 5000
    a.epochs = a.epochs or 2
    a.student = a.student or "resnet20"
    if a.data is None:
        a.data = str(DEFAULT_DATA) if DEFAULT_DATA.exists() else "synthetic"
    if a.subset < a.batch_size or a.epochs < 1 or a.repeats < 1 or a.threads < 1:
        p.error("need --subset >= --batch-size, --epochs >= 1, --repeats >= 1, --threads >= 1")
    return a


def synthetic_raw(n_train_wanted: int, val_fraction: float, test_fraction: float, seed: int) -> RawData:
    """Random uint8 3×32×32 images, 10 classes, sized so the training split holds at least ``n_train_wanted``."""
    n = int(math.ceil(n_train_wanted / ((1 - test_fraction) * (1 - val_fraction)))) + 64
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, size=n).astype(np.int64)
    return RawData("synthetic-cifar", x, y, None, None, [f"class{i}" for i in range(10)],
                   f"synthetic-{n}-{seed}", defaults={"crop_padding": 4, "flip": True})


def registry_teacher(name: str, num_classes: int, in_channels: int, tmp: Path, seed: int) -> Teacher:
    """A random-init registry model, saved as an archkd checkpoint and loaded back through ``load_teacher``."""
    torch.manual_seed(seed + 1)
    m = create_model(name, num_classes=num_classes, in_channels=in_channels)
    path = save_checkpoint(tmp / "teacher" / f"{name}.pt", m, spec=model_spec(m))
    return load_teacher(str(path))


def build(args: argparse.Namespace, tmp: Path) -> tuple[Teacher, DataBundle, Config, dict]:
    """Load the data and the teacher the way ``archkd.api.prepare`` does (teacher normalisation, check_teacher)."""
    cfg = Config()
    cfg.seed = args.seed
    cfg.cache_dir = str(tmp / "archkd-cache")
    cfg.distill = DistillConfig(loss="kd", alpha=args.alpha, temperature=args.temperature, cache=True)
    info: dict = {}
    t0 = time.perf_counter()
    if args.data == "synthetic":
        raw = synthetic_raw(args.subset, cfg.data.val_fraction, cfg.data.test_fraction, args.seed)
    else:
        cfg.data.source = args.data
        raw = open_source(args.data, cfg.data.image_size, cfg.data.max_in_memory_mb, cfg.cache_dir)
    info["data_load_s"] = round(time.perf_counter() - t0, 2)
    shape = tuple(int(s) for s in (raw.x_train[0].shape if raw.x_train is not None else (3, 32, 32)))

    teacher: Teacher | None = None
    ref = args.teacher
    if ref is None and DEFAULT_TEACHER.exists():
        cand = load_teacher(str(DEFAULT_TEACHER))
        is_cifar10 = (args.data != "synthetic" and cand.classes is not None and list(cand.classes) == list(raw.classes)
                      and (cand.input_shape is None or tuple(cand.input_shape[-3:]) == shape))
        teacher = cand if is_cifar10 else None
    elif ref is not None and Path(ref).expanduser().exists():
        teacher = load_teacher(ref)
    elif ref is not None and ref not in list_models():
        teacher = load_teacher(ref)  # timm:<name> or module:factory; errors name the fix
    if teacher is None:
        teacher = registry_teacher(ref or FALLBACK_TEACHER, len(raw.classes), shape[0], tmp, args.seed)
        info["teacher_random_init"] = True
    data = load_data(raw, cfg.data, seed=cfg.seed, cache_dir=cfg.cache_dir, mean=teacher.mean, std=teacher.std)
    check_teacher(teacher, data)
    info["data_total_load_s"] = round(time.perf_counter() - t0, 2)
    return teacher, data, cfg, info


def train_cfg(args: argparse.Namespace, n_train: int) -> TrainConfig:
    frac = min(1.0, args.subset / n_train)
    # Evaluate once, after the last epoch: evaluation is excluded from images_per_s and only costs wall time.
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer="sgd", data_fraction=frac,
                       eval_every=args.epochs)


def run_mode(mode: str, args: argparse.Namespace, data: DataBundle, teacher: Teacher, cfg: Config,
             tcfg: TrainConfig, cache_root: Path | None) -> dict:
    torch.manual_seed(args.seed)  # identical student init in every mode
    student = create_model(args.student, num_classes=data.num_classes, in_channels=data.input_shape[0])
    if mode == "student_only":
        objective, t_module, cache = objective_from_config(None), None, None
    else:
        objective, t_module = objective_from_config(cfg.distill), teacher.module
        cache = None
        if mode != "naive_kd":
            c = copy.deepcopy(cfg)
            c.cache_dir, c.device, c.train = str(cache_root), args.device, tcfg  # the device and recipe fit uses
            cache = make_cache(c, teacher, data)
    la0, cpu0, wall0 = load_avg(), time.process_time(), time.perf_counter()
    res = fit(student, data, tcfg, objective=objective, teacher=t_module, cache=cache, seed=args.seed,
              device=args.device, log=None)
    # CPU seconds this process got per wall second: about --threads when it had the cores to itself, less when other
    # jobs took them (the run is then contended and its timing unreliable).
    cpu_per_wall = (time.process_time() - cpu0) / max(1e-9, time.perf_counter() - wall0)
    n_used = len(data.train.subset(tcfg.data_fraction, args.seed))
    bs = min(tcfg.batch_size, n_used)
    n_seen = tcfg.epochs * (n_used // bs) * bs  # fit drops the last partial batch
    return {"images_per_s": res.images_per_s, "seconds": res.seconds,
            "train_seconds": n_seen / res.images_per_s if res.images_per_s else None, "train_images": n_seen,
            "val_acc": res.last_val_acc, "cache": res.cache, "cpu_per_wall": round(cpu_per_wall, 2),
            "loadavg_before": la0, "loadavg_after": load_avg()}


def warmup(args: argparse.Namespace, data: DataBundle, teacher: Teacher, cfg: Config, n_train: int) -> float:
    """A short untimed KD fit (student and teacher forward) so the first timed mode pays no one-off start-up cost."""
    t0 = time.perf_counter()
    frac = min(1.0, 3 * args.batch_size / n_train)
    tcfg = TrainConfig(epochs=1, batch_size=args.batch_size, optimizer="sgd", data_fraction=frac, eval_every=1)
    torch.manual_seed(args.seed)
    student = create_model(args.student, num_classes=data.num_classes, in_channels=data.input_shape[0])
    fit(student, data, tcfg, objective=objective_from_config(cfg.distill), teacher=teacher.module, cache=None,
        seed=args.seed, device=args.device, log=None)
    return time.perf_counter() - t0


def summarize(runs: dict[str, list[dict]]) -> dict:
    med = {m: statistics.median(r["images_per_s"] for r in rs) for m, rs in runs.items()}
    sec = {m: statistics.median(r["seconds"] for r in rs) for m, rs in runs.items()}
    base = med["student_only"]
    out = {"images_per_s": med, "fit_seconds": sec,
           "ratio_vs_student_only": {m: (v / base if base else None) for m, v in med.items()}}
    warm_hits = [r["cache"]["hit_rate"] for r in runs["cached_kd_warm"] if r["cache"]]
    cold_hits = [r["cache"]["hit_rate"] for r in runs["cached_kd_cold"] if r["cache"]]
    out["warm_cache_hit_rate"] = statistics.median(warm_hits) if warm_hits else None
    out["cold_cache_hit_rate"] = statistics.median(cold_hits) if cold_hits else None
    out["fill_cost_s"] = sec["cached_kd_cold"] - sec["cached_kd_warm"]
    out["cold_over_warm_time"] = sec["cached_kd_cold"] / sec["cached_kd_warm"] if sec["cached_kd_warm"] else None
    tr = {m: statistics.median(r["train_seconds"] for r in rs) for m, rs in runs.items()}
    out["train_seconds"] = tr
    out["fill_cost_train_only_s"] = tr["cached_kd_cold"] - tr["cached_kd_warm"]
    # Rough contention correction: images per CPU-second this process got (CPU time includes evaluation and, with
    # several threads, OpenMP spin-waiting, so trust it only as a hint when cpu/wall differs between modes).
    cpu = {m: statistics.median(r["cpu_per_wall"] for r in rs) for m, rs in runs.items()}
    per_cpu = {m: med[m] / cpu[m] if cpu[m] else None for m in med}
    out["cpu_per_wall"] = cpu
    out["cpu_normalized_ratio_vs_student_only"] = {
        m: (v / per_cpu["student_only"] if v and per_cpu["student_only"] else None) for m, v in per_cpu.items()}
    w = out["ratio_vs_student_only"]["cached_kd_warm"]
    out["target_warm_ratio"] = TARGET_WARM_RATIO
    out["target_met"] = bool(w is not None and w >= TARGET_WARM_RATIO)
    return out


def table(s: dict, runs: dict[str, list[dict]]) -> str:
    lines = [f"{'mode':<26}{'img/s':>9}{'× student':>11}{'fit s':>8}{'train s':>9}{'cache hit':>11}{'cpu/wall':>10}",
             "-" * 84]
    for m in MODES:
        hits = [r["cache"]["hit_rate"] for r in runs[m] if r["cache"]]
        hit = f"{statistics.median(hits):.1%}" if hits else "-"
        cpu = statistics.median(r["cpu_per_wall"] for r in runs[m])
        lines.append(f"{LABELS[m]:<26}{s['images_per_s'][m]:>9.1f}{s['ratio_vs_student_only'][m]:>10.2f}×"
                     f"{s['fit_seconds'][m]:>8.1f}{s['train_seconds'][m]:>9.1f}{hit:>11}{cpu:>10.2f}")
    lines.append("-" * 84)
    lines.append(f"one-off cache fill cost: {s['fill_cost_s']:.1f} s (cold fit - warm fit; train-only "
                 f"{s['fill_cost_train_only_s']:.1f} s), cold/warm time {s['cold_over_warm_time']:.2f}×")
    lines.append(f"warm cached KD vs student only: {s['ratio_vs_student_only']['cached_kd_warm']:.2f}× "
                 f"(target ≥ {TARGET_WARM_RATIO}×: {'met' if s['target_met'] else 'NOT met'}); "
                 f"warm cache hit rate {s['warm_cache_hit_rate']:.1%}")
    cn = s["cpu_normalized_ratio_vs_student_only"]
    if max(s["cpu_per_wall"].values()) - min(s["cpu_per_wall"].values()) > 0.1:
        lines.append("cpu/wall differed between modes (other jobs): per CPU-second the ratios vs student only are "
                     + ", ".join(f"{m} {cn[m]:.2f}×" for m in MODES[1:] if cn[m] is not None) + " (rough)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    machine = {"torch": torch.__version__, "torch_num_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
               "platform": platform.platform(), "python": platform.python_version(), "processor": platform.processor(),
               "loadavg_start": load_avg(), "cpu_busy_before_start": cpu_busy()}
    busy, ncpu = machine["cpu_busy_before_start"], os.cpu_count() or 1
    if busy is not None and busy * ncpu > max(0.5, ncpu - args.threads + 0.5):
        print(f"WARNING: other processes keep {busy:.0%} of the {ncpu} CPUs busy; with {args.threads} torch thread(s) "
              "the timings are oversubscribed and unreliable (compare only runs taken under the same load)",
              file=sys.stderr)
    old_cache_env = os.environ.get("ARCHKD_CACHE")
    with tempfile.TemporaryDirectory(prefix="archkd-bench-") as td:
        tmp = Path(td)
        os.environ["ARCHKD_CACHE"] = str(tmp / "archkd-cache")  # nothing may land in the user's cache
        teacher, data, cfg, info = build(args, tmp)
        n_train = len(data.train)
        tcfg = train_cfg(args, n_train)
        n_used = len(data.train.subset(tcfg.data_fraction, args.seed))
        s_model = create_model(args.student, num_classes=data.num_classes, in_channels=data.input_shape[0])
        s_params = sum(p.numel() for p in s_model.parameters())
        t_params = sum(p.numel() for p in teacher.module.parameters())
        print(f"data {data.name}: {n_train} train ({n_used} used, fraction {tcfg.data_fraction:.4f}), "
              f"{len(data.val)} val, {data.num_classes} classes, input {'×'.join(map(str, data.input_shape))}, "
              f"augment {data.augment.key()} [loaded in {info['data_total_load_s']:.1f} s]")
        rnd = ", random init" if info.get("teacher_random_init") else ""
        print(f"teacher {teacher.name} ({t_params:,} params{rnd})"
              f" -> student {args.student} ({s_params:,} params); {args.epochs} epoch(s), batch {args.batch_size}, "
              f"SGD, {torch.get_num_threads()} threads, device {args.device}, repeats {args.repeats}")
        info["warmup_s"] = None if args.no_warmup else round(warmup(args, data, teacher, cfg, n_train), 2)
        runs: dict[str, list[dict]] = {m: [] for m in MODES}
        for r in range(args.repeats):
            cold_root = tmp / f"teacher-cache-round{r}"  # fresh and empty for this round's cold run
            for m in MODES:
                res = run_mode(m, args, data, teacher, cfg, tcfg, cold_root if m.startswith("cached") else None)
                runs[m].append(res)
                hit = f", cache hit {res['cache']['hit_rate']:.1%}" if res["cache"] else ""
                print(f"  round {r + 1}/{args.repeats} {LABELS[m]:<24} {res['images_per_s']:8.1f} img/s, "
                      f"fit {res['seconds']:.1f} s, cpu/wall {res['cpu_per_wall']:.2f}{hit}", flush=True)
        if any(r["cache"]["misses"] for r in runs["cached_kd_warm"]):
            print("WARNING: the warm run missed the cache; its key differs from the cold run's", file=sys.stderr)
        s = summarize(runs)
        for rs in runs.values():
            for r in rs:
                if r["cache"]:
                    r["cache"].pop("dir", None)  # temp path, gone after the run
        machine["loadavg_end"] = load_avg()
        print()
        print(table(s, runs))
        print(f"load average start {machine['loadavg_start']} end {machine['loadavg_end']}; "
              f"total {time.perf_counter() - t_start:.0f} s")
        result = {
            "benchmark": "kd_throughput", "created": datetime.now().isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]), "args": vars(args), "machine": machine,
            "setup": {"data": data.describe(), "data_source": args.data, "train_images_used": n_used,
                      "data_fraction": tcfg.data_fraction, "teacher": teacher.name, "teacher_source": teacher.source,
                      "teacher_params": t_params, "teacher_random_init": bool(info.get("teacher_random_init")),
                      "student": args.student, "student_params": s_params, "train": vars(tcfg),
                      "distill": vars(cfg.distill), "data_load_s": info["data_load_s"],
                      "data_total_load_s": info["data_total_load_s"], "warmup_s": info["warmup_s"]},
            "summary": s, "runs": runs, "total_seconds": round(time.perf_counter() - t_start, 1),
        }
    if old_cache_env is None:
        os.environ.pop("ARCHKD_CACHE", None)
    else:
        os.environ["ARCHKD_CACHE"] = old_cache_env
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
