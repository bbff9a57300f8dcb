"""Teacher, student and a hand-designed baseline side by side: what a user asks of a distilled student.

Why: a student's accuracy alone does not answer whether it is worth deploying. The user wants to know how much faster
it is than the teacher on the deployment runtime, how many points of accuracy that cost, and — after a search —
whether the search beat simply distilling a hand-designed model of the same budget (``search.baseline``). All sides
are timed here, back to back, with the budget's latency protocol (runtime, threads, batch size), so the speed-up is a
ratio measured under one load.

A teacher the budget's runtime cannot run (e.g. a TorchScript or hub model the ONNX exporter refuses) is timed on
PyTorch instead, and then every side is, so the ratio stays like for like; the comparison says which runtime it used.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from archkd.config import Config
from archkd.data import DataBundle
from archkd.device import resolve_device
from archkd.distill import model_from_checkpoint
from archkd.errors import ArchkdError
from archkd.measure import measure_latency
from archkd.models import create_model, model_spec
from archkd.search import Budget
from archkd.search.finalise import TrainFinalist
from archkd.teacher import Teacher
from archkd.workflows.inputs import accuracy_on_test
from archkd.workflows.results import VerbResult, result


@dataclass
class Side:
    """One model of the comparison: its name, size, test accuracy and latency on the comparison's runtime."""
    name: str
    params: int
    test_acc: float | None
    module: torch.nn.Module


@result
class Comparison(VerbResult):
    """``results.json``'s ``comparison``: each side's numbers, and the three answers as ratios and differences.

    ``speedup`` = teacher latency / student latency; ``gap`` = teacher test accuracy − student test accuracy
    (fraction, not points); ``search_gain`` = student − baseline test accuracy (after a search with a baseline)."""
    OPTIONAL = ("baseline", "search_gain", "baseline_speedup")
    runtime: str
    teacher: dict
    student: dict
    speedup: float | None
    gap: float | None
    params_ratio: float
    baseline: dict | None = None
    search_gain: float | None = None
    baseline_speedup: float | None = None


def baseline_model(cfg: Config, data: DataBundle, budget: Budget) -> torch.nn.Module | None:
    """The hand-designed ``search.baseline`` sized to the data, refused before any training when the comparison
    could not be made: without finalists (``top_k``) or over the budget the search's students are held to."""
    name = cfg.search.baseline
    if not name:
        return None
    if not cfg.search.top_k:
        raise ArchkdError(f"search.baseline={name} is compared with the search's re-trained finalists, and "
                          "search.top_k is 0", "add --top-k 1 (or more), or drop search.baseline")
    model = create_model(name, num_classes=data.num_classes, in_channels=data.input_shape[0])
    over = budget.violations(budget.measure(model, data.input_shape))
    if over:
        raise ArchkdError(f"search.baseline={name} is over the budget ({'; '.join(over)})",
                          "choose a smaller hand-designed model (archkd measure NAME gives a model's size), or "
                          "drop search.baseline")
    return model


def _time(module: torch.nn.Module, input_shape: tuple[int, ...], runtime: str, cfg: Config) -> float:
    b = cfg.budget
    with warnings.catch_warnings():  # the ONNX exporter's notices about a TorchScript teacher are not the user's
        warnings.filterwarnings("ignore", message="no signature found")
        return measure_latency(module, input_shape, runtime=runtime, threads=b.latency_threads,
                               batch_size=b.latency_batch_size).median_ms


def compare(cfg: Config, teacher: Side, student: Side, input_shape: tuple[int, ...],
            baseline: Side | None = None, log: Callable[[str], None] | None = None) -> Comparison:
    """Time every side on the budget's runtime (PyTorch for all if the teacher cannot run there) and compare."""
    runtime = cfg.budget.latency_runtime
    try:
        t_ms = _time(teacher.module, input_shape, runtime, cfg)
    except (ArchkdError, RuntimeError, ValueError) as e:  # the exporter or runtime refused the teacher
        if log:
            log(f"the teacher does not run on {runtime} ({str(e).splitlines()[0][:120]}); teacher and student are "
                "compared on torch")
        runtime = "torch"
        t_ms = _time(teacher.module, input_shape, runtime, cfg)
    sides = [("teacher", teacher, t_ms), ("student", student, _time(student.module, input_shape, runtime, cfg))]
    if baseline is not None:
        sides.append(("baseline", baseline, _time(baseline.module, input_shape, runtime, cfg)))
    rows = {k: {"name": s.name, "params": s.params, "test_acc": s.test_acc, "latency_ms": ms} for k, s, ms in sides}
    s_ms = rows["student"]["latency_ms"]

    def diff(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a - b

    out = Comparison(runtime=runtime, teacher=rows["teacher"], student=rows["student"],
                     speedup=t_ms / s_ms if s_ms > 0 else None, gap=diff(teacher.test_acc, student.test_acc),
                     params_ratio=teacher.params / max(1, student.params))
    if baseline is not None:
        b_ms = rows["baseline"]["latency_ms"]
        out.baseline = rows["baseline"]
        out.search_gain = diff(student.test_acc, baseline.test_acc)
        out.baseline_speedup = t_ms / b_ms if b_ms > 0 else None
    if log:
        log(summary_line(out))
    return out


def summary_line(c: Comparison | dict) -> str:
    """One sentence: the student against the teacher, and against the baseline when there is one."""
    s, t = c["student"], c["teacher"]
    line = (f"{s['name']} vs teacher {t['name']}: {c['speedup']:.1f}× faster on {c['runtime']} "
            f"({s['latency_ms']:.3f} vs {t['latency_ms']:.3f} ms), {c['params_ratio']:.1f}× fewer parameters")
    if c.get("gap") is not None:
        line += f", {abs(100 * c['gap']):.2f} points of test accuracy {'below' if c['gap'] >= 0 else 'above'} it"
    if c.get("baseline") is not None and c.get("search_gain") is not None:
        g = 100 * c["search_gain"]
        line += (f"; the search's student is {abs(g):.2f} points {'above' if g >= 0 else 'below'} the hand-designed "
                 f"{c['baseline']['name']} ({c['baseline']['params']:,} params) distilled the same way")
    return line


def teacher_side(teacher: Teacher, data: DataBundle, cfg: Config, test_acc: float | None = None) -> Side:
    """The teacher as a side of the comparison (its test accuracy measured here unless given)."""
    if test_acc is None:
        test_acc = accuracy_on_test(teacher.module, data, resolve_device(cfg.device))
    return Side(teacher.name, sum(p.numel() for p in teacher.module.parameters()), test_acc, teacher.module)


def checkpoint_side(checkpoint: str, test_acc: float | None) -> Side:
    model, ck = model_from_checkpoint(checkpoint)
    return Side(ck["spec"]["name"], sum(p.numel() for p in model.parameters()), test_acc, model)


def compare_finalists(cfg: Config, teacher: Teacher, data: DataBundle, finalists: list[dict],
                      baseline: torch.nn.Module | None, train: TrainFinalist,
                      log: Callable[[str], None]) -> Comparison:
    """After a search's top-k: the finalist with the best full-recipe score against the teacher and, when
    ``search.baseline`` is set, against that hand-designed model distilled with the same recipe (into ``baseline/``
    of the run, resumed like a finalist)."""
    best = max(finalists, key=lambda f: f["final_reward"])
    b = None
    if baseline is not None:
        log(f"baseline: the hand-designed {cfg.search.baseline} with the full recipe ({cfg.train.epochs} epochs)")
        r = train(cfg, model_spec(baseline), "baseline")
        b = checkpoint_side(r["checkpoint"], r["test_acc"])
    return compare(cfg, teacher_side(teacher, data, cfg), checkpoint_side(best["checkpoint"], best["test_acc"]),
                   data.input_shape, b, log)
