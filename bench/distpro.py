"""DistPro vs. baselines: test accuracy of a fixed student distilled from a fixed teacher at several epoch budgets.

For every seed the student (one initialisation per seed, shared by all methods) is distilled from the same teacher
with, at every budget in ``--epochs``:

1. ``searched``:     the DistPro process (``api.process_search`` once per seed, ``--search-epochs`` epochs), replayed
                     over the full budget (``distill.process=<process.pt>``, ``process.replay=searched``);
2. ``vanilla-kd``:   Hinton KD (``distill.process=None``, alpha 0.9, T 4);
3. ``equal``:        the same pathways, every weight 1 (``process.replay=equal``);
4. ``final``:        the final weights α_T held constant (``process.replay=final``);
5. ``searched-tau``: as 1 with τ-clipping (``process.tau=--tau``): reports the share of pathway losses saved;
6. ``searched-softmax``: as 1 but replayed at the search's own scale (softmax, weights summing to 1) instead of the
                     scaled biased softmax (≈ N× larger in total): the α-scale ablation;
7. ``reviewkd``:     ReviewKD (attention-based fusion of the student's stages + HCL, ``distill.features`` with the
                     ``reviewkd`` loss on the same pre-activation stage taps), the paper's main comparison;
8. ``searched-transforms``: a second search whose candidates are pathways × {attention, conv1x1, linear}
                     (``process.transforms``), each with its own α, replayed as 1 (``-softmax``: as 6);
9. ``transfer``:     a process searched for another student (``--transfer-student``, same number of stages) replayed
                     on this one (its taps re-derived from this student's stages).

It also reports the search's cost relative to one distillation: search seconds / seconds of one vanilla-KD epoch, and
/ seconds of the ``searched`` replay run at as many epochs as the search. Everything goes through ``archkd.api``:
``prepare`` once per dataset, ``train_teacher`` (teacher cached under ``bench/results/``), ``process_search``
(its run directory holds ``report.html`` with the α curves) and ``distill``.

Run from the repository root:

    python bench/distpro.py --dataset digits     # resnet8 <- resnet20 (30 epochs, cached), epochs 1 3 10, seeds 0 1 2
    python bench/distpro.py --dataset cifar10    # ../shared/data/cifar10-jpeg.zip, 10 % of the training data,
                                                 # epochs 1 3, seeds 0 1 2: ~38 min on 2 busy cores (+ ~9 min once
                                                 # for the teacher). One replay epoch took 25-40 s and one search
                                                 # 55-80 s there, so a 10-epoch budget would add ~40 min per seed.

Prints a table (method × epochs: test accuracy mean ± std over seeds, mean seconds) and writes
``bench/results/distpro_<dataset>.json`` (every per-seed row, arguments, command line, versions, load averages).
Timings are the trainer's own (``seconds`` of ``fit``: training plus the per-epoch validation pass); all methods of a
budget run back to back, so ratios inside one run are fair even on a machine that other jobs keep busy.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

import archkd
from archkd import api
from archkd.config import Config, to_dict
from archkd.device import seed_everything
from archkd.errors import ArchkdError
from archkd.distill import evaluate
from archkd.models import create_model
from archkd.process import normalize
from archkd.teacher import check_teacher, load_teacher
from _common import load_avg  # noqa: E402  (bench/ is on sys.path when run as a script)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
CIFAR_ZIP = REPO.parent / "shared" / "data" / "cifar10-jpeg.zip"
METHODS = ("searched", "vanilla-kd", "equal", "final", "searched-tau", "searched-softmax", "reviewkd",
           "searched-transforms", "searched-transforms-softmax", "transfer")
TRANSFORM_SET = ["attention", "conv1x1", "linear"]
# per-dataset defaults: (epochs, data fraction, teacher epochs, teacher data fraction)
DEFAULTS = {"digits": dict(epochs=[1, 3, 10], data_fraction=1.0, teacher_epochs=30, teacher_data_fraction=1.0),
            "cifar10": dict(epochs=[1, 3], data_fraction=0.1, teacher_epochs=6, teacher_data_fraction=0.3)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=sorted(DEFAULTS), default="digits")
    p.add_argument("--data", default=None, help=f"data source (default: 'digits', or {CIFAR_ZIP} for cifar10)")
    p.add_argument("--epochs", type=int, nargs="+", default=None,
                   help="distillation budgets (default: digits 1 3 10; cifar10 1 3)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS[:5]))
    p.add_argument("--transfer-student", default="resnet14", help="student the transferred process is searched for")
    p.add_argument("--search-epochs", type=int, default=1, help="process.search_epochs of the DistPro search")
    p.add_argument("--tau", type=float, default=0.5, help="τ of the searched-tau replay")
    p.add_argument("--transform", default=None, help="process.transform (default: ProcessConfig's)")
    p.add_argument("--data-fraction", type=float, default=None,
                   help="train.data_fraction of search and distillation (default: digits 1.0; cifar10 0.1)")
    p.add_argument("--teacher-arch", default="resnet20")
    p.add_argument("--teacher-epochs", type=int, default=None, help="default: digits 30; cifar10 6")
    p.add_argument("--teacher-data-fraction", type=float, default=None, help="default: digits 1.0; cifar10 0.3")
    p.add_argument("--retrain-teacher", action="store_true", help="ignore a cached teacher")
    p.add_argument("--student", default="resnet8")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--alpha", type=float, default=0.9, help="vanilla KD weight (CE gets 1 - alpha)")
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--bn-recalibration", type=int, default=0,
                   help="train.bn_recalibration of every distillation (images re-estimating BN statistics before "
                        "each validation; 0: off, the library default for final training)")
    p.add_argument("--kd-cache", action="store_true",
                   help="let vanilla KD use archkd's teacher-logit cache (default: teacher forward every step, like "
                        "the process replays, so seconds compare; the cache would also make later runs warm)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch.set_num_threads (1: on 2 cores that other jobs keep busy, 2 threads oversubscribe and "
                        "ran up to 20x slower in a test)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache-dir", default=str(RESULTS / "distpro_cache"), help="archkd cache dir (decoded data)")
    p.add_argument("--runs-dir", default=None, help="default: bench/results/distpro_runs/<dataset>")
    p.add_argument("--out", default=None, help="default: bench/results/distpro_<dataset>.json")
    p.add_argument("--quiet", action="store_true", help="only this script's progress lines, not archkd's logs")
    a = p.parse_args(argv)
    d = DEFAULTS[a.dataset]
    a.epochs = sorted(set(a.epochs or d["epochs"]))
    a.data_fraction = a.data_fraction if a.data_fraction is not None else d["data_fraction"]
    a.teacher_epochs = a.teacher_epochs or d["teacher_epochs"]
    a.teacher_data_fraction = a.teacher_data_fraction if a.teacher_data_fraction is not None else \
        d["teacher_data_fraction"]
    a.data = a.data or ("digits" if a.dataset == "digits" else str(CIFAR_ZIP))
    a.runs_dir = a.runs_dir or str(RESULTS / "distpro_runs" / a.dataset)
    a.out = a.out or str(RESULTS / f"distpro_{a.dataset}.json")
    if len(set(a.seeds)) < 1 or min(a.epochs) < 1 or a.search_epochs < 1:
        p.error("need at least one seed, epochs >= 1 and --search-epochs >= 1")
    return a


def git_state() -> dict:
    def git(*cmd: str) -> str | None:
        try:
            return subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty_files": status.splitlines() if status else []}


def versions() -> dict:
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
           "archkd": archkd.__version__, "platform": platform.platform(), "processor": platform.processor(),
           "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    try:
        import sklearn

        out["sklearn"] = sklearn.__version__
    except ImportError:
        pass
    return out


def base_config(a: argparse.Namespace, seed: int, name: str) -> Config:
    """The shared part of every config of this benchmark (student recipe, data, caches)."""
    cfg = Config(name=name, runs_dir=a.runs_dir, seed=seed, device=a.device, cache_dir=a.cache_dir)
    cfg.data.source = a.data
    cfg.teacher.arch = a.teacher_arch
    cfg.student.arch = a.student
    cfg.train.batch_size = a.batch_size
    cfg.train.lr = a.lr
    cfg.train.data_fraction = a.data_fraction
    cfg.distill.alpha = a.alpha
    cfg.distill.temperature = a.temperature
    cfg.distill.cache = a.kd_cache
    cfg.train.bn_recalibration = a.bn_recalibration
    cfg.budget.latency_runtime = "torch"  # distill measures latency every call; skip the ONNX export it would need
    cfg.process.search_epochs = a.search_epochs
    if a.transform:
        cfg.process.transform = a.transform
    return cfg


def get_teacher(a: argparse.Namespace, log) -> tuple:
    """The fixed teacher (trained once and cached under bench/results/) and the data, with one ``api.prepare``."""
    cfg = base_config(a, 0, f"distpro_teacher_{a.dataset}")
    cfg.runs_dir = str(RESULTS)
    cfg.teacher.train.epochs = a.teacher_epochs
    cfg.teacher.train.data_fraction = a.teacher_data_fraction
    key = {"dataset": a.dataset, "data": a.data, "arch": a.teacher_arch, "epochs": a.teacher_epochs,
           "data_fraction": a.teacher_data_fraction, "seed": 0, "train": to_dict(cfg.teacher.train)}
    meta_path = cfg.run_dir / "distpro_teacher.json"
    ckpt = cfg.run_dir / "teacher" / "best.pt"
    cached = (not a.retrain_teacher and ckpt.is_file() and meta_path.is_file()
              and json.loads(meta_path.read_text()).get("key") == key)
    t0 = time.perf_counter()
    if cached:
        (log or print)(f"teacher: cached {ckpt}")
        cfg.teacher.path = str(ckpt)
        teacher, data = api.prepare(cfg, log=log)
        trained = json.loads(meta_path.read_text()).get("train")
    else:
        _, data = api.prepare(cfg, log=log, need_teacher=False)
        (log or print)(f"teacher: training {a.teacher_arch} for {a.teacher_epochs} epochs on {a.teacher_data_fraction:g} of the "
            "training data")
        r = api.train_teacher(cfg, log=log, data=data)
        trained = {k: r[k] for k in ("checkpoint", "val_acc", "test_acc", "seconds")}
        meta_path.write_text(json.dumps({"key": key, "train": trained}, indent=1))
        teacher = load_teacher(str(ckpt))
        check_teacher(teacher, data)
    dev = torch.device("cpu" if a.device == "auto" else a.device)
    info = {"checkpoint": str(ckpt), "cached": cached, "arch": a.teacher_arch, "epochs": a.teacher_epochs,
            "data_fraction": a.teacher_data_fraction, "params": sum(p.numel() for p in teacher.module.parameters()),
            "val_acc": evaluate(teacher.module, data.val, data.normalize, dev),
            "test_acc": evaluate(teacher.module, data.test, data.normalize, dev) if data.test is not None else None,
            "train_seconds": (trained or {}).get("seconds"), "setup_seconds": round(time.perf_counter() - t0, 2)}
    return teacher, data, info


def state_hash(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def fresh_student(a: argparse.Namespace, data, seed: int) -> torch.nn.Module:
    """The student at its seed's initialisation (what ``api.distill`` itself would build for ``cfg.seed``)."""
    seed_everything(seed)
    return create_model(a.student, num_classes=data.num_classes, in_channels=data.input_shape[0])


def run_search(a, teacher, data, seed: int, student0, log, tag: str = "", transforms: list | None = None) -> dict:
    cfg = base_config(a, seed, f"seed{seed}_search{tag}")
    cfg.process.transforms = list(transforms or [])
    t0 = time.perf_counter()
    r = api.process_search(cfg, log=log, teacher=teacher, data=data, student=copy.deepcopy(student0))
    wall = time.perf_counter() - t0
    from archkd.process import load_process

    proc = load_process(r["process"])
    replay_w = normalize(proc["trajectory"][-1].float(), cfg.process.replay_normalization).tolist()
    first_w = normalize(proc["trajectory"][0].float(), cfg.process.replay_normalization).tolist()
    return {"seed": seed, "process": r["process"], "report": str(cfg.run_dir / "report.html"),
            "pathways": r["pathways"], "steps": r["steps"], "epochs": r["epochs"], "val_acc": r["val_acc"],
            "seconds": r["seconds"], "meta_seconds": r["meta_seconds"], "wall_seconds": wall,
            "final_weights_search": r["final_weights"], "replay_weights_first": first_w,
            "replay_weights_final": replay_w, "process_config": to_dict(cfg.process)}


def transferred(process_path: str, student0, teacher, data, out: Path) -> str:
    """A process searched for another student, retargeted to this student's taps (``transfer_process``)."""
    from archkd.process.store import transfer_process

    x8, _, _ = next(data.train.batches(4, device=torch.device("cpu")))
    torch.save(transfer_process(process_path, copy.deepcopy(student0), data.normalize(x8)), out)
    return str(out)


def run_distill(a, teacher, data, seed: int, method: str, epochs: int, student0, process_path: str, log,
                tag: str = "", processes: dict | None = None) -> dict:
    cfg = base_config(a, seed, f"seed{seed}_{method}_e{epochs}{tag}")
    cfg.train.epochs = epochs
    if method == "vanilla-kd":
        cfg.distill.process = None
    elif method == "reviewkd":  # CE + the review loss on the stage taps the processes use; no logit KD (the paper's)
        from archkd.process.store import stage_taps

        x8, _, _ = next(data.train.batches(4, device=torch.device("cpu")))
        x = data.normalize(x8)
        cfg.distill.process, cfg.distill.alpha = None, 0.0
        cfg.distill.features = [{"loss": "reviewkd", "weight": 1.0,
                                 "student": stage_taps(copy.deepcopy(student0), None, x, "student"),
                                 "teacher": stage_taps(teacher.module, None, x, "teacher")}]
    else:
        cfg.distill.process = (processes or {}).get(method, process_path)
        cfg.process.replay = method if method in ("equal", "final") else "searched"
        cfg.process.tau = a.tau if method == "searched-tau" else None
        if method.endswith("-softmax"):
            cfg.process.replay_normalization = "softmax"
    t0 = time.perf_counter()
    try:
        r = api.distill(cfg, log=log, teacher=teacher, data=data, student=copy.deepcopy(student0))
    except ArchkdError as e:  # a replay that diverges is a result of that method, not the end of the benchmark
        if "diverged" not in str(e):
            raise
        return {"seed": seed, "method": method, "epochs": epochs, "test_acc": None, "diverged": str(e),
                "seconds": time.perf_counter() - t0, "pathway_loss_saved": None, "load_avg": load_avg()}
    wall = time.perf_counter() - t0
    return {"seed": seed, "method": method, "epochs": epochs, "test_acc": r["test_acc"], "val_acc": r["val_acc"],
            "seconds": r["seconds"], "wall_seconds": wall, "images_per_s": r["images_per_s"],
            "pathway_loss_saved": r["pathway_loss_saved"], "replay": r["process_replay"],
            "tau": cfg.process.tau if cfg.distill.process else None, "teacher_val_acc": r["teacher_val_acc"],
            "val_acc_by_epoch": [h.get("val_acc") for h in r["history"]],
            "train_loss_by_epoch": [h.get("train_loss") for h in r["history"]],
            "checkpoint": r["checkpoint"], "load_avg": load_avg()}


def mean_std(xs: list[float]) -> tuple[float, float]:
    xs = [x for x in xs if x is not None]
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def summarise(a, rows: list[dict], searches: list[dict], extra: list[dict]) -> dict:
    table = []
    for method in a.methods:
        for e in a.epochs:
            rs = [r for r in rows if r["method"] == method and r["epochs"] == e]
            if not rs:
                continue
            acc_m, acc_s = mean_std([r["test_acc"] for r in rs])
            sec_m, sec_s = mean_std([r["seconds"] for r in rs])
            saved = [r["pathway_loss_saved"] for r in rs if r["pathway_loss_saved"] is not None]
            table.append({"method": method, "epochs": e, "n": len(rs), "diverged": sum(bool(r.get("diverged")) for r in rs),
                          "test_acc_mean": acc_m, "test_acc_std": acc_s,
                          "seconds_mean": sec_m, "seconds_std": sec_s,
                          "pathway_loss_saved_mean": statistics.fmean(saved) if saved else None})
    cost = []
    for s in searches:
        seed = s["seed"]
        van = [r for r in rows if r["seed"] == seed and r["method"] == "vanilla-kd"]
        kd_epoch = sum(r["seconds"] for r in van) / sum(r["epochs"] for r in van) if van else None
        same = [r for r in rows + extra if r["seed"] == seed and r["method"] == "searched"
                and r["epochs"] == a.search_epochs]
        c = {"seed": seed, "search_seconds": s["seconds"], "vanilla_kd_epoch_seconds": kd_epoch,
             "searched_replay_seconds_at_search_epochs": same[0]["seconds"] if same else None}
        c["search_over_kd_epoch"] = s["seconds"] / kd_epoch if kd_epoch else None
        c["search_over_searched_replay"] = s["seconds"] / same[0]["seconds"] if same else None
        cost.append(c)
    saved = [r["pathway_loss_saved"] for r in rows if r["method"] == "searched-tau"]
    out = {"table": table, "search_cost": cost}
    for k in ("search_seconds", "vanilla_kd_epoch_seconds", "search_over_kd_epoch", "search_over_searched_replay"):
        m, sd = mean_std([c[k] for c in cost])
        out[f"{k}_mean"], out[f"{k}_std"] = m, sd
    out["tau_saved_mean"], out["tau_saved_std"] = mean_std(saved) if saved else (None, None)
    # rank of searched vs. the baselines per budget (mean test acc), stated plainly in the printout
    verdict = []
    for e in a.epochs:
        means = {t["method"]: t["test_acc_mean"] for t in table if t["epochs"] == e}
        if "searched" in means:
            others = {m: v for m, v in means.items() if not m.startswith("searched") and m != "transfer"}
            best = max(others, key=others.get) if others else None
            verdict.append({"epochs": e, "searched": means["searched"], "best_baseline": best,
                            "best_baseline_acc": others.get(best), "searched_beats_all_baselines":
                                bool(others) and all(means["searched"] > v for v in others.values())})
    out["verdict"] = verdict
    return out


def format_table(summary: dict) -> str:
    lines = [f"{'method':<19} {'epochs':>6}  {'test acc (mean ± std)':>22}  {'seconds':>8}  {'n':>2}  {'saved':>6}",
             "-" * 72]
    last = None
    for t in summary["table"]:
        if last is not None and t["method"] != last:
            lines.append("")
        last = t["method"]
        saved = f"{100 * t['pathway_loss_saved_mean']:5.1f}%" if t["method"] == "searched-tau" and \
            t["pathway_loss_saved_mean"] is not None else ""
        lines.append(f"{t['method']:<19} {t['epochs']:>6}  {100 * t['test_acc_mean']:>12.2f} ± {100 * t['test_acc_std']:5.2f} %"
                     f"  {t['seconds_mean']:>8.1f}  {t['n']:>2}  {saved:>6}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    t_start = time.perf_counter()
    started = datetime.now().isoformat(timespec="seconds")
    load_start = load_avg()
    Path(a.runs_dir).mkdir(parents=True, exist_ok=True)

    def say(msg: str) -> None:
        print(f"[distpro {time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)

    alog = None if a.quiet else (lambda m: print("    " + m, flush=True))
    say(f"dataset {a.dataset} ({a.data}), epochs {a.epochs}, seeds {a.seeds}, methods {a.methods}, "
        f"search epochs {a.search_epochs}, tau {a.tau}, data fraction {a.data_fraction:g}, threads {a.threads}, "
        f"load avg {load_start}")
    teacher, data, t_info = get_teacher(a, alog)
    say(f"teacher {a.teacher_arch}: val acc {t_info['val_acc']:.4f}, test acc {t_info['test_acc']:.4f} "
        f"({'cached' if t_info['cached'] else 'trained'}; {t_info['setup_seconds']:.0f}s incl. data)")
    rows: list[dict] = []
    searches: list[dict] = []
    extra: list[dict] = []
    inits: dict[int, str] = {}
    need_search = any(m in ("searched", "equal", "final", "searched-tau", "searched-softmax") for m in a.methods)
    for seed in a.seeds:
        student0 = fresh_student(a, data, seed)
        inits[seed] = state_hash(student0)
        proc_path, processes = None, {}
        if any(m.startswith("searched-transforms") for m in a.methods):
            say(f"seed {seed}: process search over pathways × {TRANSFORM_SET}")
            s = run_search(a, teacher, data, seed, student0, alog, tag="_transforms", transforms=TRANSFORM_SET)
            processes["searched-transforms"] = processes["searched-transforms-softmax"] = s["process"]
            say(f"seed {seed}: transforms search {s['seconds']:.1f}s; α_T: " + " ".join(
                f"{n}={w:.2f}" for n, w in zip(s["pathways"], s["final_weights_search"])))
        if "transfer" in a.methods:
            other = copy.deepcopy(a)
            other.student = a.transfer_student
            s = run_search(other, teacher, data, seed, fresh_student(other, data, seed), alog, tag="_transfer")
            processes["transfer"] = transferred(s["process"], student0, teacher, data,
                                                Path(a.runs_dir) / f"seed{seed}_transfer_process.pt")
            say(f"seed {seed}: process searched for {a.transfer_student} ({s['seconds']:.1f}s), re-tapped for "
                f"{a.student}")
        if need_search:
            say(f"seed {seed}: process search ({a.search_epochs} epoch(s))")
            s = run_search(a, teacher, data, seed, student0, alog)
            searches.append(s)
            proc_path = s["process"]
            say(f"seed {seed}: search {s['seconds']:.1f}s (meta {s['meta_seconds']:.1f}s), val acc {s['val_acc']:.4f}, "
                f"replay weights α_T: " + " ".join(f"{n}={w:.2f}" for n, w in zip(s["pathways"],
                                                                               s["replay_weights_final"])))
        for e in a.epochs:
            for method in a.methods:
                r = run_distill(a, teacher, data, seed, method, e, student0, proc_path, alog, processes=processes)
                rows.append(r)
                acc = "diverged" if r.get("diverged") else f"test acc {r['test_acc']:.4f}"
                say(f"seed {seed} {method:<12} {e:>3} ep: {acc}, {r['seconds']:.1f}s"
                    + (f", saved {100 * r['pathway_loss_saved']:.1f}%" if r.get("pathway_loss_saved") is not None
                       and method == "searched-tau" else ""))
        if need_search and a.search_epochs not in a.epochs and "searched" in a.methods:
            r = run_distill(a, teacher, data, seed, "searched", a.search_epochs, student0, proc_path, alog,
                            tag="_timing")
            extra.append(r)
            say(f"seed {seed} searched replay at {a.search_epochs} ep (timing reference): {r['seconds']:.1f}s")
    summary = summarise(a, rows, searches, extra)
    total = time.perf_counter() - t_start
    table = format_table(summary)
    report = searches[0]["report"] if searches else None
    lines = [f"DistPro benchmark — {a.dataset}: {a.student} <- {a.teacher_arch} (teacher test acc "
             f"{100 * t_info['test_acc']:.2f} %), data fraction {a.data_fraction:g}, batch {a.batch_size}, lr {a.lr}, "
             f"seeds {a.seeds}", table]
    if searches:
        def f(k: str, scale: float = 1.0, fmt: str = ".2f") -> str:
            m, sd = summary[f"{k}_mean"], summary[f"{k}_std"]
            return "n/a" if m is None or m != m else f"{scale * m:{fmt}} ± {scale * sd:{fmt}}"

        lines += ["",
                  f"search ({a.search_epochs} epoch(s)): {f('search_seconds', fmt='.1f')} s = "
                  f"{f('search_over_kd_epoch')} vanilla-KD epochs ({f('vanilla_kd_epoch_seconds', fmt='.1f')} s each)",
                  f"search / searched replay of {a.search_epochs} epoch(s): {f('search_over_searched_replay')}"]
        if summary["tau_saved_mean"] is not None:
            lines.append(f"searched-tau (τ={a.tau}): {100 * summary['tau_saved_mean']:.1f} ± "
                         f"{100 * summary['tau_saved_std']:.1f} % of pathway loss computations saved")
        for v in (v for v in summary["verdict"] if v["best_baseline"]):
            lines.append(f"{v['epochs']:>3} epochs: searched {100 * v['searched']:.2f} % vs best baseline "
                         f"{v['best_baseline']} {100 * v['best_baseline_acc']:.2f} % -> "
                         + ("searched is best" if v["searched_beats_all_baselines"] else "searched does NOT beat "
                            "all baselines"))
        lines.append(f"α curves (report of seed {searches[0]['seed']}): {report}")
    lines.append(f"total {total:.0f} s; load avg start {load_start}, end {load_avg()}")
    text = "\n".join(lines)
    print("\n" + text, flush=True)
    out = {"benchmark": "distpro", "created": started, "finished": datetime.now().isoformat(timespec="seconds"),
           "command": " ".join(shlex.quote(x) for x in [sys.executable, *sys.argv]), "args": vars(a),
           "versions": versions(), "git": git_state(), "load_avg_start": load_start, "load_avg_end": load_avg(),
           "total_seconds": total, "teacher": t_info, "dataset": data.describe(), "student_init_hash": inits,
           "searches": searches, "rows": rows, "timing_rows": extra, "summary": summary, "report": report,
           "printed": text}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1, default=str))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
