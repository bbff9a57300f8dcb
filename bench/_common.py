"""Helpers shared by the benchmark scripts."""
from __future__ import annotations

import os
import shlex
import sys
import time
from datetime import datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CLI = [sys.executable, "-c", "from archkd.cli import main; main()"]  # the archkd command in this interpreter


def cpu_busy(interval: float = 1.0) -> float | None:
    """Fraction of all CPUs busy (other processes included) over ``interval`` seconds, from /proc/stat (Linux)."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + (v[4] if len(v) > 4 else 0)

    try:
        t0, i0 = sample()
        time.sleep(interval)
        t1, i1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return round(1 - (i1 - i0) / max(1, t1 - t0), 3)


def load_avg() -> list[float] | None:
    """1/5/15-minute load averages, recorded with every benchmark: numbers taken on a busy machine are not comparable."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def train_digits_teacher(out_dir: Path, arch: str = "resnet8", epochs: int = 10) -> str:
    """A small digits teacher trained here (≈10 s on one core), for benchmarks of the search machinery itself."""
    from archkd import api
    from archkd.config import Config

    cfg = Config(name="teacher", runs_dir=str(out_dir), cache_dir=str(Path(out_dir) / "cache"))
    cfg.teacher.arch = arch
    cfg.teacher.train.epochs = epochs
    return api.train_teacher(cfg, log=None)["checkpoint"]


def write_result(path: str | Path, payload: dict) -> dict:
    """Write a benchmark's JSON with the machine's load and the library versions beside its numbers."""
    import json

    import optuna
    import torch

    payload = {"command": "python " + shlex.join(sys.argv), "created": datetime.now().isoformat(timespec="seconds"),
               **payload, "load_avg": load_avg(), "cpus": os.cpu_count(),
               "versions": {"torch": torch.__version__, "optuna": optuna.__version__}}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return payload


def bench_config(bench: str, dataset: str, name: str, seed: int, val_fraction: float, overrides: list[str]):
    """A benchmark run's config: its run and cache directories under ``results/<bench>_<dataset>/``, the dataset
    (digits, or the CIFAR-10 zip in ../shared), seed and validation split, then the benchmark's own ``overrides``."""
    from archkd.config import load_config

    root = RESULTS / f"{bench}_{dataset}"
    data = "digits" if dataset == "digits" else str(Path(__file__).resolve().parents[2] / "shared" / "data" /
                                                      "cifar10-jpeg.zip")
    return load_config(overrides=[f"name={name}", f"runs_dir={root}", f"cache_dir={root / 'cache'}", f"seed={seed}",
                                  f"data.source={data}", f"data.val_fraction={val_fraction}", *overrides])


def fill_presets(args, presets: dict, bench: str):
    """Flags left unset take the dataset's preset; the JSON goes to ``results/<bench>_<dataset>.json`` by default."""
    for k, v in presets[args.dataset].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.out = args.out or str(RESULTS / f"{bench}_{args.dataset}.json")
    return args
