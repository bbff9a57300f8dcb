"""Checkpoints of a run and its resumption: ``best.pt`` at each new best validation, ``last.pt`` after every epoch
(weights, optimiser, schedule, objective, RNG, history, hooks' state: all a resumed run needs to equal an
uninterrupted one), and the run continued from ``last.pt`` when it was written for the same run."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import torch

from archkd.config import TRAIN_OUTPUT_ONLY, TrainConfig, recipe_identity
from archkd.device import broadcast_object
from archkd.distill.callbacks import Callback, StepContext
from archkd.distill.checkpoint import load_checkpoint, save_checkpoint
from archkd.errors import ArchkdError

logger = logging.getLogger(__name__)

OUTPUT_ONLY = TRAIN_OUTPUT_ONLY  # (its former name here) TrainConfig fields that change what is logged, not trained

def run_key(spec: dict | None, cfg: TrainConfig, seed: int, meta: dict | None) -> str:
    """What makes two runs the same run: a checkpoint is resumed only under the same key."""
    recipe = dataclasses.asdict(cfg)  # as a dict, then the fields that define the run (recipe_identity)
    recipe = {k: recipe[k] for k in recipe_identity(cfg)}
    blob = json.dumps([spec, recipe, seed, meta], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def damaged(path: Path, problem: str) -> ArchkdError:
    """The error for a run's own ``last.pt`` that cannot be resumed. Why a refusal, not a silent fresh start: the
    epochs it holds would be lost and the run's ``best.pt`` overwritten by the new training's first validation, so
    the user decides; the fix is the exact command, and another ``--name`` keeps everything."""
    return ArchkdError(f"cannot resume this run: {problem}",
                       f"{path} is damaged; delete it to train this run again from scratch (rm {path}; its best.pt is "
                       "then overwritten), or run under another --name")


def resumable(path: Path) -> dict:
    """``load_checkpoint`` of the run's own ``last.pt``: a file that does not load is this run's damaged checkpoint,
    not a foreign one (the generic advice to give a checkpoint written by archkd would mislead)."""
    try:
        return load_checkpoint(path)
    except ArchkdError as e:
        raise damaged(path, e.problem) from None


class Checkpointing(Callback):
    """Writes ``best.pt`` and ``last.pt`` into ``out`` (none: nothing is written; other processes of a torchrun group)
    and, with ``resume``, continues from ``out/last.pt`` when its ``run_key`` is this run's (same spec, recipe, seed
    and ``meta``): anything else starts fresh rather than continue a different run. Under torchrun rank 0 alone reads
    the run directory and the other processes continue from what it found."""

    def __init__(self, out: Path | None, *, spec: dict | None, meta: dict | None, resume: bool) -> None:
        self.out, self.spec, self.meta, self.resume = out, spec, meta, resume
        self.key = ""

    def setup(self, ctx: StepContext) -> None:
        self.key = run_key(self.spec, ctx.cfg, ctx.seed, self.meta)

    def on_fit_start(self, ctx: StepContext) -> None:
        out = self.out
        ck = resumable(out / "last.pt") if self.resume and out and (out / "last.pt").exists() else None
        if ctx.world_size > 1:
            ck = broadcast_object(ck)
        if ck is None:
            return
        log = ctx.log.to(logger)
        if ck.get("run_key") != self.key:
            if out is not None:
                log.info(f"{out / 'last.pt'} belongs to another run (model, recipe or seed differ): training from "
                         "scratch")
            return
        try:
            ctx.model.load_state_dict(ck["state_dict"])
            ctx.objective.load_state_dict(ck["objective"])
            ctx.optimizer.load_state_dict(ck["optimizer"])
            ctx.scheduler.load_state_dict(ck["scheduler"])
            if ctx.teacher_optimizer is not None:
                ctx.teacher.load_state_dict(ck["teacher"])
                ctx.teacher_optimizer.load_state_dict(ck["teacher_optimizer"])
                ctx.teacher_scheduler.load_state_dict(ck["teacher_scheduler"])
            for h, state in zip(ctx.hooks, ck.get("hooks", [])):
                h.load_state_dict(state)
            torch.set_rng_state(ck["rng"])
            if ck.get("cuda_rng") and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(ck["cuda_rng"])
            ctx.history, ctx.best_acc, ctx.best_epoch = ck["history"], ck["best_val_acc"], ck["best_epoch"]
            start = int(ck["epoch"]) + 1
        except (KeyError, TypeError, ValueError, RuntimeError) as e:  # this run's own file, yet it does not fit
            first = str(e).strip().splitlines()[0][:120] if str(e).strip() else "-"
            raise damaged(out / "last.pt",
                           f"{out / 'last.pt'} does not fit it ({type(e).__name__}: {first})") from None
        ctx.start_epoch = ctx.resumed_at = start
        ctx.step = start * ctx.steps_per_epoch
        if out is None:
            return
        if start >= ctx.cfg.epochs:
            log.info(f"{out} holds this run, already finished: its result is reported, nothing is retrained "
                     "(another --name trains again)")
        else:
            log.info(f"resumed from {out / 'last.pt'} at epoch {start + 1}")

    def on_validation_end(self, ctx: StepContext, row: dict) -> None:
        if self.out and ctx.best_epoch == ctx.epoch + 1:  # a new best
            save_checkpoint(self.out / "best.pt", ctx.model, spec=self.spec,
                            extra={**(self.meta or {}), "epoch": ctx.epoch, "val_acc": ctx.acc})

    def on_train_epoch_end(self, ctx: StepContext, row: dict) -> None:
        if not self.out:
            return
        extra = {} if ctx.teacher_optimizer is None else {
            "teacher": {k: v.detach().cpu() for k, v in ctx.teacher.state_dict().items()},
            "teacher_optimizer": ctx.teacher_optimizer.state_dict(),
            "teacher_scheduler": ctx.teacher_scheduler.state_dict()}
        save_checkpoint(self.out / "last.pt", ctx.model, spec=self.spec, extra={
            **(self.meta or {}), "epoch": ctx.epoch, "val_acc": ctx.acc, "history": ctx.history,
            "best_val_acc": ctx.best_acc, "best_epoch": ctx.best_epoch, "optimizer": ctx.optimizer.state_dict(),
            "scheduler": ctx.scheduler.state_dict(), "objective": ctx.objective.state_dict(),
            "rng": torch.get_rng_state(), "run_key": self.key,
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "hooks": [h.state_dict() for h in ctx.hooks], **extra})
