"""DistPro's search: bi-level meta-optimisation of the pathway weights α.

Each iteration: (1) the α step — a virtual SGD step of the student (momentum and weight decay included) on the
training batch, the validation CE of that unrolled student, and its hypergradient w.r.t. α through a
finite-difference Hessian-vector product; Adam (lr 0.1, betas 0.5/0.999) updates α. (2) the real student step with
the new α. The unrolled passes run through ``torch.func.functional_call`` on parameter and buffer copies, so the
student's BN statistics only move on the real step; the teacher stays in eval mode and is run once per batch.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from archkd.config import TrainConfig
from archkd.data import DataBundle
from archkd.device import seed_everything
from archkd.distill.objective import Taps
from archkd.distill.trainer import _optimizer, epoch_steps, evaluate, lr_factor, recalibrate_bn
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


def search_process(student: nn.Module, teacher: nn.Module, data: DataBundle, train: TrainConfig,
                   objective: ProcessObjective, *, seed: int = 0, device: torch.device | str = "cpu",
                   meta_val_fraction: float = 0.2, alpha_lr: float = 0.1, alpha_betas: tuple = (0.5, 0.999),
                   log: Callable[[str], None] | None = print) -> ProcessSearchResult:
    """Learn α over ``train.epochs`` epochs; returns the α trajectory and the student's validation accuracy."""
    t0 = time.perf_counter()
    dev = torch.device(device)
    seed_everything(seed)
    student.to(dev).train()
    teacher.to(dev).eval()
    pool = data.train.subset(train.data_fraction, seed)
    perm = np.random.default_rng([seed, 17]).permutation(len(pool))
    k = max(1, int(round(len(pool) * meta_val_fraction)))
    meta_idx, train_idx = np.sort(pool[perm[:k]]), np.sort(pool[perm[k:]])
    bs, steps_per_epoch = epoch_steps(len(train_idx), train.batch_size)
    s_taps = Taps(student, objective.student_taps)
    t_taps = Taps(teacher, objective.teacher_taps)

    def prep(x8: torch.Tensor, idx: torch.Tensor, epoch: int) -> torch.Tensor:
        return data.normalize(data.augment(x8, idx, epoch, seed))

    x8, _, idx = next(data.train.batches(min(bs, 8), device=dev, indices=train_idx))
    with torch.no_grad():
        student.eval()
        student(prep(x8, idx, 0))
        student.train()
        teacher(prep(x8, idx, 0))
    objective.setup(s_taps.pop(), t_taps.pop())
    objective.to(dev)
    joint = _Joint(student, objective, s_taps)
    w_names = [n for n, _ in joint.named_parameters() if n != "objective.alpha"]
    w_params = [p for n, p in joint.named_parameters() if n != "objective.alpha"]
    opt = _optimizer(w_params, train)
    a_opt = torch.optim.Adam([objective.alpha], lr=alpha_lr, betas=tuple(alpha_betas), weight_decay=0.0)
    total = train.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, train, steps_per_epoch))

    def meta_batches():
        e = 0
        while True:
            yield from data.train.batches(bs, device=dev, shuffle=True, epoch=10_000 + e, seed=seed,
                                          indices=meta_idx, drop_last=len(meta_idx) > bs)
            e += 1

    meta_iter = meta_batches()
    traj, weights, history = [], [], []
    meta_time = 0.0
    for epoch in range(train.epochs):
        te = time.perf_counter()
        losses = []
        for x8, y, idx in data.train.batches(bs, device=dev, shuffle=True, epoch=epoch, seed=seed,
                                             indices=train_idx, drop_last=True):
            x = prep(x8, idx, epoch)
            with torch.no_grad():
                teacher(x)
                t_feats = t_taps.pop()
            xv8, yv, iv = next(meta_iter)
            xv = prep(xv8, iv, 10_000 + epoch)
            tm = time.perf_counter()
            mom = {n: opt.state[p]["momentum_buffer"] for n, p in zip(w_names, w_params)
                   if p in opt.state and opt.state[p].get("momentum_buffer") is not None}
            hg, lv = alpha_hypergradient(joint, x, y, t_feats, xv, yv, lr=opt.param_groups[0]["lr"],
                                         momentum=train.momentum, weight_decay=train.weight_decay,
                                         momentum_buffers=mom)
            a_opt.zero_grad(set_to_none=True)
            objective.alpha.grad = hg.detach()
            a_opt.step()
            meta_time += time.perf_counter() - tm
            loss = joint(x, y, t_feats)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            objective.alpha.grad = None
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            traj.append(objective.alpha.detach().cpu().clone())
            weights.append(normalize(objective.alpha.detach(), objective.normalization, objective.scale).cpu())
        if train.bn_recalibration:
            recalibrate_bn(student, data.train, data.normalize, dev, indices=train_idx, n=train.bn_recalibration,
                           batch_size=bs)
        acc = evaluate(student, data.val, data.normalize, dev)
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else math.nan, "val_acc": acc,
               "weights": weights[-1].tolist() if weights else []}
        history.append(row)
        if log:
            log(f"process search epoch {epoch + 1}/{train.epochs}: loss {row['train_loss']:.4f} val_acc {acc:.4f} "
                f"({time.perf_counter() - te:.1f}s) weights " + " ".join(f"{v:.2f}" for v in row["weights"]))
    s_taps.remove()
    t_taps.remove()
    return ProcessSearchResult(torch.stack(traj) if traj else objective.alpha.detach().cpu()[None],
                               torch.stack(weights) if weights else objective.alpha.detach().cpu()[None],
                               objective.pathways, objective.student_taps, objective.teacher_taps, steps_per_epoch,
                               train.epochs, history[-1]["val_acc"] if history else 0.0,
                               time.perf_counter() - t0, meta_time, history)
