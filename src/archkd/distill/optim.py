"""The optimiser, its per-step learning-rate schedule and the epoch arithmetic every loop shares."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from archkd.config import TrainConfig
from archkd.errors import ArchkdError

def epoch_steps(n: int, batch_size: int) -> tuple[int, int]:
    """(batch size actually used, optimizer steps per epoch) for ``n`` training images: the last partial batch is
    dropped. Shared by every loop and by whoever must know a schedule's length before training (process replay)."""
    bs = max(1, min(batch_size, n))
    return bs, max(1, n // bs)

def build_optimizer(params: list[nn.Parameter], cfg: TrainConfig, total_steps: int, steps_per_epoch: int
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The optimiser and per-step LR schedule of a recipe: every loop builds them here (students, teachers, DistPro)."""
    if cfg.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                                     nesterov=cfg.nesterov and cfg.momentum > 0,
                                                     weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        raise ArchkdError(f"unknown optimizer '{cfg.optimizer}'", "use train.optimizer=sgd or adamw")
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total_steps, cfg, steps_per_epoch))

def lr_factor(step: int, total: int, cfg: TrainConfig, steps_per_epoch: int) -> float:
    """Linear warm-up, then cosine to zero or step decay at fractions of training."""
    warm = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    if cfg.schedule == "step":
        return cfg.step_gamma ** sum(progress >= m for m in cfg.step_milestones)
    if cfg.schedule == "constant":
        return 1.0
    raise ArchkdError(f"unknown LR schedule '{cfg.schedule}'", "use train.schedule=cosine, step or constant")

