"""Everything ``fit`` sets up before its first step, in the order it must happen: arguments checked, models on the
device, the training subset and batch size, precision chosen, feature adapters sized, optimisers built.

The order is part of the result: the seed is set first, precision is timed on copies of the model before any tap
hook is attached to it, and feature losses size their adapters on one real batch before the optimiser is built
over their parameters.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from archkd.config import TrainConfig
from archkd.data import DataBundle
from archkd.device import resolve_device, seed_everything, use_amp, use_channels_last
from archkd.distill.cache import TeacherCache, cache_precision
from archkd.distill.callbacks import FitLog, StepContext, TrainHook
from archkd.distill.ddp import Distributed
from archkd.distill.evaluation import SHORT_RUN_STEPS, running_bns
from archkd.distill.objective import DistillObjective, Taps
from archkd.distill.optim import build_optimizer, epoch_steps
from archkd.distill.precision import TeacherView, choose_precisions
from archkd.errors import ArchkdError, ArchkdWarning


def prepare(model: nn.Module, data: DataBundle, cfg: TrainConfig, *, objective: DistillObjective | None,
            teacher: nn.Module | None, cache: TeacherCache | None, seed: int, device: str | torch.device,
            hooks: Sequence[TrainHook], indices: np.ndarray | None, teacher_train: TrainConfig | None,
            spec: dict | None, log: FitLog, rank: int, world_size: int
            ) -> tuple[StepContext, TeacherView, Distributed | None]:
    """The loop's ``StepContext`` (no callbacks yet), the teacher's view and, under torchrun, the ``Distributed``
    callback (built here: what it refuses is refused before anything is timed)."""
    dev = resolve_device(device) if isinstance(device, str) else device
    seed_everything(seed)
    objective = objective or DistillObjective(label_smoothing=cfg.label_smoothing)
    # the config's (or the device's default) setting; the student's may be tuned below, the teacher keeps this one
    cl = use_channels_last(dev, cfg.channels_last)
    amp = use_amp(dev, cfg.amp)
    if cfg.bn_recalibration < 0:
        raise ArchkdError(f"train.bn_recalibration={cfg.bn_recalibration} is negative",
                          "give the number of training images to recalibrate BatchNorm with, or 0 for off")
    if teacher_train is not None and (teacher is None or cache is not None):
        raise ArchkdError("a trainable teacher needs a teacher and no teacher-output cache",
                          "pass teacher= and cache=None: cached logits would go stale as the teacher learns")
    if cache is not None:
        cache.check_serves(seed, data.augment.key(), cache_precision(amp))
    model.to(dev)
    objective.to(dev)
    if teacher is not None:
        teacher.to(dev).train(teacher_train is not None)
    indices = data.train.subset(cfg.data_fraction, seed) if indices is None else np.asarray(indices)
    bs, steps_per_epoch = epoch_steps(len(indices), cfg.batch_size)
    ddp = Distributed(rank, world_size, bs, hooks=hooks, teacher_train=teacher_train) if world_size > 1 else None
    view = TeacherView(teacher, objective, cache, trainable=teacher_train is not None)

    def prep(x8: torch.Tensor, idx: torch.Tensor, epoch: int) -> torch.Tensor:
        x = data.normalize(data.augment(x8, idx, epoch, seed))
        return x.contiguous(memory_format=torch.channels_last) if cl else x

    total_steps = cfg.epochs * steps_per_epoch
    choice, t_choice = choose_precisions(model, view, data, cfg, dev, indices, bs, prep, total_steps, spec, amp, cl,
                                         rank, world_size, log.info)
    cl = choice.setting.channels_last  # (prep reads it from here on)
    s_taps = Taps(model, objective.student_taps) if objective.student_taps else None
    if s_taps is not None and not objective.ready:  # feature losses size their adapters on one real batch
        x8, _, idx = next(data.train.batches(min(bs, 8), device=dev, indices=indices))
        with torch.no_grad():
            was = model.training
            model.eval()
            model(prep(x8, idx, 0))
            model.train(was)
            _, t_feats = view(prep(x8, idx, 0), idx, "setup")
        objective.setup(s_taps.pop(), [f.detach() for f in t_feats])
        objective.to(dev)
    owned = {id(p) for h in hooks for p in h.owned_parameters()}
    params = [p for p in list(model.parameters()) + list(objective.parameters())
              if p.requires_grad and id(p) not in owned]
    if not cfg.bn_recalibration and total_steps < SHORT_RUN_STEPS and running_bns(model) and rank == 0:
        warnings.warn(f"a short training ({total_steps} steps): BatchNorm's running averages trail the weights, so the "
                      "validated model can fall far below what it learned (even to one class); set "
                      "train.bn_recalibration=2048 (teacher.train.bn_recalibration for a teacher)", ArchkdWarning,
                      stacklevel=3)  # (the caller of fit)
    opt, sched = build_optimizer(params, cfg, total_steps, steps_per_epoch)
    t_opt = t_sched = None
    if teacher_train is not None:
        t_opt, t_sched = build_optimizer([p for p in teacher.parameters() if p.requires_grad], teacher_train,
                                         total_steps, steps_per_epoch)
    ctx = StepContext(model, objective, opt, sched, cfg, data, dev, seed, indices, bs, steps_per_epoch, prep, teacher,
                      s_taps, teacher_optimizer=t_opt, teacher_scheduler=t_sched, params=params,
                      amp=choice.setting.amp, channels_last=cl, hooks=list(hooks), log=log, world_size=world_size,
                      precision={**choice.to_dict(), **({"teacher": t_choice.to_dict()} if view.tunable else {})})
    return ctx, view, ddp
