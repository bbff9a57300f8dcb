"""DistPro's search: bi-level meta-optimisation of the pathway weights α.

Each iteration: (1) the α step — a virtual SGD step of the student (momentum and weight decay included) on the
training batch, the validation CE of that unrolled student, and its hypergradient w.r.t. α through a
finite-difference Hessian-vector product; Adam (lr 0.1, betas 0.5/0.999) updates α. (2) the real student step with
the new α. The unrolled passes run through ``torch.func.functional_call`` on parameter and buffer copies, so the
student's BN statistics only move on the real step; the teacher stays in eval mode and is run once per batch.
The loop itself is ``archkd.distill.fit``: the meta-step is its ``MetaStep`` hook, so the search has fit's
checkpoints, resume, BatchNorm recalibration, evaluation and progress.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from archkd.config import TrainConfig
from archkd.data import DataBundle
from archkd.distill import Batch, StepContext, Taps, TrainHook, epoch_steps, fit
from archkd.process.process import Pathway, ProcessObjective, normalize

Params = dict[str, torch.Tensor]


def hypergradient(train_loss: Callable[[Params], torch.Tensor], val_loss: Callable[[Params], torch.Tensor],
                  params: Params, alpha: torch.Tensor, lr: float, momentum: float, weight_decay: float,
                  momentum_buffers: Params | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """∂ L_val(w′(α)) / ∂α for the one-step unrolled student w′ = w − η(μ·m + ∇_w L_train(w, α) + λ·w).

    Second-order term by central differences: ∇²_{α,w} L_train · v ≈ [∇_α L_train(w + εv) − ∇_α L_train(w − εv)] / 2ε
    with v = ∇_{w′} L_val(w′) and ε = 0.01 / ‖v‖. ``train_loss`` must depend on ``alpha``; ``val_loss`` does not.
    Returns (hypergradient, L_val(w′)).
    """
    names = list(params)
    w = [params[n].detach() for n in names]
    wt = [p.clone().requires_grad_() for p in w]
    g = torch.autograd.grad(train_loss(dict(zip(names, wt))), wt, allow_unused=True)
    g = [torch.zeros_like(p) if gi is None else gi for p, gi in zip(w, g)]
    m = [momentum_buffers.get(n, torch.zeros_like(p)) if momentum_buffers else torch.zeros_like(p)
         for n, p in zip(names, w)]
    w_virtual = [(p - lr * (momentum * mi + gi + weight_decay * p)).detach().requires_grad_()
                 for p, gi, mi in zip(w, g, m)]
    lv = val_loss(dict(zip(names, w_virtual)))
    v = torch.autograd.grad(lv, w_virtual, allow_unused=True)
    v = [torch.zeros_like(p) if vi is None else vi for p, vi in zip(w, v)]
    norm = torch.sqrt(sum((vi.double() ** 2).sum() for vi in v))
    if float(norm) == 0.0:
        return torch.zeros_like(alpha), lv.detach()
    eps = 0.01 / norm.to(w[0].dtype)
    ga = []
    for sign in (1.0, -1.0):
        shifted = {n: (p + sign * eps * vi).detach() for n, p, vi in zip(names, w, v)}
        ga.append(torch.autograd.grad(train_loss(shifted), alpha)[0])
    return -lr * (ga[0] - ga[1]) / (2 * eps), lv.detach()


class _Joint(nn.Module):
    """Student + process objective as one module, so one ``functional_call`` swaps both sets of parameters."""

    def __init__(self, student: nn.Module, objective: ProcessObjective, s_taps: Taps) -> None:
        super().__init__()
        self.student, self.objective, self._taps = student, objective, s_taps

    def forward(self, x: torch.Tensor, y: torch.Tensor, t_feats: list[torch.Tensor]) -> torch.Tensor:
        logits = self.student(x)
        loss, _ = self.objective(logits, y, None, self._taps.pop(), t_feats)
        return loss


def alpha_hypergradient(joint: _Joint, x: torch.Tensor, y: torch.Tensor, t_feats: list[torch.Tensor],
                        xv: torch.Tensor, yv: torch.Tensor, *, lr: float, momentum: float, weight_decay: float,
                        momentum_buffers: Params | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The α hypergradient for one (train, validation) batch pair.

    Every unrolled pass runs through ``functional_call`` with *copies* of the buffers, so BN running statistics (and
    the process step counter) of the real modules never move here; the teacher features are reused as given.
    """
    buffers = dict(joint.named_buffers())
    params = {n: p for n, p in joint.named_parameters() if n != "objective.alpha"}

    def copies(prefix: str = "") -> Params:
        return {n[len(prefix):]: b.clone() for n, b in buffers.items() if n.startswith(prefix)}

    def train_loss(p: Params) -> torch.Tensor:
        return functional_call(joint, ({**p, **copies()},), (x, y, t_feats), strict=False)

    def val_loss(p: Params) -> torch.Tensor:
        sp = {n[len("student."):]: v for n, v in p.items() if n.startswith("student.")}
        logits = functional_call(joint.student, ({**sp, **copies("student.")},), (xv,), strict=False)
        joint._taps.pop()
        return F.cross_entropy(logits.float(), yv)

    return hypergradient(train_loss, val_loss, params, joint.objective.alpha, lr, momentum, weight_decay,
                         momentum_buffers)


@dataclass
class ProcessSearchResult:
    trajectory: torch.Tensor  # [steps, N] raw α after each meta-update
    weights: torch.Tensor  # [steps, N] normalised as during the search
    pathways: list[Pathway]
    student_taps: list[str]
    teacher_taps: list[str]
    steps_per_epoch: int
    epochs: int
    val_acc: float
    seconds: float
    meta_seconds: float
    history: list[dict] = field(default_factory=list)


class MetaStep(TrainHook):
    """DistPro's seam in the training loop: the α meta-update before each real student step (on the next batch of
    the held-out meta split), the α trajectory after it. α is stepped here by its own Adam, not by the loop.

    Meta batches are a function of the step (meta epoch ``step // n``, batch ``step % n``), so a resumed search draws
    the batches the uninterrupted one would; the Adam state and trajectory travel in ``last.pt`` via ``state_dict``.
    """

    def __init__(self, objective: ProcessObjective, meta_idx: np.ndarray, alpha_lr: float, alpha_betas: tuple,
                 log: Callable[[str], None] | None = None) -> None:
        self.objective, self.meta_idx, self.log = objective, meta_idx, log
        self.a_opt = torch.optim.Adam([objective.alpha], lr=alpha_lr, betas=tuple(alpha_betas), weight_decay=0.0)
        self.traj: list[torch.Tensor] = []
        self.weights: list[torch.Tensor] = []
        self.meta_seconds = 0.0
        self._cached: tuple[int, list] = (-1, [])

    def owned_parameters(self) -> list[nn.Parameter]:
        return [self.objective.alpha]

    def setup(self, ctx: StepContext) -> None:
        self.joint = _Joint(ctx.model, self.objective, ctx.student_taps)
        self.w = [(n, p) for n, p in self.joint.named_parameters() if n != "objective.alpha"]

    def _meta_batch(self, ctx: StepContext, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        drop = len(self.meta_idx) > ctx.batch_size
        n = len(self.meta_idx) // ctx.batch_size if drop else 1
        epoch = step // n
        if self._cached[0] != epoch:
            self._cached = (epoch, list(ctx.data.train.batches(ctx.batch_size, device=ctx.device, shuffle=True,
                                                               epoch=10_000 + epoch, seed=ctx.seed,
                                                               indices=self.meta_idx, drop_last=drop)))
        return self._cached[1][step % n]

    def before_step(self, ctx: StepContext, batch: Batch) -> None:
        tm = time.perf_counter()
        xv8, yv, iv = self._meta_batch(ctx, ctx.step)
        xv = ctx.prep(xv8, iv, 10_000 + batch.epoch)
        opt = ctx.optimizer
        mom = {n: opt.state[p]["momentum_buffer"] for n, p in self.w
               if p in opt.state and opt.state[p].get("momentum_buffer") is not None}
        hg, _ = alpha_hypergradient(self.joint, batch.x, batch.y, batch.t_feats, xv, yv,
                                    lr=opt.param_groups[0]["lr"], momentum=ctx.cfg.momentum,
                                    weight_decay=ctx.cfg.weight_decay, momentum_buffers=mom)
        self.a_opt.zero_grad(set_to_none=True)
        self.objective.alpha.grad = hg.detach()
        self.a_opt.step()
        self.meta_seconds += time.perf_counter() - tm

    def after_step(self, ctx: StepContext, batch: Batch, loss: float) -> None:
        alpha = self.objective.alpha
        alpha.grad = None  # the student's backward reached α too; only the meta-step moves it
        self.traj.append(alpha.detach().cpu().clone())
        self.weights.append(normalize(alpha.detach(), self.objective.normalization, self.objective.scale).cpu())

    def after_epoch(self, ctx: StepContext, row: dict) -> None:
        row["weights"] = self.weights[-1].tolist() if self.weights else []
        if self.log:
            self.log("pathway weights " + " ".join(f"{v:.2f}" for v in row["weights"]))

    def state_dict(self) -> dict:
        return {"a_opt": self.a_opt.state_dict(), "traj": list(self.traj), "weights": list(self.weights),
                "meta_seconds": self.meta_seconds}

    def load_state_dict(self, state: dict) -> None:
        self.a_opt.load_state_dict(state["a_opt"])
        self.traj, self.weights = list(state["traj"]), list(state["weights"])
        self.meta_seconds = float(state["meta_seconds"])


def search_process(student: nn.Module, teacher: nn.Module, data: DataBundle, train: TrainConfig,
                   objective: ProcessObjective, *, seed: int = 0, device: torch.device | str = "cpu",
                   meta_val_fraction: float = 0.2, alpha_lr: float = 0.1, alpha_betas: tuple = (0.5, 0.999),
                   log: Callable[[str], None] | None = print, out_dir: str | Path | None = None,
                   spec: dict | None = None, resume: bool = False, meta: dict | None = None,
                   on_epoch: Callable[[int, dict], None] | None = None) -> ProcessSearchResult:
    """Learn α over ``train.epochs`` epochs; returns the α trajectory and the student's validation accuracy.

    The student trains in ``archkd.distill.fit`` (checkpoints, resume, BN recalibration, evaluation) with the
    ``MetaStep`` hook; a ``meta_val_fraction`` of the training subset is held out for the meta-objective.
    """
    pool = data.train.subset(train.data_fraction, seed)
    perm = np.random.default_rng([seed, 17]).permutation(len(pool))
    k = max(1, int(round(len(pool) * meta_val_fraction)))
    meta_idx, train_idx = np.sort(pool[perm[:k]]), np.sort(pool[perm[k:]])
    hook = MetaStep(objective, meta_idx, alpha_lr, alpha_betas, log)
    res = fit(student, data, train, objective=objective, teacher=teacher, seed=seed, device=device, out_dir=out_dir,
              spec=spec, meta={**(meta or {}), "process_search": {
                  "meta_val_fraction": meta_val_fraction, "alpha_lr": alpha_lr, "alpha_betas": list(alpha_betas)}},
              log=log, resume=resume, hooks=[hook], indices=train_idx, on_epoch=on_epoch)
    alpha0 = objective.alpha.detach().cpu()[None]
    return ProcessSearchResult(torch.stack(hook.traj) if hook.traj else alpha0,
                               torch.stack(hook.weights) if hook.weights else alpha0,
                               objective.pathways, objective.student_taps, objective.teacher_taps,
                               epoch_steps(len(train_idx), train.batch_size)[1], train.epochs, res.last_val_acc,
                               res.seconds, hook.meta_seconds, res.history)
