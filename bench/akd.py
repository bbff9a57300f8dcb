"""AKD ("Search to Distill"): KD-guided RL search vs NAS-then-KD vs KD-guided random search, at equal trials.

Three strategies, each searching the ``mnas`` space for the same number of trials under ONE latency target T
(reward ``ACC × (LAT/T)^w``, latency measured with ONNX Runtime on 1 thread), over several seeds:

1. ``akd``:         ``search.method=akd``, ``guide=kd``: the LSTM controller, candidates scored by KD-trained accuracy;
2. ``nas-then-kd``: ``search.method=akd``, ``guide=ce``: the same controller, candidates scored by CE-trained accuracy;
3. ``random``:      ``search.method=random``, ``guide=kd``: uniform random candidates, KD-trained accuracy.

For every (method, seed) the single winner (best search reward) is distilled with the full KD recipe
(``api.distill``), tested, its latency re-measured and its final reward computed. The same winner-then-KD step is
what makes the second strategy "NAS then KD": only the search signal differs between the first two.

``--methods random random-joint`` (or ``akd akd-joint``) measures the joint student + process search instead: the
``*-joint`` twin scores every candidate by a short DistPro process search (``search.process=true``) and distils its
winner with the process searched in the winner's trial; the table adds its search time over the plain twin's.

Run from the repository root:

    python bench/akd.py --dataset digits     # default: resnet20 teacher trained once (cached), 12 trials, ~14 min
    python bench/akd.py --dataset cifar10    # ../shared data + teacher, low fidelity, ~33 min on 2 busy cores

Prints one line per finished (method, seed) and a table; writes ``bench/results/akd_<dataset>.json`` (rewritten after
every run, so a long run that dies keeps what it finished) and the library's own log to ``bench/results/akd_<dataset>.log``.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import archkd
from archkd import api
from archkd.config import Config
from archkd.data import DataBundle
from archkd.distill import evaluate
from archkd.measure import REPEATS, WARMUP, measure_latency
from archkd.models import build_from_spec
from archkd.search import Reward
from archkd.spaces import create_space
from archkd.teacher import Teacher

from _common import fill_presets  # noqa: E402  (bench/ is on sys.path when run as a script)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
CIFAR_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg.zip"
CIFAR_TEACHER = REPO.parent / "shared" / "teachers" / "cifar10_resnet_w32.torchscript.pt"
RUNTIME, LAT_THREADS = "onnxruntime", 1  # with archkd.measure's one protocol (WARMUP/REPEATS), as Budget.measure

# method -> (search.method, search.guide, search.process). The *-joint methods score each candidate by a short DistPro
# process search instead of plain KD and finalise the winner with its trial's process: with the same sampler and seed
# as their plain twin they train the same first candidates (random: all of them), so the ratio of search seconds is
# the measured cost of the joint search.
METHODS: dict[str, tuple[str, str, bool]] = {
    "akd": ("akd", "kd", False), "nas-then-kd": ("akd", "ce", False), "random": ("random", "kd", False),
    "akd-joint": ("akd", "kd", True), "random-joint": ("random", "kd", True)}
DEFAULT_METHODS = ["akd", "nas-then-kd", "random"]

# Per-dataset defaults; every entry is also a flag. CIFAR-10 numbers were checked against measurements on this machine
# (2 cores shared with another job, load 2-4): with 1 torch thread and channels_last, random mnas students train at
# ~300 img/s and evaluate at ~1,500 img/s, so a trial (1 epoch on 10 % = 4,500 images, 5,000 val images) is ~20 s
# and one (method, seed) with its final KD 2.5-5 min: 9 runs measured 33 min.
PRESETS: dict[str, dict[str, Any]] = {
    "digits": {"trials": 12, "trial_epochs": 4, "search_data_fraction": 1.0, "final_epochs": 30,
               "final_data_fraction": 1.0, "num_stages": 3, "layers": None, "channels_last": False},
    "cifar10": {"trials": 8, "trial_epochs": 1, "search_data_fraction": 0.1, "final_epochs": 2,
                "final_data_fraction": 0.2, "num_stages": 3, "layers": [1, 2], "channels_last": True},
}

Log = Callable[[str], None]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags; ``None`` means "the dataset's preset" so one flag set serves both datasets."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=sorted(PRESETS), default="digits")
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=DEFAULT_METHODS,
                   help="akd-joint / random-joint: the joint student + process search (search.process=true)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--trials", type=int, help="completed trials per search (digits 12, cifar10 8)")
    p.add_argument("--trial-epochs", type=int, help="epochs per search trial (digits 4, cifar10 1)")
    p.add_argument("--search-data-fraction", type=float, help="share of train data per trial (digits 1, cifar10 0.1)")
    p.add_argument("--final-epochs", type=int, help="epochs of the winner's final KD (digits 30, cifar10 2)")
    p.add_argument("--final-data-fraction", type=float, help="train.data_fraction of the final KD (digits 1, "
                   "cifar10 0.2)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="data.val_fraction: the split searches read")
    p.add_argument("--num-stages", type=int, help="mnas space_kwargs num_stages (3 for both)")
    p.add_argument("--layers", type=int, nargs="+", help="mnas space_kwargs layers (digits: space default 1-4; "
                   "cifar10: 1 2)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="train.channels_last (cifar10: on, since depthwise 5x5 backward is up to 10x slower in NCHW "
                        "on CPU; digits: library default)")
    p.add_argument("--controller-batch-size", type=int, default=4,
                   help="trials per PPO update of the AKD controller (library default 8 would give 8-trial searches "
                        "no update at all)")
    p.add_argument("--reward-mode", choices=["soft", "hard"], default="soft")
    p.add_argument("--target-ms", type=float, nargs="+",
                   help="latency target(s) T; default: the --target-quantiles of --probe-n random configs")
    p.add_argument("--target-quantiles", type=float, nargs="+", default=[0.5],
                   help="targets as quantiles of the probed latencies (0.5: the median; 0.25 0.75: two targets)")
    p.add_argument("--probe-n", type=int, default=20, help="random mnas configs measured to set T")
    p.add_argument("--probe-seed", type=int, default=0)
    p.add_argument("--teacher", help="teacher file (default: digits: resnet20 trained once and cached in "
                   "bench/results/; cifar10: ../shared/teachers/cifar10_resnet_w32.torchscript.pt)")
    p.add_argument("--data", help="data source (default: digits, or ../shared/data/cifar10-jpeg.zip)")
    p.add_argument("--teacher-epochs", type=int, default=30, help="digits teacher training epochs")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (0: torch's default). 1 because on 2 cores shared with other jobs, 2 "
                        "threads oversubscribe them: training measured 5x (cifar10) to 20-50x (digits) slower")
    p.add_argument("--runs-dir", help="keep run directories here (default: a temp dir, deleted at the end)")
    p.add_argument("--cache-dir", help="archkd cache (decoded data, teacher logits; default: fresh, inside the "
                   "runs dir, so every invocation pays the same cache fills)")
    p.add_argument("--out", help="JSON path (default bench/results/akd_<dataset>.json)")
    p.add_argument("--verbose", action="store_true", help="also print the library's log (trial tables, epochs)")
    return fill_presets(p.parse_args(argv), PRESETS, "akd")


def make_logger(path: Path, verbose: bool) -> Log:
    """The library's log goes to a file (poll it during long runs); stdout keeps one line per finished run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "w", buffering=1)

    def log(msg: str) -> None:
        fh.write(msg + "\n")
        if verbose:
            print(msg, flush=True)

    return log


def base_config(args: argparse.Namespace, runs_dir: Path, cache_dir: Path) -> Config:
    """The settings every (method, seed) shares; ``run_one`` only changes name, seed, method and guide."""
    cfg = Config(name="base", runs_dir=str(runs_dir), cache_dir=str(cache_dir), seed=0, device="cpu")
    cfg.data.source = args.data or ("digits" if args.dataset == "digits" else str(CIFAR_DATA))
    cfg.data.val_fraction = args.val_fraction
    cfg.search.space = "mnas"
    cfg.search.space_kwargs = {"num_stages": args.num_stages, **({"layers": args.layers} if args.layers else {})}
    cfg.search.n_trials = args.trials
    cfg.search.epochs = args.trial_epochs
    cfg.search.data_fraction = args.search_data_fraction
    cfg.search.reward_metric = "latency_ms"
    cfg.search.reward_mode = args.reward_mode
    cfg.search.sampler_options = {"batch_size": args.controller_batch_size}
    cfg.budget.latency_runtime = RUNTIME
    cfg.budget.latency_threads = LAT_THREADS
    cfg.train.epochs = args.final_epochs
    cfg.train.data_fraction = args.final_data_fraction
    cfg.train.channels_last = args.channels_last or None  # None = library default (off on CPU)
    cfg.teacher.arch = "resnet20"
    cfg.teacher.train.epochs = args.teacher_epochs
    return cfg


def digits_teacher(cfg: Config, log: Log) -> tuple[str, dict]:
    """Train the digits resnet20 teacher once and cache its checkpoint in bench/results/ (git-ignored).

    Why cache: every invocation would otherwise spend ~30 s retraining a teacher that is not what is compared.
    """
    ckpt = RESULTS / f"akd_teacher_digits_{cfg.teacher.arch}_e{cfg.teacher.train.epochs}_s{cfg.seed}.pt"
    info = ckpt.with_suffix(".json")
    if ckpt.is_file() and info.is_file():
        return str(ckpt), {**json.loads(info.read_text()), "cached": True}
    tcfg = copy.deepcopy(cfg)
    tcfg.name = "teacher"
    out = api.train_teacher(tcfg, log=log)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(out["checkpoint"], ckpt)
    meta = {k: out[k] for k in ("name", "params", "val_acc", "test_acc", "seconds")}
    info.write_text(json.dumps(meta, indent=1))
    return str(ckpt), {**meta, "cached": False}


def resolve_teacher(args: argparse.Namespace, cfg: Config, log: Log) -> tuple[str, dict]:
    """The teacher file for this dataset; CIFAR-10 inputs must already exist (no download here)."""
    if args.teacher:
        return args.teacher, {"source": args.teacher}
    if args.dataset == "digits":
        return digits_teacher(cfg, log)
    missing = [str(p) for p in (Path(cfg.data.source), CIFAR_TEACHER) if not p.exists()]
    if missing:
        sys.exit(f"akd bench: missing {', '.join(missing)} — the cifar10 benchmark needs the shared CIFAR-10 zip and "
                 "teacher next to the repository (../shared/...), or give --data and --teacher")
    return str(CIFAR_TEACHER), {"source": str(CIFAR_TEACHER)}


def probe_target(cfg: Config, data: DataBundle, n: int, seed: int) -> tuple[float, list[float]]:
    """T = median ONNX Runtime latency of ``n`` random configs, so roughly half the space is over target."""
    space = create_space(cfg.search.space, **cfg.search.space_kwargs)
    rng = np.random.default_rng(seed)
    lats = []
    for _ in range(n):
        model = space.build(space.sample_rng(rng), data.input_shape, data.num_classes)
        lats.append(measure_latency(model, data.input_shape, runtime=RUNTIME, threads=LAT_THREADS,
                                    warmup=WARMUP, repeats=REPEATS).median_ms)
    return float(np.median(lats)), lats


def teacher_test_acc(teacher: Teacher, data: DataBundle) -> float | None:
    """The teacher's test accuracy: the ceiling the distilled winners are read against."""
    return evaluate(teacher.module, data.test, data.normalize, "cpu") if data.test is not None else None


def best_so_far(trials: list[dict]) -> list[float]:
    """The best search reward after each trained trial, in trial order (over-budget draws cost no training and are
    skipped; with the soft reward there are none)."""
    out, best = [], float("-inf")
    for t in sorted(trials, key=lambda t: t["number"]):
        if t["state"] != "COMPLETE" or t.get("reward") is None:
            continue
        best = max(best, t["reward"])
        out.append(best)
    return out


def run_one(base: Config, method: str, seed: int, teacher: Teacher, data: DataBundle, target: float,
            log: Log) -> dict:
    """Search with one strategy and seed, then distill its single winner with the full recipe and score it."""
    cfg = copy.deepcopy(base)
    cfg.name = f"{method}-s{seed}-T{target:.4f}"
    cfg.seed = seed
    cfg.search.method, cfg.search.guide, cfg.search.process = METHODS[method]
    if cfg.search.method != "akd":
        cfg.search.sampler_options = {}  # the controller batch size is the akd sampler's option only
    cfg.search.reward_target = target
    t0 = time.perf_counter()
    log(f"===== {cfg.name}: search.method={cfg.search.method} guide={cfg.search.guide} process={cfg.search.process} "
        f"seed={seed} T={target:.4f} ms")
    found = api.search(cfg, log=log, teacher=teacher, data=data)
    best = found["best"]
    t_search = time.perf_counter() - t0
    cfg.distill.process = best.get("process")  # joint search: the winner's own process, replayed over the full budget
    final = api.distill(cfg, log=log, teacher=teacher, data=data, student=build_from_spec(best["spec"]),
                        subdir="final")
    lat = final["latency"][RUNTIME]
    reward = Reward.make(target, cfg.search.reward_metric, cfg.search.reward_mode, cfg.search.reward_alpha,
                         cfg.search.reward_beta)
    done = [t for t in found["trials"] if t["state"] == "COMPLETE"]
    return {
        "method": method, "seed": seed, "target_ms": target, "best_so_far": best_so_far(found["trials"]),
        "policy_updates": (len(done) // cfg.search.sampler_options.get("batch_size", 8)
                           if cfg.search.method == "akd" else None),
        "search_method": cfg.search.method, "guide": cfg.search.guide,
        "search_process": cfg.search.process, "final_process": final["process"],
        "best_trial": best["number"], "best_config": best["config"], "params": best["params"],
        "flops": best["flops"], "search_val_acc": best["val_acc"], "search_reward": best["reward"],
        "search_latency_ms": best["latency_ms"], "final_val_acc": final["val_acc"],
        "final_test_acc": final["test_acc"], "final_latency_ms": lat["median_ms"],
        "final_latency_iqr_ms": lat["iqr_ms"], "final_reward": reward(final["val_acc"], {"latency_ms": lat["median_ms"]}),
        "meets_target": lat["median_ms"] <= target, "teacher_val_acc": final["teacher_val_acc"],
        "trials_completed": len(done), "unique_trained": len({json.dumps(t["config"], sort_keys=True) for t in done}),
        "search_seconds": t_search, "final_seconds": final["seconds"], "elapsed_s": time.perf_counter() - t0,
        "final_cache": final.get("cache"), "loadavg": list(os.getloadavg()),
        "trials": [{k: t[k] for k in ("number", "state", "params", "latency_ms", "val_acc", "reward", "seconds")}
                   for t in found["trials"]],
    }


def progress_line(r: dict, total_s: float) -> str:
    return (f"{r['method']:<12} seed {r['seed']}: search reward {r['search_reward']:.4f} (val {r['search_val_acc']:.4f}, "
            f"{r['search_latency_ms']:.3f} ms) -> final test {r['final_test_acc']:.4f}, {r['final_latency_ms']:.3f} ms "
            f"{'<=' if r['meets_target'] else '> '} T, final reward {r['final_reward']:.4f}; {r['params']:,} params; "
            f"{r['elapsed_s']:.0f} s (search {r['search_seconds']:.0f} + final {r['final_seconds']:.0f}); "
            f"total {total_s / 60:.1f} min")


def _mean_std(xs: list[float]) -> tuple[float, float]:
    return float(statistics.fmean(xs)), float(statistics.stdev(xs)) if len(xs) > 1 else 0.0


def summarize(rows: list[dict], methods: list[str]) -> dict:
    """Per-method means ± sample std over seeds, plus akd's mean final test accuracy over each baseline's."""
    out: dict[str, Any] = {}
    for m in methods:
        rs = [r for r in rows if r["method"] == m]
        if not rs:
            continue
        out[m] = {"n_seeds": len(rs),
                  "search_reward": _mean_std([r["search_reward"] for r in rs]),
                  "final_test_acc": _mean_std([r["final_test_acc"] for r in rs]),
                  "final_reward": _mean_std([r["final_reward"] for r in rs]),
                  "final_latency_ms_mean": float(statistics.fmean(r["final_latency_ms"] for r in rs)),
                  "meets_target": sum(r["meets_target"] for r in rs),
                  "seconds_mean": float(statistics.fmean(r["elapsed_s"] for r in rs)),
                  "search_seconds_mean": float(statistics.fmean(r["search_seconds"] for r in rs))}
    for m in out:  # the measured cost of a joint search: its search seconds over its plain twin's, seed by seed
        twin = m[:-len("-joint")] if m.endswith("-joint") else None
        pairs = [(r, t) for r in rows if r["method"] == m for t in rows if t["method"] == twin and t["seed"] == r["seed"]]
        if pairs:
            out[m]["search_cost_vs_" + twin] = _mean_std([r["search_seconds"] / t["search_seconds"] for r, t in pairs])
            out[m]["same_winner_as_" + twin] = sum(r["best_config"] == t["best_config"] for r, t in pairs)
    if "akd" in out:
        for m in out:
            if m != "akd":
                out[m]["akd_test_acc_ratio"] = out["akd"]["final_test_acc"][0] / out[m]["final_test_acc"][0]
    return out


def format_table(summary: dict, target: float, title: str) -> str:
    """Plain-text table (no rich: it goes to logs and to the README as is)."""
    head = (f"{'method':<12} {'seeds':>5} {'search reward':>17} {'final test acc':>17} {'final reward':>17} "
            f"{'lat ms (mean)':>13} {'<= T':>5} {'akd/this acc':>12} {'s/run':>6}")
    lines = [title, head, "-" * len(head)]
    for m, s in summary.items():
        ratio = s.get("akd_test_acc_ratio")
        lines.append(
            f"{m:<12} {s['n_seeds']:>5} {s['search_reward'][0]:>8.4f} ± {s['search_reward'][1]:<6.4f} "
            f"{s['final_test_acc'][0]:>8.4f} ± {s['final_test_acc'][1]:<6.4f} "
            f"{s['final_reward'][0]:>8.4f} ± {s['final_reward'][1]:<6.4f} {s['final_latency_ms_mean']:>13.3f} "
            f"{s['meets_target']:>3}/{s['n_seeds']:<1} {('-' if ratio is None else f'{ratio:.3f}'):>12} "
            f"{s['seconds_mean']:>6.0f}")
    for m, s in summary.items():
        for k, v in s.items():
            if k.startswith("search_cost_vs_"):
                twin = k[len("search_cost_vs_"):]
                lines.append(f"{m}: search time {v[0]:.2f} ± {v[1]:.2f}× {twin}'s "
                             f"({s['search_seconds_mean']:.0f} s vs {summary[twin]['search_seconds_mean']:.0f} s); "
                             f"same winner in {s['same_winner_as_' + twin]}/{s['n_seeds']} seeds")
    lines.append(f"T = {target:.4f} ms ({RUNTIME}, {LAT_THREADS} thread, batch 1); '<= T': winners whose re-measured "
                 "latency meets T; mean ± sample std over seeds.\nnas-then-kd's search reward is from CE-trained "
                 "accuracy, the others' from KD-trained: compare methods on the final columns.")
    return "\n".join(lines)


def format_curves(rows: list[dict], methods: list[str], trials: int) -> str:
    """Best-so-far search reward after n trials (mean ± std over seeds) at n = 8, 16, 32, ... up to the trial count."""
    points = [n for n in (4, 8, 16, 32, 64, 128) if n <= trials] or [trials]
    head = f"{'best-so-far after n trials':<26}" + "".join(f"{f'n={n}':>17}" for n in points)
    lines = [head]
    for m in methods:
        rs = [r for r in rows if r["method"] == m and r["best_so_far"]]
        if not rs:
            continue
        cells = []
        for n in points:
            vals = [r["best_so_far"][min(n, len(r["best_so_far"])) - 1] for r in rs]
            mu, sd = _mean_std(vals)
            cells.append(f"{mu:>9.4f} ± {sd:<5.4f}")
        upd = [r["policy_updates"] for r in rs if r.get("policy_updates") is not None]
        lines.append(f"{m:<26}" + "".join(f"{c:>17}" for c in cells)
                     + (f"  ({min(upd)} policy updates)" if upd else ""))
    lines.append("(nas-then-kd's rewards come from CE-trained accuracy, the others' from KD-trained accuracy)")
    return "\n".join(lines)


def machine_info() -> dict:
    """Versions and machine state: timings only compare under the same load and builds."""
    import onnxruntime
    import optuna

    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "src"], capture_output=True,
                                    text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "optuna": optuna.__version__,
            "numpy": np.__version__, "archkd": archkd.__version__, "git_commit": commit, "src_dirty": dirty,
            "python": platform.python_version(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "torch_num_threads": torch.get_num_threads()}


def write_json(path: Path, payload: dict) -> None:
    """Atomic rewrite, so a poller never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    load_start = list(os.getloadavg())
    out_path = Path(args.out)
    log = make_logger(out_path.with_suffix(".log"), args.verbose)
    tmp_root = None if args.runs_dir else Path(tempfile.mkdtemp(prefix="archkd-akd-bench-"))
    runs_dir = Path(args.runs_dir) / f"{args.dataset}-{datetime.now():%Y%m%d-%H%M%S}" if args.runs_dir else tmp_root / "runs"
    cache_dir = Path(args.cache_dir) if args.cache_dir else runs_dir.parent / "cache"
    payload: dict[str, Any] = {"benchmark": "akd", "dataset": args.dataset, "created": datetime.now().isoformat(
        timespec="seconds"), "command": "python " + shlex.join(sys.argv), "args": vars(args),
        "machine": machine_info(), "loadavg_start": load_start, "complete": False}
    try:
        cfg = base_config(args, runs_dir, cache_dir)
        print(f"AKD benchmark on {args.dataset}: methods {', '.join(args.methods)}; seeds {args.seeds}; "
              f"{args.trials} trials × {args.trial_epochs} epoch(s) × {args.search_data_fraction:g} data; final KD "
              f"{args.final_epochs} epochs × {args.final_data_fraction:g} data; space mnas {cfg.search.space_kwargs}; "
              f"library log: {out_path.with_suffix('.log')}", flush=True)
        teacher_path, teacher_info = resolve_teacher(args, cfg, log)
        cfg.teacher.path = teacher_path
        teacher, data = api.prepare(cfg, log=log)
        teacher_info["test_acc_measured"] = teacher_test_acc(teacher, data)
        t_setup = time.perf_counter() - t_start
        print(f"teacher {teacher_path}: test acc {teacher_info['test_acc_measured']:.4f}; data {data.name}: "
              f"{len(data.train)} train / {len(data.val)} val / {len(data.test) if data.test else 0} test, input "
              f"{'x'.join(map(str, data.input_shape))}; setup {t_setup:.0f} s", flush=True)
        if args.target_ms is not None:
            targets, probe = list(args.target_ms), []
            print(f"T = {', '.join(f'{t:.4f}' for t in targets)} ms (given)", flush=True)
        else:
            _, probe = probe_target(cfg, data, args.probe_n, args.probe_seed)
            targets = [float(np.quantile(probe, q)) for q in args.target_quantiles]
            print(f"T = {', '.join(f'{t:.4f}' for t in targets)} ms: quantiles {args.target_quantiles} of the "
                  f"{RUNTIME} latency (1 thread, batch 1) of {len(probe)} random mnas configs at "
                  f"{'x'.join(map(str, data.input_shape))} (range {min(probe):.4f}-{max(probe):.4f} ms)", flush=True)
        cache = api.make_cache(cfg, teacher, data)
        print(f"teacher-output cache: {cache.dir.parent if cache else None} — shared by all runs and the final "
              "distillations (keyed by teacher, data, augmentation and seed, so runs with the same seed reuse each "
              "other's logits; the nas-then-kd search trains with CE and does not read it, its final KD does)",
              flush=True)
        payload.update({"targets_ms": targets, "target_probe_ms": probe, "teacher": {"path": teacher_path, **teacher_info},
                        "data": data.describe(), "teacher_cache_root": str(cache.dir.parent) if cache else None,
                        "setup_seconds": t_setup, "rows": []})
        for target in targets:
            for seed in args.seeds:
                for method in args.methods:
                    row = run_one(cfg, method, seed, teacher, data, target, log)
                    payload["rows"].append(row)
                    print(progress_line(row, time.perf_counter() - t_start), flush=True)
                    write_json(out_path, payload)
        total = time.perf_counter() - t_start
        summaries, tables = {}, []
        for target in targets:
            rows = [r for r in payload["rows"] if r["target_ms"] == target]
            summaries[f"{target:.4f}"] = summary = summarize(rows, args.methods)
            tables.append(format_table(summary, target, f"AKD benchmark — {args.dataset}, T = {target:.4f} ms, "
                                       f"{args.trials} trials per search, {len(args.seeds)} seeds"))
            tables.append(format_curves(rows, args.methods, args.trials))
        table = "\n\n".join(tables) + f"\ntotal {total / 60:.1f} min"
        payload.update({"summary": summaries, "table": table, "total_seconds": total,
                        "loadavg_end": list(os.getloadavg()), "complete": True})
        write_json(out_path, payload)
        print("\n" + table + f"\nwrote {out_path}", flush=True)
    finally:
        if tmp_root is not None:
            shutil.rmtree(tmp_root, ignore_errors=True)


if __name__ == "__main__":
    main()
