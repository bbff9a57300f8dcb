"""What a verb works on: the teacher and the data (checked against each other), the student, the teacher cache."""
from __future__ import annotations

from typing import Callable

import torch

from archkd.config import Config
from archkd.data import DataBundle, load_data
from archkd.device import default_cache_dir, resolve_device, use_amp
from archkd.distill import TeacherCache, cache_precision, evaluate
from archkd.distill.cache import teacher_cache
from archkd.errors import ArchkdError
from archkd.models import create_model
from archkd.teacher import Teacher, check_teacher, load_teacher
from archkd.workflows.run import Log, mirrored


def cache_root(cfg: Config) -> str:
    return cfg.cache_dir or default_cache_dir()


def data_progress(log: Log) -> Callable[[str, int], None]:
    return lambda what, n: log(f"  {what}: {n} images")


def prepare(cfg: Config, log: Log | None = print, need_teacher: bool = True) -> tuple[Teacher | None, DataBundle]:
    """Load the teacher (if any) and the data normalised the teacher's way, then check they fit together."""
    log = mirrored(log)
    teacher = None
    if cfg.teacher.path:
        teacher = load_teacher(cfg.teacher.path, cfg.teacher.weights, cfg.teacher.mean, cfg.teacher.std,
                               cfg.teacher.kwargs)
    elif need_teacher:
        raise ArchkdError("no teacher given", "set --teacher <file> (or teacher.path=...), or train one with "
                          "'archkd teacher train'")
    mean = teacher.mean if teacher else cfg.teacher.mean
    std = teacher.std if teacher else cfg.teacher.std
    log(f"loading data '{cfg.data.source}'")
    data = load_data(cfg.data.source, cfg.data, seed=cfg.seed, cache_dir=cache_root(cfg), mean=mean, std=std,
                     progress=data_progress(log), teacher=teacher is not None)
    log(f"  {data.name}: {len(data.train)} train / {len(data.val)} val / {len(data.test) if data.test else 0} test, "
        f"{data.num_classes} classes, input {'×'.join(map(str, data.input_shape))}, augment {data.augment.key()}")
    if data.normalize_note:
        log(f"  {data.normalize_note}")
    if teacher is not None:
        check_teacher(teacher, data)
    return teacher, data


def make_cache(cfg: Config, teacher: Teacher, data: DataBundle) -> TeacherCache | None:
    """The teacher-output cache of this run (``distill.cache``), keyed by ``archkd.distill.cache.teacher_cache``."""
    if not cfg.distill.cache or not teacher:
        return None
    return teacher_cache(cache_root(cfg), teacher.fingerprint, data, cfg.seed,
                         cache_precision(use_amp(resolve_device(cfg.device), cfg.train.amp)))


def checkpoint_meta(data: DataBundle) -> dict:
    """What a checkpoint records of its data: the preprocessing, the classes, the input shape."""
    return {"preprocessing": data.normalize.to_dict(), "classes": list(data.classes),
            "input_shape": list(data.input_shape)}


def accuracy_on_test(model: torch.nn.Module, data: DataBundle, device: torch.device) -> float | None:
    """Accuracy on the test split (none without one)."""
    return evaluate(model.to(device), data.test, data.normalize, device) if data.test is not None else None


def build_student(cfg: Config, data: DataBundle) -> torch.nn.Module:
    """The student of ``cfg.student``: a registry architecture, or a checkpoint's (its weights with
    ``student.init=checkpoint``), sized to the data's classes and channels."""
    if cfg.student.checkpoint:
        from archkd.distill import load_checkpoint
        from archkd.models import build_from_spec

        ck = load_checkpoint(cfg.student.checkpoint)
        model = build_from_spec({**ck["spec"], "num_classes": data.num_classes, "in_channels": data.input_shape[0]})
        if cfg.student.init == "checkpoint":
            try:
                model.load_state_dict(ck["state_dict"])
            except RuntimeError:
                raise ArchkdError(f"the weights of {cfg.student.checkpoint} do not fit this data's classes or channels",
                                  "use student.init=scratch, or a checkpoint trained on this kind of data") from None
        return model
    return create_model(cfg.student.arch, num_classes=data.num_classes, in_channels=data.input_shape[0],
                        **cfg.student.kwargs)
