"""Training-recipe additions timm users expect for a long final distillation: mixup / CutMix and a model EMA.

**Mixing** (``train.mixup``, ``train.cutmix``: the α of the Beta(α, α) that draws the mixing weight λ; 0 is off). A
step mixes its batch with a permutation of itself: mixup blends whole images, ``x̃ = λ·x + (1 − λ)·x[π]``; CutMix
pastes a box of ``x[π]`` covering a share ``1 − λ`` of the image (λ is then the exact kept area). With both set, each
step picks one of the two with equal probability, as timm does. The loss is the objective taken against both label
sets, ``λ·L(s, y, t) + (1 − λ)·L(s, y[π], t)``: its cross-entropy part mixes the labels, and its distillation part
reads the teacher's output on the *mixed* image (the same in both terms, unless the loss reads the label too, as DKD
does, which then mixes like the cross-entropy). Objectives that count their calls (a replayed process) are refused. A mixed image is a view no cache holds, so a
mixing step runs the teacher (it bypasses the teacher-output cache, which the run's cache statistics show). λ, π and
the box are drawn from (seed, step), so a resumed run mixes exactly as an uninterrupted one.

**Model EMA** (``train.ema``: the decay d, e.g. 0.999; null is off). After every optimiser step the average
``θ̄ ← d_t·θ̄ + (1 − d_t)·θ`` of the weights (buffers such as BatchNorm's statistics copied), with the warm-up
``d_t = min(d, (1 + t)/(10 + t))`` so a short run's average does not lag behind its first steps. Validation, the best
checkpoint and so the exported student use the average; training continues on the raw weights. Its state travels in
``last.pt``, so a resumed run continues the same average.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from archkd.distill.callbacks import StepContext, TrainHook

SALT = 0x4D1C  # keeps the mixing draws apart from the augmentation's, which hash (seed, epoch, index)


@dataclass(frozen=True)
class Mix:
    """One step's mixing: the kept weight ``lam``, the partner permutation and, for CutMix, the pasted box."""
    lam: float
    perm: torch.Tensor
    box: tuple[int, int, int, int] | None = None  # (y0, y1, x0, x1) for CutMix


def draw_mix(mixup: float, cutmix: float, seed: int, step: int, n: int, h: int, w: int,
             device: torch.device) -> Mix | None:
    """The mixing of training step ``step`` (None when both are off), a function of (seed, step) alone."""
    if mixup <= 0 and cutmix <= 0:
        return None
    rng = np.random.default_rng([SALT, seed, step])
    use_cutmix = cutmix > 0 and (mixup <= 0 or rng.random() < 0.5)
    lam = float(rng.beta(cutmix, cutmix) if use_cutmix else rng.beta(mixup, mixup))
    perm = torch.as_tensor(rng.permutation(n), device=device)
    if not use_cutmix:
        return Mix(lam, perm)
    ch, cw = int(h * np.sqrt(1 - lam)), int(w * np.sqrt(1 - lam))
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    return Mix(1.0 - (y1 - y0) * (x1 - x0) / (h * w), perm, (y0, y1, x0, x1))


def apply_mix(x: torch.Tensor, mix: Mix) -> torch.Tensor:
    if mix.box is None:
        return x.mul(mix.lam).add_(x[mix.perm], alpha=1.0 - mix.lam)
    y0, y1, x0, x1 = mix.box
    out = x.clone()
    out[..., y0:y1, x0:x1] = x[mix.perm][..., y0:y1, x0:x1]
    return out


class ModelEMA(TrainHook):
    """The model EMA as a hook of the loop (see the module docstring): averaged after each step, swapped in for
    validation and the best checkpoint (``on_validation_start`` … ``after_epoch``), kept in ``last.pt``."""

    runs_on_every_rank = True  # the same arithmetic on every process of a torchrun group: no collective needed

    def __init__(self, decay: float) -> None:
        self.decay, self.updates = float(decay), 0
        self.shadow: dict[str, torch.Tensor] = {}
        self.averaged: set[str] = set()  # the floating parameters; buffers (BatchNorm's statistics) are copied
        self.raw: dict[str, torch.Tensor] | None = None

    def _tensors(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return {**dict(model.named_parameters()), **dict(model.named_buffers())}

    def setup(self, ctx: StepContext) -> None:
        self.averaged = {k for k, v in ctx.model.named_parameters() if v.is_floating_point()}
        if not self.shadow:
            self.shadow = {k: v.detach().clone() for k, v in self._tensors(ctx.model).items()}

    @torch.no_grad()
    def after_step(self, ctx: StepContext, batch: object, loss: float) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in self._tensors(ctx.model).items():
            if k in self.averaged:
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1.0 - d)
            else:
                self.shadow[k].copy_(v)

    @torch.no_grad()
    def on_validation_start(self, ctx: StepContext) -> None:
        live = self._tensors(ctx.model)
        self.raw = {k: v.detach().clone() for k, v in live.items()}
        for k, v in live.items():
            v.copy_(self.shadow[k])

    @torch.no_grad()
    def after_epoch(self, ctx: StepContext, row: dict) -> None:
        if self.raw is None:  # no validation this epoch
            return
        for k, v in self._tensors(ctx.model).items():
            self.shadow[k].copy_(v)  # BatchNorm recalibration during validation updated the average's statistics
            v.copy_(self.raw[k])
        self.raw = None

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": {k: v.cpu() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        dev = next(iter(self.shadow.values())).device if self.shadow else "cpu"
        self.shadow = {k: v.to(dev) for k, v in state["shadow"].items()}
