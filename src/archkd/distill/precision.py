"""What runs at which precision: the teacher's view of a batch, and the student's and the frozen teacher's precision
and memory format chosen by measurement (``archkd.distill.autotune``)."""
from __future__ import annotations

import contextlib
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from archkd.config import TrainConfig
from archkd.data import DataBundle
from archkd.device import broadcast_object
from archkd.distill.autotune import Choice, Setting, autocast, choose
from archkd.distill.cache import TeacherCache, cache_precision
from archkd.distill.objective import DistillObjective, Taps
from archkd.errors import ArchkdError

class TeacherView:
    """What the student is distilled from for one batch: logits (cached when possible) and tap features."""

    def __init__(self, teacher: nn.Module | None, objective: DistillObjective, cache: TeacherCache | None,
                 trainable: bool = False) -> None:
        self.teacher = teacher
        self.objective = objective
        self.cache = cache
        self.trainable = trainable
        self.channels_last = False  # the teacher's input format (``use``)
        self.amp = False  # whether its training forwards run under autocast (``use``)
        self.taps = Taps(teacher, objective.teacher_taps) if teacher is not None and objective.teacher_taps else None
        if objective.uses_teacher and teacher is None:
            raise ArchkdError("the distillation loss needs a teacher but none was given", "set teacher.path")

    def __call__(self, x: torch.Tensor, idx: torch.Tensor, tag: str,
                 cached: bool = True) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        """Teacher logits and tap features for a batch: from the cache when frozen and possible (``cached=False``: a
        batch no cache entry describes, e.g. mixed images), with gradients when the teacher trains."""
        if not self.objective.uses_teacher:
            return None, []
        x = x.contiguous(memory_format=torch.channels_last) if self.channels_last else x.contiguous()
        with contextlib.nullcontext() if self.trainable else torch.no_grad():
            if self.taps is None and self.cache is not None and cached:
                return self.cache.lookup(tag, idx, lambda mask: self.teacher(x[mask]).float()), []
            logits = self.teacher(x).float()
            return logits, (self.taps.pop() if self.taps else [])

    @property
    def tunable(self) -> bool:
        """Whether the teacher's precision and memory format may be chosen by measurement: a frozen teacher whose
        logits are all the objective reads (feature taps and a training teacher run as the config says)."""
        return self.teacher is not None and self.objective.uses_teacher and not self.trainable and self.taps is None

    def use(self, setting: Setting) -> None:
        """Run the teacher under ``setting`` from now on; the cache becomes the one of that precision."""
        self.channels_last, self.amp = setting.channels_last, setting.amp
        if self.teacher is not None:
            self.teacher.to(memory_format=torch.channels_last if setting.channels_last else torch.contiguous_format)
        if self.cache is not None:
            self.cache = self.cache.at_precision(cache_precision(setting.amp))

    def close(self) -> None:
        if self.taps:
            self.taps.remove()
        if self.cache:
            self.cache.flush()


def student_precision(model: nn.Module, data: DataBundle, cfg: TrainConfig, dev: torch.device, indices: np.ndarray,
                      bs: int, prep: Callable, total_steps: int, spec: dict | None, amp: bool, cl: bool) -> Choice:
    """The student's precision and memory format (``archkd.distill.autotune``), timed on one real training batch
    (forward, cross-entropy, backward: the student's share of a step, which the setting changes)."""
    x8, y, idx = next(data.train.batches(bs, device=dev, indices=indices))
    x = prep(x8, idx, 0).contiguous()

    def step(m: nn.Module, s: Setting) -> None:
        with autocast(dev, s.amp):
            logits = m(x.contiguous(memory_format=torch.channels_last) if s.channels_last else x)
        nn.functional.cross_entropy(logits.float(), y).backward()

    return choose(model, step, device=dev, amp=cfg.amp, channels_last=cfg.channels_last, tune=cfg.autotune,
                  default=Setting(amp, cl), total_steps=total_steps, spec=spec, batch_size=bs,
                  input_shape=tuple(data.input_shape))


def teacher_precision(view: TeacherView, data: DataBundle, cfg: TrainConfig, dev: torch.device, indices: np.ndarray,
                      bs: int, prep: Callable, total_steps: int, amp: bool) -> Choice:
    """The frozen teacher's precision and memory format, timed on one real batch (a forward without gradients).

    Why apart from the student's: the teacher's forward is a large share of a step whenever its logits are not cached
    (every epoch of an augmented training), and the fastest setting differs by architecture. ``train.amp`` set
    explicitly fixes the teacher's precision too; ``train.channels_last`` concerns the student only."""
    if not view.tunable:
        return Choice(Setting(amp, False), "config")
    x8, _, idx = next(data.train.batches(bs, device=dev, indices=indices))
    x = prep(x8, idx, 0).contiguous()

    def step(m: nn.Module, s: Setting) -> None:
        with torch.no_grad(), autocast(dev, s.amp):
            m(x.contiguous(memory_format=torch.channels_last) if s.channels_last else x)

    return choose(view.teacher, step, device=dev, amp=cfg.amp, channels_last=None, tune=cfg.autotune,
                  default=Setting(amp, False), total_steps=total_steps, spec=None, batch_size=bs,
                  input_shape=tuple(data.input_shape), train=False)


def choose_precisions(model: nn.Module, view: TeacherView, data: DataBundle, cfg: TrainConfig, dev: torch.device,
                      indices: np.ndarray, bs: int, prep: Callable, total_steps: int, spec: dict | None, amp: bool,
                      cl: bool, rank: int, world_size: int, log: Callable[[str], None]) -> tuple[Choice, Choice]:
    """The student's and the teacher's setting, put to use: the student's memory format, the teacher's (``view.use``).

    Timed on rank 0 before any tap hooks are attached to the model (a copy would carry them along); under torchrun
    every process trains with rank 0's choices. A choice not taken from the config is said through ``log``."""
    choice = student_precision(model, data, cfg, dev, indices, bs, prep, total_steps, spec, amp, cl) if rank == 0 \
        else None
    if world_size > 1:
        choice = broadcast_object(choice)
    if choice.setting.channels_last:
        model.to(memory_format=torch.channels_last)
    t_choice = teacher_precision(view, data, cfg, dev, indices, bs, prep, total_steps, amp) if rank == 0 else None
    if world_size > 1:
        t_choice = broadcast_object(t_choice)
    view.use(t_choice.setting)
    for who, c in (("precision", choice), ("teacher precision", t_choice)):
        if c.source != "config":
            log(f"{who}: {c.setting.name} ({c.source}"
                + (": " + ", ".join(f"{k} {v:.0f} img/s" for k, v in c.speeds.items()) + f"; {c.seconds:.1f}s"
                   if c.speeds else "") + ")")
    return choice, t_choice
