"""The torchrun protocol of a search: rank 0 runs the study and announces each piece of work; every other process
(a follower) trains the same piece on its shard of the data, until rank 0 says stop.

Messages, in ``broadcast_object`` order: ``("trial", Candidate)`` — train this candidate with the trial objective;
``("distill", (run_cfg, spec, subdir))`` — distil this top-k finalist; ``None`` — the study is done. Outside
torchrun (one process) nothing is announced.
"""
from __future__ import annotations

from typing import Callable

from archkd.config import Config
from archkd.data import DataBundle
from archkd.device import broadcast_object, world
from archkd.distill import StopTraining
from archkd.search import KDTrialObjective
from archkd.teacher import Teacher
from archkd.workflows.distill import distill
from archkd.workflows.run import Log


def distributed() -> bool:
    return world()[1] > 1


def leading(objective: KDTrialObjective) -> Callable:
    """Rank 0's trial evaluation: under torchrun, announce the candidate, then train it together."""
    if not distributed():
        return objective

    def announced(candidate, report):  # noqa: ANN001, ANN202 - run_search's evaluate(Candidate, report)
        broadcast_object(("trial", candidate))
        return objective(candidate, report)

    return announced


def distill_finalist(run_cfg: Config, spec: dict, subdir: str, teacher: Teacher, data: DataBundle,
                     log: Log | None = None) -> dict:
    """Distil a top-k finalist into ``subdir`` of the search's run, continuing an interrupted one."""
    from archkd.models import build_from_spec

    return distill(run_cfg, log, teacher=teacher, data=data, student=build_from_spec(spec), subdir=subdir,
                   save_config=False, resume=True)


def lead_finalist(run_cfg: Config, spec: dict, subdir: str, teacher: Teacher, data: DataBundle, log: Log) -> dict:
    """Rank 0's finalist: announced to the followers (under torchrun), then distilled together."""
    if distributed():
        broadcast_object(("distill", (run_cfg, spec, subdir)))
    return distill_finalist(run_cfg, spec, subdir, teacher, data, log)


def release_followers() -> None:
    """The followers' cue to stop (under torchrun)."""
    if distributed():
        broadcast_object(None)


def follow(objective: KDTrialObjective, teacher: Teacher, data: DataBundle) -> None:
    """A torchrun process other than rank 0: train each candidate (or finalist) rank 0 announces, until ``None``."""
    while (msg := broadcast_object()) is not None:
        kind, payload = msg
        try:
            if kind == "trial":
                objective(payload, lambda _step, _value: None)
            else:
                run_cfg, spec, subdir = payload
                distill_finalist(run_cfg, spec, subdir, teacher, data)
        except StopTraining:
            pass
