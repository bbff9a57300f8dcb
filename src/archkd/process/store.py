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


def stage_taps(model: nn.Module, given: list[str] | None, example: torch.Tensor, who: str,
               stem: bool = False) -> list[str]:
    """Pre-activation stage taps: found automatically from ``stage_names`` (preceded by the model's ``stem_name``
    with ``stem``) or given as module paths (used as given: list the stem's path there to tap it)."""
    paths = list(given) if given else list(getattr(model, "stage_names", []) or [])
    if not paths:
        raise ArchkdError(f"the {who} has no known stages", f"list its stage module paths in process.{who}_stages")
    if stem and not given:
        if getattr(model, "stem_name", None) is None:
            raise ArchkdError(f"the {who} has no stem to tap", "build it with archkd.models or set model.stem_name")
        paths = [model.stem_name] + paths
    return preactivation_paths(model, paths, example)


def uses_stem(student: nn.Module, teacher: nn.Module, cfg: ProcessConfig) -> bool:
    """Whether a process over (student, teacher) starts at the stem: both networks declare one (``stem_name``) and
    neither's taps are given by hand. Why both: pathways pair feature *indices*, so a stem on one side only would shift
    every forward pair (DistPro's CIFAR pathways: stem + 3 stages on each side, 10 forward pairs)."""
    return (not cfg.student_stages and not cfg.teacher_stages
            and getattr(student, "stem_name", None) is not None and getattr(teacher, "stem_name", None) is not None)


def search_objective(student: nn.Module, teacher: nn.Module, example: torch.Tensor, cfg: ProcessConfig,
                     label_smoothing: float = 0.0, stem: bool = True) -> ProcessObjective:
    """A fresh searchable process over every pathway of the two networks: their stems (``uses_stem``; ``stem=False``
    leaves them out, the layout of process files written before stems were tapped) and their stages."""
    stem = stem and uses_stem(student, teacher, cfg)
    s_taps = stage_taps(student, cfg.student_stages, example, "student", stem)
    t_taps = stage_taps(teacher, cfg.teacher_stages, example, "teacher", stem)
    return ProcessObjective(s_taps, t_taps, make_pathways(len(t_taps), len(s_taps), cfg.pathways,
                                                          cfg.transforms or None),
                            transform=cfg.transform, distance=cfg.distance, normalization=cfg.normalization,
                            logit_kd=cfg.logit_kd, label_smoothing=label_smoothing, stem=stem)


def search_with_config(student: nn.Module, teacher: nn.Module, data: DataBundle, train: TrainConfig,
                       cfg: ProcessConfig, *, seed: int, device: torch.device,
                       log: Callable[[str], None] | None = None, out_dir: str | Path | None = None,
                       spec: dict | None = None, resume: bool = False,
                       on_epoch: Callable[[int, dict], None] | None = None, identity: dict | None = None,
                       stem: bool = True) -> tuple[ProcessSearchResult, ProcessObjective]:
    """Build the searchable process ``cfg`` describes for (student, teacher) and search it over ``train.epochs``.

    The one recipe shared by ``archkd process search`` and the trials of a joint student + process search. With
    ``out_dir`` the student's epoch checkpoints go there and ``resume=True`` continues an interrupted search whose
    ``identity`` (teacher, data, ...: whatever else makes it this search) matches. ``stem``: as in
    ``search_objective``.
    """
    x8, _, _ = next(data.train.batches(4, device=torch.device("cpu")))
    objective = search_objective(student, teacher, data.normalize(x8), cfg, train.label_smoothing, stem)
    if log:
        log(f"process search: {len(objective.pathways)} pathways ({cfg.pathways}"
            f"{', stem + stages' if objective.stem else ''}), transform "
            f"{' | '.join(cfg.transforms) if cfg.transforms else cfg.transform}, "
            f"distance {cfg.distance}, {train.epochs} epochs on {device}")
    res = search_process(student, teacher, data, train, objective, seed=seed, device=device,
                         meta_val_fraction=cfg.meta_val_fraction, alpha_lr=cfg.alpha_lr,
                         alpha_betas=tuple(cfg.alpha_betas), log=log, out_dir=out_dir, spec=spec, resume=resume,
                         meta={**(identity or {}), "process": dataclasses.asdict(cfg),
                               "taps": [objective.student_taps, objective.teacher_taps]}, on_epoch=on_epoch)
    return res, objective


def save_process(path: str | Path, result: ProcessSearchResult, objective: ProcessObjective, meta: dict) -> Path:
    payload = {"format": FORMAT, "trajectory": result.trajectory, "weights": result.weights,
               "pathways": [[q.teacher, q.student] + ([q.transform] if q.transform else []) for q in result.pathways],
               "student_taps": result.student_taps, "teacher_taps": result.teacher_taps, "stem": objective.stem,
               "transform": objective.transform_name,
               "distance": objective.distance_name, "normalization": objective.normalization,
               "logit_kd": objective.kd_weight, "steps_per_epoch": result.steps_per_epoch, "epochs": result.epochs,
               "val_acc": result.val_acc, **meta}
    return atomic_save(payload, path)


def load_process(path: str | Path) -> dict:
    """A process file. Files written before stems were tapped have no ``stem`` entry: their taps and pathways are
    the stages only, which is what they replay (taps are stored as module paths, pathways as indices into them)."""
    proc = load_artifact(path, FORMAT, "process file", "run 'archkd process search' first (runs/<name>/process.pt)",
                         "give a process.pt written by archkd")
    n_s, n_t = len(proc.get("student_taps") or []), len(proc.get("teacher_taps") or [])
    pw = proc.get("pathways") or []
    traj = proc.get("trajectory")
    if (not pw or not all(isinstance(p, (list, tuple)) and len(p) >= 2 and 0 <= p[0] < n_t and 0 <= p[1] < n_s
                          for p in pw)
            or not isinstance(traj, torch.Tensor) or traj.ndim != 2 or traj.shape[1] != len(pw)):
        raise ArchkdError(f"process file {path} has pathways that do not match its taps or weights",
                          "the file is damaged or was edited; search the process again")
    proc.setdefault("stem", False)
    return proc


def transfer_process(path: str | Path, student: nn.Module, example: torch.Tensor) -> dict:
    """The process of ``path`` (searched for another student) retargeted to ``student``'s taps, to replay with
    ``replay_objective``. Pathways name feature indices, so a process moves to any student with as many stages (and
    a stem when the process taps one); files from before stems were tapped move as the stages-only processes they are.
    """
    proc = load_process(path)
    stem = bool(proc["stem"])
    if stem and getattr(student, "stem_name", None) is None:
        raise ArchkdError(f"process file {path} starts at the stem, but {type(student).__name__} declares none",
                          "transfer it to a student built with archkd.models, or search a process for this one")
    taps = stage_taps(student, None, example, "student", stem)
    if len(taps) != len(proc["student_taps"]):
        raise ArchkdError(f"process file {path} has {len(proc['student_taps'])} student features, "
                          f"{type(student).__name__} {len(taps)}", "transfer between students with as many stages")
    return {**proc, "student_taps": taps, "transferred_from": str(path)}


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
                            label_smoothing=label_smoothing, stem=bool(proc.get("stem", False)))
