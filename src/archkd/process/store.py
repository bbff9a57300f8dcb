"""Building, saving and replaying processes.

Why a file: a process searched once (``archkd process search``) is replayed by any later distillation
(``archkd distill --process runs/<name>/process.pt``), at any length, and with the baselines used to judge it.
"""
from __future__ import annotations

import dataclasses

from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from archkd.config import ProcessConfig, TrainConfig
from archkd.data import DataBundle
from archkd.distill.checkpoint import atomic_save, load_artifact
from archkd.distill.objective import preactivation_paths
from archkd.errors import ArchkdError
from archkd.process.process import Pathway, ProcessObjective, interpolate, make_pathways
from archkd.process.search import ProcessSearchResult, search_process

FORMAT = "archkd-process-v1"


def stage_taps(model: nn.Module, given: list[str] | None, example: torch.Tensor, who: str) -> list[str]:
    """Pre-activation stage taps: found automatically from ``stage_names`` or given as module paths."""
    paths = list(given) if given else list(getattr(model, "stage_names", []) or [])
    if not paths:
        raise ArchkdError(f"the {who} has no known stages", f"list its stage module paths in process.{who}_stages")
    return preactivation_paths(model, paths, example)


def search_objective(student: nn.Module, teacher: nn.Module, example: torch.Tensor, cfg: ProcessConfig,
                     label_smoothing: float = 0.0) -> ProcessObjective:
    """A fresh searchable process over every pathway of the two networks."""
    s_taps = stage_taps(student, cfg.student_stages, example, "student")
    t_taps = stage_taps(teacher, cfg.teacher_stages, example, "teacher")
    return ProcessObjective(s_taps, t_taps, make_pathways(len(t_taps), len(s_taps), cfg.pathways,
                                                          cfg.transforms or None),
                            transform=cfg.transform, distance=cfg.distance, normalization=cfg.normalization,
                            logit_kd=cfg.logit_kd, label_smoothing=label_smoothing)


def search_with_config(student: nn.Module, teacher: nn.Module, data: DataBundle, train: TrainConfig,
                       cfg: ProcessConfig, *, seed: int, device: torch.device,
                       log: Callable[[str], None] | None = None, out_dir: str | Path | None = None,
                       spec: dict | None = None, resume: bool = False,
                       on_epoch: Callable[[int, dict], None] | None = None, identity: dict | None = None
                       ) -> tuple[ProcessSearchResult, ProcessObjective]:
    """Build the searchable process ``cfg`` describes for (student, teacher) and search it over ``train.epochs``.

    The one recipe shared by ``archkd process search`` and the trials of a joint student + process search. With
    ``out_dir`` the student's epoch checkpoints go there and ``resume=True`` continues an interrupted search whose
    ``identity`` (teacher, data, ...: whatever else makes it this search) matches.
    """
    x8, _, _ = next(data.train.batches(4, device=torch.device("cpu")))
    objective = search_objective(student, teacher, data.normalize(x8), cfg, train.label_smoothing)
    if log:
        log(f"process search: {len(objective.pathways)} pathways ({cfg.pathways}), transform "
            f"{' | '.join(cfg.transforms) if cfg.transforms else cfg.transform}, "
            f"distance {cfg.distance}, {train.epochs} epochs on {device}")
    res = search_process(student, teacher, data, train, objective, seed=seed, device=device,
                         meta_val_fraction=cfg.meta_val_fraction, alpha_lr=cfg.alpha_lr,
                         alpha_betas=tuple(cfg.alpha_betas), log=log, out_dir=out_dir, spec=spec, resume=resume,
                         meta={**(identity or {}), "process": dataclasses.asdict(cfg)}, on_epoch=on_epoch)
    return res, objective


def save_process(path: str | Path, result: ProcessSearchResult, objective: ProcessObjective, meta: dict) -> Path:
    payload = {"format": FORMAT, "trajectory": result.trajectory, "weights": result.weights,
               "pathways": [[q.teacher, q.student] + ([q.transform] if q.transform else []) for q in result.pathways], "student_taps": result.student_taps,
               "teacher_taps": result.teacher_taps, "transform": objective.transform_name,
               "distance": objective.distance_name, "normalization": objective.normalization,
               "logit_kd": objective.kd_weight, "steps_per_epoch": result.steps_per_epoch, "epochs": result.epochs,
               "val_acc": result.val_acc, **meta}
    return atomic_save(payload, path)


def load_process(path: str | Path) -> dict:
    return load_artifact(path, FORMAT, "process file", "run 'archkd process search' first (runs/<name>/process.pt)",
                         "give a process.pt written by archkd")


def replay_objective(proc: dict, total_steps: int, *, mode: str = "searched", normalization: str =
                     "scaled_biased_softmax", tau: float | None = None, label_smoothing: float = 0.0
                     ) -> ProcessObjective:
    """An objective that replays a searched process over ``total_steps`` steps, without meta-updates.

    ``searched``: the α trajectory stretched linearly to the schedule; ``final``: α_T held constant; ``equal``: every
    pathway weight 1 (``normalization`` is then ignored).
    """
    traj = proc["trajectory"].float()
    if mode == "searched":
        schedule, norm = interpolate(traj, total_steps), normalization
    elif mode == "final":
        schedule, norm = traj[-1:].clone(), normalization
    elif mode == "equal":
        schedule, norm = torch.ones(1, traj.shape[1]), "none"
    else:
        raise ArchkdError(f"unknown process replay mode '{mode}'", "use searched, final or equal")
    return ProcessObjective(proc["student_taps"], proc["teacher_taps"], [Pathway(*p) for p in proc["pathways"]],
                            transform=proc["transform"], distance=proc["distance"], normalization=norm,
                            schedule=schedule, tau=tau, logit_kd=float(proc.get("logit_kd", 0.0)),
                            label_smoothing=label_smoothing)
