"""torchrun: every process walks the same global batches and trains its own rows of each.

The collectives are here, and ``Distributed`` is the callback that puts them into ``fit``'s loop: this process's
shard of each batch, gradients averaged after the backward pass (the divergence check on the mean loss, so every
rank agrees), BatchNorm buffers averaged before validation, and rank 0's decision to stop shared after each epoch.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from archkd.config import TrainConfig
from archkd.distill.callbacks import Callback, StepContext
from archkd.errors import ArchkdError


class StopTraining(Exception):
    """Raised on the other processes of a torchrun group when rank 0 stops a run early (pruned, taken over)."""


def stop_together(stop: bool) -> bool:
    """Rank 0's decision to stop, broadcast to every process (collective: all ranks call it each epoch)."""
    import torch.distributed as dist

    flag = torch.tensor([1 if stop else 0])
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def average_gradients(params: list[nn.Parameter], loss: torch.Tensor) -> torch.Tensor:
    """All-reduce the mean gradient over the processes in one flat tensor (the loss rides along and its mean is
    returned, so every rank sees the same divergence check): each computed the mean loss of an equal shard, so the
    mean of their gradients is the gradient of the global batch's mean loss."""
    import torch.distributed as dist

    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads] + [loss.reshape(1).to(grads[0].dtype if grads else loss.dtype)])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()
    return flat[-1]


def average_buffers(model: nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over the processes before validation: each saw
    only its shard, and the average is the estimate a single process would keep over the global batches."""
    import torch.distributed as dist

    for b in model.buffers():
        if b.is_floating_point():
            dist.all_reduce(b)
            b /= dist.get_world_size()


class Distributed(Callback):
    """The loop under torchrun (``world_size`` > 1). Refuses what does not run there yet: a batch that does not split
    evenly, hooks (DistPro's search) and trainable teachers."""

    def __init__(self, rank: int, world_size: int, batch_size: int, *, hooks: Sequence = (),
                 teacher_train: TrainConfig | None = None) -> None:
        if batch_size % world_size:
            raise ArchkdError(f"batch size {batch_size} does not split over {world_size} processes",
                              f"set train.batch_size to a multiple of {world_size}")
        if any(not getattr(h, "runs_on_every_rank", False) for h in hooks) or teacher_train is not None:
            raise ArchkdError("hooks (DistPro's search) and trainable teachers do not run under torchrun yet",
                              "run them in one process")
        per = batch_size // world_size
        self.shard = slice(rank * per, (rank + 1) * per)

    def setup(self, ctx: StepContext) -> None:
        ctx.shard = self.shard

    def on_after_backward(self, ctx: StepContext, loss: torch.Tensor) -> None:
        if not torch.isfinite(average_gradients(ctx.params, loss)):  # every rank agrees
            raise ArchkdError(f"training diverged (loss not finite) at epoch {ctx.epoch + 1}",
                              "lower train.lr or set train.grad_clip")

    def on_validation_start(self, ctx: StepContext) -> None:
        average_buffers(ctx.model)

    def on_train_epoch_end(self, ctx: StepContext, row: dict) -> None:
        if stop_together(ctx.stop is not None) and ctx.stop is None:
            raise StopTraining(f"rank 0 stopped training after epoch {ctx.epoch + 1}")
