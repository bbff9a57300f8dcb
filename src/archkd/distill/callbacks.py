"""The seams of ``fit``'s loop: ``TrainHook`` changes what is trained, ``Callback`` watches and persists it.

Why two kinds: a hook's arithmetic is part of the run (DistPro's meta-step, a generic teacher's own loss), so its
state travels in ``last.pt`` and it must run in one process; a callback (checkpoints, metrics, progress, torchrun's
collectives) leaves the numbers alone. Both are callbacks in the style of Lightning's: ``fit`` calls their events in
this order (``ctx``, the ``StepContext``, is where training stands; hooks come first):

    setup(ctx)                          optimiser built, nothing trained yet (hooks build their state)
    on_fit_start(ctx)                   ``Checkpointing`` resumes (ctx.start_epoch, history, best); progress starts
    per epoch:
      on_train_epoch_start(ctx)
      per step: view of the teacher → hooks' before_step → forward, objective + hooks' loss_terms → backward →
                on_after_backward(ctx, loss) → optimisers step → hooks' after_step → on_train_batch_end(ctx, batch,
                loss)   (``loss`` detached, still on the device: reading it is a sync)
      on_validation_start(ctx)          epochs that validate: torchrun averages BatchNorm buffers
      on_validation_end(ctx, row)       row["val_acc"] set, ctx.best_* updated: ``Checkpointing`` writes best.pt
      hooks' after_epoch(ctx, row)      may add to the row; then it joins ctx.history
      on_train_epoch_end(ctx, row)      last.pt, the epoch's line, metrics, the caller's ``on_epoch``, stop together
    on_fit_end(ctx)                     after the last epoch (not on an exception): progress ends

A callback stops the run by raising, or, to stop every process of a torchrun group together, by setting
``ctx.stop`` to the exception (as ``OnEpoch`` does); ``fit`` raises it after ``on_train_epoch_end``.

Messages go through ``ctx.log`` (a ``FitLog``): to ``fit``'s ``log`` callable when one is given, else to the
``logging`` loggers of this package (``archkd.distill.*``, at INFO).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from archkd.config import TrainConfig
from archkd.data import DataBundle
from archkd.distill.metrics import MetricsLog
from archkd.distill.objective import DistillObjective, Taps
from archkd.progress import Progress

logger = logging.getLogger(__name__)


class FitLog(logging.LoggerAdapter):
    """The loop's messages. Given ``sink`` (``fit``'s ``log`` callable, which callers are dropping), each message goes
    to it alone, as it always did; without one, to ``logger`` at its level (where the handlers say; with none
    configured, INFO goes nowhere). ``silent``: the other processes of a torchrun group (rank 0 speaks)."""

    def __init__(self, base: logging.Logger, sink: Callable[[str], None] | None = None, silent: bool = False) -> None:
        super().__init__(base, {})
        self.sink, self.silent = sink, silent

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging's name
        return not self.silent and (self.sink is not None or self.logger.isEnabledFor(level))

    def log(self, level: int, msg: object, *args: object, **kwargs: object) -> None:
        if not self.isEnabledFor(level):
            return
        if self.sink is not None:
            self.sink(str(msg) % args if args else str(msg))
        else:
            self.logger.log(level, msg, *args, stacklevel=2, **kwargs)  # (the caller of .info)

    def to(self, base: logging.Logger) -> FitLog:
        """The same destination under another module's logger."""
        return FitLog(base, self.sink, self.silent)


@dataclass
class Batch:
    """One training step's inputs as every seam sees them: prepared images, labels, sample ids, teacher view."""

    x: torch.Tensor
    y: torch.Tensor
    idx: torch.Tensor
    epoch: int
    t_logits: torch.Tensor | None
    t_feats: list[torch.Tensor]


@dataclass
class StepContext:
    """What the loop holds, handed to hooks and callbacks: the models, the objective, the optimiser and where training
    stands (Lightning's trainer, in one record)."""

    model: nn.Module
    objective: DistillObjective
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    cfg: TrainConfig
    data: DataBundle
    device: torch.device
    seed: int
    indices: np.ndarray
    batch_size: int
    steps_per_epoch: int
    prep: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
    teacher: nn.Module | None = None
    student_taps: Taps | None = None
    epoch: int = 0
    step: int = 0
    # how the loop trains
    teacher_optimizer: torch.optim.Optimizer | None = None  # with a trainable teacher (``fit(teacher_train=...)``)
    teacher_scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
    params: list[nn.Parameter] = field(default_factory=list)  # what the loop's optimiser steps
    amp: bool = False  # the student's precision and memory format (``archkd.distill.precision``)
    channels_last: bool = False
    precision: dict | None = None  # the choices made, as ``FitResult.precision`` reports them
    hooks: list[TrainHook] = field(default_factory=list)
    callbacks: list[Callback] = field(default_factory=list)  # every event's receivers, in order (hooks first)
    log: FitLog = field(default_factory=lambda: FitLog(logger))
    world_size: int = 1
    shard: slice | None = None  # this process's rows of each global batch (torchrun)
    # where the run stands (``Checkpointing`` restores these on resume)
    start_epoch: int = 0
    resumed_at: int | None = None
    history: list[dict] = field(default_factory=list)
    best_acc: float = -1.0
    best_epoch: int = -1
    acc: float = -1.0  # the latest validation accuracy
    epoch_started: float = 0.0  # time.perf_counter() when this epoch began
    stop: BaseException | None = None  # raised by the loop after this epoch's callbacks

    def emit(self, event: str, *args: object) -> None:
        """Call ``event`` on every callback, in order."""
        for cb in self.callbacks:
            getattr(cb, event)(self, *args)


class Callback:
    """Watches the loop (events in the module's docstring); every event does nothing unless overridden."""

    def setup(self, ctx: StepContext) -> None:
        pass

    def on_fit_start(self, ctx: StepContext) -> None:
        pass

    def on_train_epoch_start(self, ctx: StepContext) -> None:
        pass

    def on_after_backward(self, ctx: StepContext, loss: torch.Tensor) -> None:
        pass

    def on_train_batch_end(self, ctx: StepContext, batch: Batch, loss: torch.Tensor) -> None:
        pass

    def on_validation_start(self, ctx: StepContext) -> None:
        pass

    def on_validation_end(self, ctx: StepContext, row: dict) -> None:
        pass

    def on_train_epoch_end(self, ctx: StepContext, row: dict) -> None:
        pass

    def on_fit_end(self, ctx: StepContext) -> None:
        pass


class TrainHook(Callback):
    """A seam of the training loop: a method adds behaviour here instead of copying the loop.

    Order per step: teacher view → ``before_step`` → student forward, objective + ``loss_terms`` → backward →
    optimiser steps → ``after_step``; per epoch, ``after_epoch`` sees the epoch's row (validation included) and may add
    to it. ``owned_parameters`` are left out of the loop's optimiser (the hook steps them itself, e.g. DistPro's α);
    ``state_dict`` goes into ``last.pt`` so a resumed run continues the hook too. A hook is a ``Callback`` too.
    """

    def owned_parameters(self) -> list[nn.Parameter]:
        return []

    def before_step(self, ctx: StepContext, batch: Batch) -> None:
        pass

    def loss_terms(self, ctx: StepContext, batch: Batch, s_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}

    def after_step(self, ctx: StepContext, batch: Batch, loss: float) -> None:
        pass

    def after_epoch(self, ctx: StepContext, row: dict) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class EpochLog(Callback):
    """One line per epoch: ``epoch 3/10 loss 0.4321 val_acc 0.9100 (12.3s)``."""

    def on_train_epoch_end(self, ctx: StepContext, row: dict) -> None:
        msg = f"epoch {ctx.epoch + 1}/{ctx.cfg.epochs} loss {row['train_loss']:.4f}"
        ctx.log.to(logger).info(msg + (f" val_acc {ctx.acc:.4f}" if "val_acc" in row else "")
                                + f" ({time.perf_counter() - ctx.epoch_started:.1f}s)")


class ProgressReport(Callback):
    """Where training stands, through a ``Progress`` (a live line on a terminal, a plain line every so often)."""

    def __init__(self, progress: Progress) -> None:
        self.progress, self.steps = progress, 0

    def on_fit_start(self, ctx: StepContext) -> None:
        self.progress.start(ctx.cfg.epochs, ctx.steps_per_epoch * ctx.batch_size)

    def on_train_epoch_start(self, ctx: StepContext) -> None:
        self.steps = 0

    def on_train_batch_end(self, ctx: StepContext, batch: Batch, loss: torch.Tensor) -> None:
        self.steps += 1
        done = self.steps * ctx.batch_size
        self.progress.step(ctx.epoch, done, done / max(time.perf_counter() - ctx.epoch_started, 1e-9), loss)

    def on_fit_end(self, ctx: StepContext) -> None:
        self.progress.end()


class OnEpoch(Callback):
    """The caller's ``on_epoch(epoch, row)`` (a pruner's report, a sink for metrics). What it raises, e.g. a pruner's
    verdict, stops the run after this epoch, under torchrun on every process (``ctx.stop``)."""

    def __init__(self, fn: Callable[[int, dict], None]) -> None:
        self.fn = fn

    def on_train_epoch_end(self, ctx: StepContext, row: dict) -> None:
        try:
            self.fn(ctx.epoch, row)
        except BaseException as e:  # noqa: BLE001 - any verdict, handed on to every process first
            ctx.stop = e


class Metrics(Callback):
    """Each epoch's row to the run's ``metrics.csv`` (and TensorBoard when the ``MetricsLog`` has a writer)."""

    def __init__(self, sink: MetricsLog) -> None:
        self.sink = sink

    def on_train_epoch_end(self, ctx: StepContext, row: dict) -> None:
        self.sink.write(row)
