"""One training loop for teachers, search trials and final distillation.

Read it top to bottom: build optimizer and schedule, then per epoch augment on the device, forward the student,
get the teacher's view (cache or forward), take the objective, step; evaluate; checkpoint best and last. It knows
nothing of searches: a search passes ``on_epoch`` (e.g. to report to a pruner) and reads the returned ``FitResult``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from archkd.config import TrainConfig
from archkd.data import DataBundle, ImageSet, Normalize
from archkd.device import broadcast_object, resolve_device, seed_everything, use_amp, use_channels_last, world
from archkd.distill.autotune import Choice, Setting, autocast, choose
from archkd.distill.cache import TeacherCache, cache_precision
from archkd.distill.checkpoint import load_checkpoint, save_checkpoint
from archkd.distill.objective import DistillObjective, Taps
from archkd.errors import ArchkdError, ArchkdWarning
from archkd.progress import Progress


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
    precision: dict | None = None  # the student's setting, where it came from, measured img/s (autotune.Choice)


def epoch_steps(n: int, batch_size: int) -> tuple[int, int]:
    """(batch size actually used, optimizer steps per epoch) for ``n`` training images: the last partial batch is
    dropped. Shared by every loop and by whoever must know a schedule's length before training (process replay)."""
    bs = max(1, min(batch_size, n))
    return bs, max(1, n // bs)


def running_bns(model: nn.Module) -> list[nn.Module]:
    """The model's BatchNorm layers that keep running statistics (those eval mode depends on)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


# Below this many optimizer steps a run without BN recalibration is warned: BN's running averages (momentum 0.1)
# trail the weights by tens of steps, and a CIFAR-10 student trained 18 steps predicted one class in eval mode (10.00 %
# test; 17.3 % with train.bn_recalibration=2048). Digits' DistPro trials at 52 steps showed the same (12 % vs 53 %).
SHORT_RUN_STEPS = 100


@torch.no_grad()
def recalibrate_bn(model: nn.Module, images: ImageSet, normalize: Normalize, device: torch.device | str = "cpu", *,
                   indices: np.ndarray, n: int, batch_size: int, channels_last: bool = False) -> int:
    """Re-estimate BatchNorm running statistics from ``n`` of ``indices`` (a fixed random sample, the same for every
    run seed: image folders are sorted by class, so the first ``n`` would describe a few classes only).

    Why: BN's running averages (momentum 0.1) trail the weights by tens of steps. After a few epochs, as in search
    trials, the weights still move fast and eval-mode accuracy can sit far below what the model has learned (on digits
    a 4-epoch DistPro trial scored 12 % in eval mode and 51 % in train mode; recalibrated, 53 %). Train-mode forwards
    without gradients re-estimate the statistics of the current weights as the equal-weight mean of per-batch
    statistics (a last partial batch is dropped). Weights and optimizer state are untouched; the only side effects
    are BN buffers and, for models with dropout, draws from torch's global RNG. Images are un-augmented, as
    ``evaluate`` sees them. Returns the number of images used (0 when the model has no BatchNorm with running
    statistics or fewer than 2 images are available).
    """
    bns = running_bns(model)
    indices = np.asarray(indices)
    sel = indices[np.sort(np.random.default_rng(0).permutation(len(indices))[:max(0, n)])]
    if not bns or len(sel) < 2:
        return 0
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    was = model.training
    model.train()
    seen = 0
    try:
        for x8, _, idx in images.batches(min(batch_size, len(sel)), device=torch.device(device), indices=sel,
                                         drop_last=len(sel) > batch_size):
            x = normalize(x8)
            model(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
            seen += len(idx)
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.train(was)
    return seen


@torch.no_grad()
def evaluate(model: nn.Module, images: ImageSet, normalize: Normalize, device: torch.device | str = "cpu",
             batch_size: int = 512, channels_last: bool = False) -> float:
    """Top-1 accuracy on an un-augmented split; restores the model's train/eval mode afterwards."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    correct = 0
    for x8, y, _ in images.batches(batch_size, device=device):
        x = normalize(x8)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        correct += int((model(x).argmax(1) == y).sum())
    model.train(was_training)
    return correct / max(1, len(images))


@torch.no_grad()
def teacher_accuracy(teacher: nn.Module, data: DataBundle, cache: TeacherCache | None = None,
                     device: torch.device | str = "cpu", batch_size: int = 512) -> float:
    """The teacher's validation accuracy; its un-augmented validation logits come from (and fill) the cache."""
    device = torch.device(device)
    teacher.to(device).eval()
    correct = 0
    for x8, y, idx in data.val.batches(batch_size, device=device):
        x = data.normalize(x8)
        logits = cache.lookup("val", idx, lambda m: teacher(x[m]).float()) if cache else teacher(x)
        correct += int((logits.argmax(1) == y).sum())
    if cache:
        cache.flush()
    return correct / max(1, len(data.val))


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
    """What the loop holds, handed to hooks: the models, the objective, the optimiser and where training stands."""

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


class TrainHook:
    """A seam of the training loop: a method adds behaviour here instead of copying the loop.

    Order per step: teacher view → ``before_step`` → student forward, objective + ``loss_terms`` → backward →
    optimiser steps → ``after_step``; per epoch, ``after_epoch`` sees the epoch's row (validation included) and may add
    to it. ``owned_parameters`` are left out of the loop's optimiser (the hook steps them itself, e.g. DistPro's α);
    ``state_dict`` goes into ``last.pt`` so a resumed run continues the hook too.
    """

    def owned_parameters(self) -> list[nn.Parameter]:
        return []

    def setup(self, ctx: StepContext) -> None:
        pass

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


class TeacherView:
    """What the student is distilled from for one batch: logits (cached when possible) and tap features."""

    def __init__(self, teacher: nn.Module | None, objective: DistillObjective, cache: TeacherCache | None,
                 trainable: bool = False) -> None:
        self.teacher = teacher
        self.objective = objective
        self.cache = cache
        self.trainable = trainable
        self.taps = Taps(teacher, objective.teacher_taps) if teacher is not None and objective.teacher_taps else None
        if objective.uses_teacher and teacher is None:
            raise ArchkdError("the distillation loss needs a teacher but none was given", "set teacher.path")

    def __call__(self, x: torch.Tensor, idx: torch.Tensor, tag: str) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        """Teacher logits and tap features for a batch: from the cache when frozen and possible, with gradients when
        the teacher trains."""
        if not self.objective.uses_teacher:
            return None, []
        with contextlib.nullcontext() if self.trainable else torch.no_grad():
            if self.taps is None and self.cache is not None:
                return self.cache.lookup(tag, idx, lambda mask: self.teacher(x[mask]).float()), []
            logits = self.teacher(x).float()
            return logits, (self.taps.pop() if self.taps else [])

    def close(self) -> None:
        if self.taps:
            self.taps.remove()
        if self.cache:
            self.cache.flush()


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


OUTPUT_ONLY = ("tensorboard",)  # TrainConfig fields that change what is logged, not what is trained


def _run_key(spec: dict | None, cfg: TrainConfig, seed: int, meta: dict | None) -> str:
    """What makes two runs the same run: a checkpoint is resumed only under the same key."""
    recipe = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in OUTPUT_ONLY}
    blob = json.dumps([spec, recipe, seed, meta], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _damaged(path: Path, problem: str) -> ArchkdError:
    """The error for a run's own ``last.pt`` that cannot be resumed. Why a refusal, not a silent fresh start: the
    epochs it holds would be lost and the run's ``best.pt`` overwritten by the new training's first validation, so
    the user decides; the fix is the exact command, and another ``--name`` keeps everything."""
    return ArchkdError(f"cannot resume this run: {problem}",
                       f"{path} is damaged; delete it to train this run again from scratch (rm {path}; its best.pt is "
                       "then overwritten), or run under another --name")


def _resumable(path: Path) -> dict:
    """``load_checkpoint`` of the run's own ``last.pt``: a file that does not load is this run's damaged checkpoint,
    not a foreign one (the generic advice to give a checkpoint written by archkd would mislead)."""
    try:
        return load_checkpoint(path)
    except ArchkdError as e:
        raise _damaged(path, e.problem) from None


def _precision(model: nn.Module, data: DataBundle, cfg: TrainConfig, dev: torch.device, indices: np.ndarray, bs: int,
               prep: Callable, total_steps: int, spec: dict | None, amp: bool, cl: bool) -> Choice:
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


def fit(model: nn.Module, data: DataBundle, cfg: TrainConfig, *, objective: DistillObjective | None = None,
        teacher: nn.Module | None = None, cache: TeacherCache | None = None, seed: int = 0,
        device: str | torch.device = "auto", out_dir: str | Path | None = None, spec: dict | None = None,
        meta: dict | None = None, on_epoch: Callable[[int, dict], None] | None = None,
        log: Callable[[str], None] | None = print, resume: bool = False, progress_every: float = 15.0,
        hooks: Sequence[TrainHook] = (), indices: np.ndarray | None = None,
        teacher_train: TrainConfig | None = None, progress: Progress | None = None) -> FitResult:
    """Train ``model`` on ``data.train`` with ``objective`` (CE only when None); evaluate on ``data.val``.

    The one training loop: teachers, search trials, final students and DistPro's search (a ``TrainHook``) all run
    here. ``indices`` replaces the training subset (``cfg.data_fraction`` of the split by default). With
    ``teacher_train``, the teacher trains too: gradients of the objective (and of hooks' ``loss_terms``) flow into it,
    with its own optimiser and schedule from that recipe; the teacher-output cache is then refused.

    With ``out_dir``, writes ``best.pt`` and ``last.pt`` (architecture spec, preprocessing, optimizer, schedule, RNG and
    hook state) after each epoch; ``resume=True`` continues from ``last.pt`` at the next epoch when it was written for
    the same run (same spec, recipe, seed and ``meta``; anything else starts fresh rather than continue a different
    run). The data order and augmentation are functions of (seed, epoch), so a resumed run equals an uninterrupted
    one. ``progress`` (or, without it, ``log`` every ``progress_every`` seconds) reports where training stands.
    """
    t0 = time.perf_counter()
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
    rank, n_proc = world()
    if n_proc > 1:  # every process walks the same global batches and trains its own rows of each
        if bs % n_proc:
            raise ArchkdError(f"batch size {bs} does not split over {n_proc} processes",
                              f"set train.batch_size to a multiple of {n_proc}")
        if hooks or teacher_train is not None:
            raise ArchkdError("hooks (DistPro's search) and trainable teachers do not run under torchrun yet",
                              "run them in one process")
        out_dir, on_epoch, log = (out_dir, on_epoch, log) if rank == 0 else (None, None, None)
    shard = slice(rank * (bs // n_proc), (rank + 1) * (bs // n_proc))
    view = TeacherView(teacher, objective, cache, trainable=teacher_train is not None)

    def prep(x8: torch.Tensor, idx: torch.Tensor, epoch: int) -> torch.Tensor:
        x = data.normalize(data.augment(x8, idx, epoch, seed))
        return x.contiguous(memory_format=torch.channels_last) if cl else x

    total_steps = cfg.epochs * steps_per_epoch
    # timed on copies of the model before any tap hooks are attached to it (a copy would carry them along)
    choice = _precision(model, data, cfg, dev, indices, bs, prep, total_steps, spec, amp, cl) if rank == 0 else None
    if n_proc > 1:  # every process trains with rank 0's choice
        choice = broadcast_object(choice)
    cl, student_amp = choice.setting.channels_last, choice.setting.amp
    if cl:
        model.to(memory_format=torch.channels_last)
    if log and choice.source != "config":
        log(f"precision: {choice.setting.name} ({choice.source}"
            + (": " + ", ".join(f"{k} {v:.0f} img/s" for k, v in choice.speeds.items()) + f"; {choice.seconds:.1f}s"
               if choice.speeds else "") + ")")
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
    params = [p for p in list(model.parameters()) + list(objective.parameters()) if p.requires_grad and id(p) not in owned]
    if not cfg.bn_recalibration and total_steps < SHORT_RUN_STEPS and running_bns(model) and rank == 0:
        warnings.warn(f"a short training ({total_steps} steps): BatchNorm's running averages trail the weights, so the "
                      "validated model can fall far below what it learned (even to one class); set "
                      "train.bn_recalibration=2048 (teacher.train.bn_recalibration for a teacher)", ArchkdWarning,
                      stacklevel=2)
    opt, sched = build_optimizer(params, cfg, total_steps, steps_per_epoch)
    t_opt = t_sched = None
    if teacher_train is not None:
        t_opt, t_sched = build_optimizer([p for p in teacher.parameters() if p.requires_grad], teacher_train,
                                         total_steps, steps_per_epoch)
    ctx = StepContext(model, objective, opt, sched, cfg, data, dev, seed, indices, bs, steps_per_epoch, prep, teacher,
                      s_taps)
    for h in hooks:
        h.setup(ctx)
    out = Path(out_dir) if out_dir else None
    history: list[dict] = []
    best_acc, best_epoch, start = -1.0, -1, 0
    run_key = _run_key(spec, cfg, seed, meta)
    resumed_at = None
    ck = _resumable(out / "last.pt") if resume and out and (out / "last.pt").exists() else None
    if n_proc > 1:  # rank 0 alone reads the run directory: the others continue from what it found
        ck = broadcast_object(ck)
    if ck is not None:
        if ck.get("run_key") == run_key:
            try:
                model.load_state_dict(ck["state_dict"])
                objective.load_state_dict(ck["objective"])
                opt.load_state_dict(ck["optimizer"])
                sched.load_state_dict(ck["scheduler"])
                if t_opt is not None:
                    teacher.load_state_dict(ck["teacher"])
                    t_opt.load_state_dict(ck["teacher_optimizer"])
                    t_sched.load_state_dict(ck["teacher_scheduler"])
                for h, state in zip(hooks, ck.get("hooks", [])):
                    h.load_state_dict(state)
                torch.set_rng_state(ck["rng"])
                if ck.get("cuda_rng") and torch.cuda.is_available():
                    torch.cuda.set_rng_state_all(ck["cuda_rng"])
                history, best_acc, best_epoch = ck["history"], ck["best_val_acc"], ck["best_epoch"]
                start = int(ck["epoch"]) + 1
            except (KeyError, TypeError, ValueError, RuntimeError) as e:  # this run's own file, yet it does not fit
                first = str(e).strip().splitlines()[0][:120] if str(e).strip() else "-"
                raise _damaged(out / "last.pt",
                               f"{out / 'last.pt'} does not fit it ({type(e).__name__}: {first})") from None
            resumed_at = start
            ctx.step = start * steps_per_epoch
            if log and start >= cfg.epochs:
                log(f"{out} holds this run, already finished: its result is reported, nothing is retrained "
                    "(another --name trains again)")
            elif log:
                log(f"resumed from {out / 'last.pt'} at epoch {start + 1}")
        elif log:
            log(f"{out / 'last.pt'} belongs to another run (model, recipe or seed differ): training from scratch")
    teacher_autocast = (lambda: autocast(dev, amp))
    if progress is None and log is not None:
        progress = Progress(log, every=progress_every, live=False)
    if progress is not None:
        progress.start(cfg.epochs, steps_per_epoch * bs)
    seen, train_time = 0, 0.0
    acc = best_acc
    for epoch in range(start, cfg.epochs):
        ctx.epoch = epoch
        train_tag = "train" if data.augment.is_identity else f"e{epoch}"  # identity: every epoch, the same views
        model.train()
        objective.train()
        te = time.perf_counter()
        sums: dict[str, float] = {}
        n_batches = 0
        for x8, y, idx in data.train.batches(bs, device=dev, shuffle=True, epoch=epoch, seed=seed,
                                             indices=indices, drop_last=True):
            if n_proc > 1:
                x8, y, idx = x8[shard], y[shard], idx[shard]
            x = prep(x8, idx, epoch)
            with teacher_autocast():
                t_logits, t_feats = view(x, idx, train_tag)
            batch = Batch(x, y, idx, epoch, t_logits, t_feats)
            for h in hooks:
                h.before_step(ctx, batch)
            with autocast(dev, student_amp):
                s_logits = model(x).float()  # the loss in fp32: KD's softmax at temperature T loses most in bf16
                loss, parts = objective(s_logits, y, t_logits, s_taps.pop() if s_taps else None, t_feats)
                for h in hooks:
                    for name, term in h.loss_terms(ctx, batch, s_logits).items():
                        loss = loss + term
                        parts[name] = float(term.detach())
            opt.zero_grad(set_to_none=True)
            if t_opt is not None:
                t_opt.zero_grad(set_to_none=True)
            if n_proc == 1 and not torch.isfinite(loss):
                raise ArchkdError(f"training diverged (loss={float(loss)}) at epoch {epoch + 1}",
                                  "lower train.lr or set train.grad_clip")
            loss.backward()
            if n_proc > 1 and not torch.isfinite(average_gradients(params, loss.detach())):  # every rank agrees
                raise ArchkdError(f"training diverged (loss not finite) at epoch {epoch + 1}",
                                  "lower train.lr or set train.grad_clip")
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            if t_opt is not None:
                t_opt.step()
                t_sched.step()
            ctx.step += 1
            for h in hooks:
                h.after_step(ctx, batch, float(loss.detach()))
            seen += len(y) * n_proc
            n_batches += 1
            if progress is not None:
                progress.step(epoch, n_batches * bs, n_batches * bs / max(time.perf_counter() - te, 1e-9),
                              loss.detach())
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
        epoch_train = time.perf_counter() - te
        train_time += epoch_train
        row = {"epoch": epoch + 1, "train_loss": sum(sums.values()) / max(1, n_batches),
               **{f"loss_{k}": v / max(1, n_batches) for k, v in sums.items()}, "lr": opt.param_groups[0]["lr"],
               "images_per_s": n_batches * bs / epoch_train if epoch_train else 0.0}
        if (epoch + 1) % max(1, cfg.eval_every) == 0 or epoch + 1 == cfg.epochs:
            if n_proc > 1:
                average_buffers(model)
            if cfg.bn_recalibration:
                recalibrate_bn(model, data.train, data.normalize, dev, indices=indices, n=cfg.bn_recalibration,
                               batch_size=bs, channels_last=cl)
            acc = evaluate(model, data.val, data.normalize, dev, channels_last=cl)
            row["val_acc"] = acc
            if acc > best_acc:
                best_acc, best_epoch = acc, epoch + 1
                if out:
                    save_checkpoint(out / "best.pt", model, spec=spec, extra={**(meta or {}), "epoch": epoch,
                                                                              "val_acc": acc})
        row["seconds"] = time.perf_counter() - te
        for h in hooks:
            h.after_epoch(ctx, row)
        history.append(row)
        if out:
            extra = {} if t_opt is None else {
                "teacher": {k: v.detach().cpu() for k, v in teacher.state_dict().items()},
                "teacher_optimizer": t_opt.state_dict(), "teacher_scheduler": t_sched.state_dict()}
            save_checkpoint(out / "last.pt", model, spec=spec, extra={
                **(meta or {}), "epoch": epoch, "val_acc": acc, "history": history, "best_val_acc": best_acc,
                "best_epoch": best_epoch, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "objective": objective.state_dict(), "rng": torch.get_rng_state(), "run_key": run_key,
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "hooks": [h.state_dict() for h in hooks], **extra})
        if log:
            msg = f"epoch {epoch + 1}/{cfg.epochs} loss {row['train_loss']:.4f}"
            log(msg + (f" val_acc {acc:.4f}" if "val_acc" in row else "") + f" ({time.perf_counter() - te:.1f}s)")
        stop: BaseException | None = None
        if on_epoch:
            try:
                on_epoch(epoch, row)
            except BaseException as e:  # e.g. a pruner's verdict: under torchrun every process must stop with it
                stop = e
        if n_proc > 1 and stop_together(stop is not None):
            if stop is None:
                raise StopTraining(f"rank 0 stopped training after epoch {epoch + 1}")
        if stop is not None:
            raise stop
    if progress is not None:
        progress.end()
    view.close()
    if s_taps:
        s_taps.remove()
    if cache is not None:
        cache.flush()
    return FitResult(best_val_acc=best_acc, last_val_acc=acc, best_epoch=best_epoch, history=history,
                     best_path=out / "best.pt" if out else None, last_path=out / "last.pt" if out else None,
                     seconds=time.perf_counter() - t0, images_per_s=seen / train_time if train_time else 0.0,
                     cache=cache.stats() if cache else None, resumed_at_epoch=resumed_at,
                     precision=choice.to_dict())
