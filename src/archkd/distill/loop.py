"""One training loop for teachers, search trials and final distillation.

Read it top to bottom: set up (``prepare``: device, precision, optimiser), then per epoch augment on the device,
forward the student, get the teacher's view (cache or forward), take the objective, step; validate. Everything else
is a callback (``archkd.distill.callbacks``): checkpoints and resumption (``Checkpointing``), the epoch's line and
progress, the caller's ``on_epoch``, torchrun's collectives (``Distributed``). It knows nothing of searches: a search
passes ``on_epoch`` (e.g. to report to a pruner) or callbacks, and reads the returned ``FitResult``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from archkd.config import TrainConfig
from archkd.data import DataBundle
from archkd.device import world
from archkd.distill.autotune import autocast
from archkd.distill.cache import TeacherCache
from archkd.distill.callbacks import Batch, Callback, EpochLog, FitLog, OnEpoch, ProgressReport, TrainHook
from archkd.distill.evaluation import evaluate, recalibrate_bn
from archkd.distill.objective import DistillObjective
from archkd.distill.prepare import prepare
from archkd.distill.recipe import ModelEMA, apply_mix, draw_mix
from archkd.distill.resume import Checkpointing
from archkd.errors import ArchkdError
from archkd.progress import Progress

logger = logging.getLogger(__name__)


@dataclass
class FitResult:
    best_val_acc: float
    last_val_acc: float
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    best_path: Path | None = None
    last_path: Path | None = None
    seconds: float = 0.0
    images_per_s: float = 0.0
    cache: dict | None = None
    resumed_at_epoch: int | None = None  # first epoch trained by this call when it continued from last.pt
    # the student's setting, where it came from, measured img/s (autotune.Choice); under "teacher" the same for a
    # frozen teacher's inference
    precision: dict | None = None


def fit(model: nn.Module, data: DataBundle, cfg: TrainConfig, *, objective: DistillObjective | None = None,
        teacher: nn.Module | None = None, cache: TeacherCache | None = None, seed: int = 0,
        device: str | torch.device = "auto", out_dir: str | Path | None = None, spec: dict | None = None,
        meta: dict | None = None, on_epoch: Callable[[int, dict], None] | None = None,
        log: Callable[[str], None] | None = print, resume: bool = False, progress_every: float = 15.0,
        hooks: Sequence[TrainHook] = (), indices: np.ndarray | None = None,
        teacher_train: TrainConfig | None = None, progress: Progress | None = None,
        callbacks: Sequence[Callback] = ()) -> FitResult:
    """Train ``model`` on ``data.train`` with ``objective`` (CE only when None); evaluate on ``data.val``.

    The one training loop: teachers, search trials, final students and DistPro's search (a ``TrainHook``) all run
    here. ``indices`` replaces the training subset (``cfg.data_fraction`` of the split by default). With
    ``teacher_train``, the teacher trains too: gradients of the objective (and of hooks' ``loss_terms``) flow into it,
    with its own optimiser and schedule from that recipe; the teacher-output cache is then refused.

    With ``out_dir``, writes ``best.pt`` and ``last.pt`` (architecture spec, preprocessing, optimizer, schedule, RNG and
    hook state) after each epoch; ``resume=True`` continues from ``last.pt`` at the next epoch when it was written for
    the same run (same spec, recipe, seed and ``meta``; anything else starts fresh rather than continue a different
    run). The data order and augmentation are functions of (seed, epoch), so a resumed run equals an uninterrupted
    one. ``progress`` (or, without it, the log every ``progress_every`` seconds) reports where training stands.
    ``callbacks`` watch the loop (``archkd.distill.callbacks``; e.g. ``Metrics``), after the built-in ones.

    Messages (precision chosen, resumption, one line per epoch, progress) go to ``log``; with ``log=None`` they go to
    the ``archkd.distill.*`` loggers at INFO instead (silent unless logging is configured). Under torchrun only
    rank 0 speaks, writes the run directory, calls ``on_epoch`` and ``callbacks``.
    """
    t0 = time.perf_counter()
    rank, world_size = world()
    speaks = rank == 0
    mixing = cfg.mixup > 0 or cfg.cutmix > 0
    if mixing and (hooks or teacher_train is not None or (objective is not None and not objective.mixable)):
        raise ArchkdError("train.mixup / train.cutmix mix a batch's labels, which a process search, a replayed "
                          "process or a generic teacher's training does not take",
                          "set train.mixup=0 and train.cutmix=0 for this run")
    hooks = [*hooks, ModelEMA(cfg.ema)] if cfg.ema else list(hooks)  # last: a resumed run finds its state in place
    ctx, view, ddp = prepare(model, data, cfg, objective=objective, teacher=teacher, cache=cache, seed=seed,
                             device=device, hooks=hooks, indices=indices, teacher_train=teacher_train, spec=spec,
                             log=FitLog(logger, log, silent=not speaks), rank=rank, world_size=world_size)
    objective, dev, bs, hooks = ctx.objective, ctx.device, ctx.batch_size, ctx.hooks
    out = Path(out_dir) if out_dir and speaks else None
    if progress is None and ctx.log.isEnabledFor(logging.INFO):
        progress = Progress(ctx.log.info, every=progress_every, live=False)
    ctx.callbacks = [*hooks, Checkpointing(out, spec=spec, meta=meta, resume=resume), EpochLog(),
                     *([ProgressReport(progress)] if progress is not None else []), *(callbacks if speaks else ()),
                     *([OnEpoch(on_epoch)] if on_epoch and speaks else []), *([ddp] if ddp else [])]
    ctx.emit("setup")  # hooks build their state; Distributed takes its shard
    ctx.emit("on_fit_start")  # Checkpointing may resume: ctx.start_epoch, history, best so far
    ctx.acc = ctx.best_acc
    seen, train_time = 0, 0.0
    for epoch in range(ctx.start_epoch, cfg.epochs):
        ctx.epoch = epoch
        train_tag = "train" if data.augment.is_identity else f"e{epoch}"  # identity: every epoch, the same views
        model.train()
        objective.train()
        ctx.epoch_started = time.perf_counter()
        ctx.emit("on_train_epoch_start")
        sums: dict[str, float] = {}
        n_batches = 0
        for x8, y, idx in data.train.batches(bs, device=dev, shuffle=True, epoch=epoch, seed=seed,
                                             indices=ctx.indices, drop_last=True):
            if ctx.shard is not None:  # torchrun: this process's rows of the global batch
                x8, y, idx = x8[ctx.shard], y[ctx.shard], idx[ctx.shard]
            x = ctx.prep(x8, idx, epoch)
            mix = draw_mix(cfg.mixup, cfg.cutmix, seed, ctx.step, len(y), x.shape[-2], x.shape[-1], dev) \
                if mixing else None
            if mix is not None:
                x = apply_mix(x, mix)
            with autocast(dev, view.amp):
                t_logits, t_feats = view(x, idx, train_tag, cached=mix is None)  # a mixed image is a new view
            batch = Batch(x, y, idx, epoch, t_logits, t_feats)
            for h in hooks:
                h.before_step(ctx, batch)
            with autocast(dev, ctx.amp):
                s_logits = model(x).float()  # the loss in fp32: KD's softmax at temperature T loses most in bf16
                taps = ctx.student_taps.pop() if ctx.student_taps else None
                loss, parts = objective(s_logits, y, t_logits, taps, t_feats)
                if mix is not None:  # λ·L(y) + (1 − λ)·L(y[π]): the labels mix, the teacher's part is the same
                    other, other_parts = objective(s_logits, y[mix.perm], t_logits, taps, t_feats)
                    loss = mix.lam * loss + (1.0 - mix.lam) * other
                    parts = {k: mix.lam * v + (1.0 - mix.lam) * other_parts.get(k, v) for k, v in parts.items()}
                for h in hooks:
                    for name, term in h.loss_terms(ctx, batch, s_logits).items():
                        loss = loss + term
                        parts[name] = float(term.detach())
            ctx.optimizer.zero_grad(set_to_none=True)
            if ctx.teacher_optimizer is not None:
                ctx.teacher_optimizer.zero_grad(set_to_none=True)
            if world_size == 1 and not torch.isfinite(loss):  # (under torchrun: Distributed, on the mean loss)
                raise ArchkdError(f"training diverged (loss={float(loss)}) at epoch {epoch + 1}",
                                  "lower train.lr or set train.grad_clip")
            loss.backward()
            ctx.emit("on_after_backward", loss.detach())
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(ctx.params, cfg.grad_clip)
            ctx.optimizer.step()
            ctx.scheduler.step()
            if ctx.teacher_optimizer is not None:
                ctx.teacher_optimizer.step()
                ctx.teacher_scheduler.step()
            ctx.step += 1
            for h in hooks:
                h.after_step(ctx, batch, float(loss.detach()))
            seen += len(y) * world_size
            n_batches += 1
            ctx.emit("on_train_batch_end", batch, loss.detach())
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
        epoch_train = time.perf_counter() - ctx.epoch_started
        train_time += epoch_train
        row = {"epoch": epoch + 1, "train_loss": sum(sums.values()) / max(1, n_batches),
               **{f"loss_{k}": v / max(1, n_batches) for k, v in sums.items()},
               "lr": ctx.optimizer.param_groups[0]["lr"],
               "images_per_s": n_batches * bs / epoch_train if epoch_train else 0.0}
        if (epoch + 1) % max(1, cfg.eval_every) == 0 or epoch + 1 == cfg.epochs:
            ctx.emit("on_validation_start")
            if cfg.bn_recalibration:
                recalibrate_bn(model, data.train, data.normalize, dev, indices=ctx.indices, n=cfg.bn_recalibration,
                               batch_size=bs, channels_last=ctx.channels_last)
            ctx.acc = row["val_acc"] = evaluate(model, data.val, data.normalize, dev, channels_last=ctx.channels_last)
            if ctx.acc > ctx.best_acc:
                ctx.best_acc, ctx.best_epoch = ctx.acc, epoch + 1
            ctx.emit("on_validation_end", row)  # Checkpointing: best.pt on a new best
        row["seconds"] = time.perf_counter() - ctx.epoch_started
        for h in hooks:
            h.after_epoch(ctx, row)
        ctx.history.append(row)
        ctx.emit("on_train_epoch_end", row)  # last.pt, the epoch's line, on_epoch, torchrun's stop together
        if ctx.stop is not None:
            raise ctx.stop
    ctx.emit("on_fit_end")
    view.close()  # (flushes the cache the teacher filled: the one of its precision)
    if ctx.student_taps:
        ctx.student_taps.remove()
    return FitResult(best_val_acc=ctx.best_acc, last_val_acc=ctx.acc, best_epoch=ctx.best_epoch, history=ctx.history,
                     best_path=out / "best.pt" if out else None, last_path=out / "last.pt" if out else None,
                     seconds=time.perf_counter() - t0, images_per_s=seen / train_time if train_time else 0.0,
                     cache=view.cache.stats() if view.cache else None, resumed_at_epoch=ctx.resumed_at,
                     precision=ctx.precision)
