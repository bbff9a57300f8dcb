"""The skeleton the search benchmarks (autokd.py, trade.py) share: one teacher and data set, then jobs per seed.

Each job is a search (or a hand-designed student) that returns one JSON row; rows are written after every job, so a
long run that dies keeps what it finished; the benchmark's own ``finish`` turns the rows into its tables.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import torch

from akd import machine_info, make_logger, resolve_teacher, teacher_test_acc, write_json

from archkd import api
from archkd.config import Config
from archkd.data import DataBundle
from archkd.measure import measure_model
from archkd.teacher import Teacher


@dataclass
class Setup:
    """What every job of a run shares."""

    cfg: Config
    teacher: Teacher
    data: DataBundle
    log: Callable[[str], None]


def teacher_size(module: torch.nn.Module, input_shape: tuple) -> dict:
    """Parameters and peak activation bytes; a TorchScript teacher takes no forward hooks, so its peak is unknown."""
    try:
        m = measure_model(module, input_shape, latency=False)
        return {"params": m["params"], "peak_activation_bytes": m["peak_activation_bytes"]}
    except RuntimeError:
        return {"params": sum(p.numel() for p in module.parameters()), "peak_activation_bytes": None}


def run_bench(args: argparse.Namespace, bench: str, base_config: Callable[[argparse.Namespace, Path], Config],
              banner: Callable[[dict], str], jobs: list[tuple[str, Callable[[Setup, str, int], dict]]],
              row_line: Callable[[dict], str], finish: Callable[[list[dict], dict, float], dict]) -> None:
    """Train or load the teacher once, run every (seed, job), then ``finish(rows, teacher, seconds)`` -> payload
    additions with a ``table`` to print."""
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    out_path = Path(args.out)
    log = make_logger(out_path.with_suffix(".log"), args.verbose)
    tmp = Path(tempfile.mkdtemp(prefix=f"archkd-{bench}-bench-"))
    payload: dict[str, Any] = {"benchmark": bench, "dataset": args.dataset, "command": "python " + shlex.join(
        sys.argv), "created": datetime.now().isoformat(timespec="seconds"), "args": vars(args),
        "machine": machine_info(), "rows": [], "complete": False}
    try:
        cfg = base_config(args, tmp / "runs")
        teacher_path, _ = resolve_teacher(args, cfg, log)
        cfg.teacher.path = teacher_path
        teacher, data = api.prepare(cfg, log=log)
        tinfo = {"name": teacher.name, "path": teacher_path, "test_acc": teacher_test_acc(teacher, data),
                 **teacher_size(teacher.module, data.input_shape)}
        payload["teacher"] = tinfo
        print(banner(tinfo), flush=True)
        setup = Setup(cfg, teacher, data, log)
        for seed in args.seeds:
            for name, job in jobs:
                row = job(setup, name, seed)
                payload["rows"].append(row)
                print(f"{row_line(row)}; total {(time.perf_counter() - t_start) / 60:.1f} min", flush=True)
                write_json(out_path, payload)
        payload.update(finish(payload["rows"], tinfo, time.perf_counter() - t_start))
        payload.update({"complete": True, "total_seconds": time.perf_counter() - t_start,
                        "loadavg_end": list(os.getloadavg())})
        write_json(out_path, payload)
        print("\n" + payload["table"] + f"\nwrote {out_path}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
