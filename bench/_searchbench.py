"""The skeleton the search benchmarks (autokd.py, trade.py) share: one teacher and data set, then jobs per seed.

Each job is a search (or a hand-designed student) that returns one JSON row; rows are written after every job, so a
long run that dies keeps what it finished, and running the same command again **resumes**: the (job, seed) rows
already in ``--out`` are kept and skipped (the file's arguments must match, apart from which seeds, methods and
hand-designed students run). Seeds can run as separate processes on separate cores (``--seeds 1 --out X_s1.json``) and
be pooled afterwards with ``--combine X_s0.json X_s1.json`` (same arguments required). The benchmark's own ``finish``
turns the rows into its tables.
"""
from __future__ import annotations

import argparse
import json
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

from akd import CIFAR_DATA, machine_info, make_logger, resolve_teacher, teacher_test_acc, write_json

from archkd import api
from archkd.config import Config
from archkd.data import DataBundle
from archkd.measure import measure_model
from archkd.models import build_from_spec
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


def add_run_args(p: argparse.ArgumentParser) -> None:
    """The arguments every such benchmark shares: its inputs, threads, output, resuming and pooling."""
    p.add_argument("--teacher", help="teacher file (digits: resnet20 trained once and cached; cifar10: ../shared)")
    p.add_argument("--data", help="data source (default: digits, or the shared CIFAR-10 zip for --dataset cifar10)")
    p.add_argument("--teacher-epochs", type=int, default=30, help="epochs of the digits teacher trained once")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: one benchmark per core)")
    p.add_argument("--out", help="result JSON (default bench/results/<benchmark>_<dataset>.json); re-running resumes")
    p.add_argument("--verbose", action="store_true", help="print the library's log, not only one line per job")
    p.add_argument("--combine", nargs="+", metavar="JSON",
                   help="pool result files of separate processes (e.g. one per seed) into --out; runs nothing")


# The recipe flags these benchmarks share, each with the config key it sets and its help: a benchmark names the ones
# it takes (``bench_parser``) and ``shared_config`` sets whichever the parsed arguments hold. A flag left unset takes
# the dataset's preset (``fill_presets``).
RECIPE_FLAGS: dict[str, tuple[str, type, str]] = {
    "trials": ("search.n_trials", int, "completed trials per search"),
    "trial_epochs": ("search.epochs", int, "epochs of a search trial"),
    "search_data_fraction": ("search.data_fraction", float, "share of the training images a search trial sees"),
    "trial_data_fraction": ("search.data_fraction", float, "share of the training images a search trial sees"),
    "epochs": ("train.epochs", int, "epochs of each training"),
    "data_fraction": ("train.data_fraction", float, "share of the training images each training sees"),
    "final_epochs": ("train.epochs", int, "epochs of the winner's final KD"),
    "final_data_fraction": ("train.data_fraction", float, "share of the training images of the final KD"),
    "final_bn_recalibration": ("train.bn_recalibration", int, "train.bn_recalibration of the final trainings"),
    "max_params": ("budget.max_params", int, "the students' parameter budget"),
    "val_fraction": ("data.val_fraction", float, "data.val_fraction: the split searches read"),
}


# The search-and-distil recipe the method benchmarks (autokd.py, trade.py) share per dataset; each adds its trial
# count and parameter budget. CIFAR-10 at a fidelity where students learn on one CPU thread: a trial sees a fifth of
# the training images once, the winner gets 5 epochs on that fifth; 5,000 images held out for validation.
SEARCH_PRESETS: dict[str, dict[str, Any]] = {
    "digits": {"trial_epochs": 4, "search_data_fraction": 1.0, "final_epochs": 20, "final_data_fraction": 1.0,
               "val_fraction": 0.1, "final_bn_recalibration": 0},
    "cifar10": {"trial_epochs": 1, "search_data_fraction": 0.2, "final_epochs": 5, "final_data_fraction": 0.2,
                "val_fraction": 0.1, "final_bn_recalibration": 0},
}


def bench_parser(doc: str, presets: dict, default_dataset: str, recipe: tuple[str, ...]) -> argparse.ArgumentParser:
    """A benchmark's parser: its docstring as help, ``--dataset`` over its presets, and its ``recipe`` flags
    (names of ``RECIPE_FLAGS``); the benchmark adds its own flags, then ``add_run_args``."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=doc)
    p.add_argument("--dataset", choices=sorted(presets), default=default_dataset)
    for name in recipe:
        key, kind, text = RECIPE_FLAGS[name]
        p.add_argument("--" + name.replace("_", "-"), type=kind, help=f"{text} ({key}; default: the dataset's preset)")
    return p


def shared_config(args: argparse.Namespace, runs_dir: Path) -> Config:
    """What every job's config starts from: run and cache folders, CPU, the data, the digits teacher's recipe (a
    CIFAR-10 teacher is given), then every recipe flag the benchmark takes (``RECIPE_FLAGS``)."""
    cfg = Config(name="base", runs_dir=str(runs_dir), cache_dir=str(runs_dir.parent / "cache"), device="cpu")
    cfg.data.source = args.data or ("digits" if args.dataset == "digits" else str(CIFAR_DATA))
    cfg.teacher.arch = "resnet20"
    cfg.teacher.train.epochs = args.teacher_epochs
    for name, (key, _, _) in RECIPE_FLAGS.items():
        if getattr(args, name, None) is not None:
            *parents, leaf = key.split(".")
            section = cfg
            for part in parents:
                section = getattr(section, part)
            setattr(section, leaf, getattr(args, name))
    return cfg


def search_and_distill(st: Setup, cfg: Config) -> tuple[dict, float, dict]:
    """One search on the shared teacher and data, then its best trial's student distilled with the full recipe:
    ``(search result, search seconds, final result)``."""
    t0 = time.perf_counter()
    found = api.search(cfg, log=st.log, teacher=st.teacher, data=st.data)
    t_search = time.perf_counter() - t0
    best = found["best"]
    final = api.distill(api.trial_config(cfg, best), log=st.log, teacher=st.teacher, data=st.data,
                        student=build_from_spec(best["student_spec"]), subdir="final")
    return found, t_search, final


# arguments that do not change what a row measures (or that each row records itself, as fidelity.py's check count): a
# result file with other values of these still resumes/combines
NEUTRAL_ARGS = ("seeds", "methods", "fidelities", "check", "hand", "shard", "out", "verbose", "combine", "threads",
                "reference")


def row_key(row: dict) -> tuple[str, int]:
    """(job name, seed) of a row; hand-designed students are rows whose method is ``hand:<job>``."""
    return row.get("job", row["method"].removeprefix("hand:")), int(row["seed"])


def measured(args: dict) -> dict:
    return {k: v for k, v in args.items() if k not in NEUTRAL_ARGS}


def earlier_rows(out_path: Path, args: argparse.Namespace) -> list[dict]:
    """The rows of a previous run of the same benchmark with the same arguments (nothing if there is none)."""
    if not out_path.is_file():
        return []
    prev = json.loads(out_path.read_text())
    if measured(prev.get("args", {})) != measured(vars(args)):
        differ = sorted(k for k in measured(vars(args)) if prev.get("args", {}).get(k) != vars(args)[k])
        sys.exit(f"error: {out_path} holds a run with other arguments ({', '.join(differ)}); pass another --out, or "
                 "delete the file to start over")
    return list(prev.get("rows", []))


def combine(args: argparse.Namespace, bench: str, finish: Callable[[list[dict], dict, float], dict]) -> None:
    """Pool the rows of result files written by separate processes (one per seed) into ``--out``."""
    docs = [json.loads(Path(f).read_text()) for f in args.combine]
    for f, d in zip(args.combine, docs):
        if d.get("benchmark") != bench or measured(d["args"]) != measured(docs[0]["args"]):
            sys.exit(f"error: {f} is not a {bench} run with the same arguments as {args.combine[0]}")
    rows = {row_key(r): r for d in docs for r in d["rows"]}
    seconds = sum(d.get("total_seconds") or 0.0 for d in docs)
    payload = {**docs[0], "pooled_by": "python " + shlex.join(sys.argv), "pooled_commands": [d["command"] for d in docs],
               "rows": sorted(rows.values(), key=lambda r: (r["seed"], row_key(r)[0])),
               "total_seconds": seconds,
               # complete when every job ran for every seed pooled (a process stopped after its seeds counts)
               "complete": len(rows) == len({k[0] for k in rows}) * len({k[1] for k in rows})}
    payload["args"] = {**docs[0]["args"], "seeds": sorted({r["seed"] for r in rows.values()})}
    payload.update(finish(payload["rows"], payload["teacher"], seconds))
    out = Path(args.out)
    write_json(out, payload)
    print(payload["table"] + f"\nwrote {out}", flush=True)


def banner(bench: str, args: argparse.Namespace, teacher: dict) -> str:
    """One line saying what this run measures: the benchmark, its dataset and every argument that shapes a row."""
    shown = {k: v for k, v in measured(vars(args)).items() if v not in (None, [], False)
             and k not in ("dataset", "data", "teacher", "teacher_epochs")}
    return (f"{bench} on {args.dataset}: " + ", ".join(f"{k} {v}" for k, v in shown.items())
            + f"; teacher {teacher['name']} test {teacher['test_acc']:.4f}")


def run_bench(args: argparse.Namespace, bench: str, base_config: Callable[[argparse.Namespace, Path], Config],
              jobs: list[tuple[str, Callable[[Setup, str, int], dict]]],
              row_line: Callable[[dict], str], finish: Callable[[list[dict], dict, float], dict]) -> None:
    """Train or load the teacher once, run every (seed, job) not already in ``--out`` (a job returning None has
    nothing to do in this process), then ``finish(rows, teacher, seconds)`` -> payload additions with a ``table``."""
    if getattr(args, "combine", None):
        return combine(args, bench, finish)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    out_path = Path(args.out)
    log = make_logger(out_path.with_suffix(".log"), args.verbose)
    tmp = Path(tempfile.mkdtemp(prefix=f"archkd-{bench}-bench-"))
    payload: dict[str, Any] = {"benchmark": bench, "dataset": args.dataset, "command": "python " + shlex.join(
        sys.argv), "created": datetime.now().isoformat(timespec="seconds"), "args": vars(args),
        "machine": machine_info(), "rows": earlier_rows(out_path, args), "complete": False}
    done = {row_key(r) for r in payload["rows"]}
    if done:
        print(f"resuming {out_path}: {len(done)} finished (job, seed) rows kept", flush=True)
    try:
        cfg = base_config(args, tmp / "runs")
        teacher_path, _ = resolve_teacher(args, cfg, log)
        cfg.teacher.path = teacher_path
        teacher, data = api.prepare(cfg, log=log)
        tinfo = {"name": teacher.name, "path": teacher_path, "test_acc": teacher_test_acc(teacher, data),
                 **teacher_size(teacher.module, data.input_shape)}
        payload["teacher"] = tinfo
        print(banner(bench, args, tinfo), flush=True)
        setup = Setup(cfg, teacher, data, log)
        for seed in args.seeds:
            for name, job in jobs:
                if (name, seed) in done:
                    continue
                result = job(setup, name, seed)
                if result is None:  # not this process's job (e.g. another shard's)
                    continue
                row = {"job": name, **result}
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
