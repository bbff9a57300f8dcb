"""Distillation losses behind a registry, so a new loss is one class in one file.

Two kinds share one contract (an ``nn.Module`` whose parameters, e.g. projectors, are trained with the student):
- ``LogitLoss.forward(student_logits, teacher_logits, targets) -> scalar``
- ``FeatureLoss.setup(student_shape, teacher_shape)`` once (creates projectors where shapes differ), then
  ``forward(student_feature, teacher_feature) -> scalar``.
Each class carries ``default_weight`` (e.g. AT's 1000 from its paper), used when a config gives no weight.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from archkd.config import register_choices
from archkd.errors import ArchkdError
from archkd.registry import Registry

LOSSES: Registry[type] = Registry("distillation loss", options_key="distill.features[*].kwargs")
register_choices("distill.loss", lambda: [n for n, c in LOSSES.items() if issubclass(c, LogitLoss)])
register_choices("distill.features.loss", lambda: [n for n, c in LOSSES.items() if issubclass(c, FeatureLoss)])


def register_loss(name: str) -> Callable[[type], type]:
    """Register a ``LogitLoss``/``FeatureLoss`` class as loss ``name`` (stamped on it as ``loss_name``)."""
    def deco(cls: type) -> type:
        LOSSES.register(name, cls)
        cls.loss_name = name
        return cls

    return deco


def create_loss(name: str, **kwargs) -> nn.Module:
    return LOSSES.build(name, **kwargs)


class LogitLoss(nn.Module):
    kind = "logit"
    default_weight = 1.0


class FeatureLoss(nn.Module):
    kind = "feature"
    default_weight = 1.0

    def setup(self, student_shape: torch.Size, teacher_shape: torch.Size) -> None:
        """Create any learned adapters once the tap shapes are known (before the optimizer is built)."""


@register_loss("kd")
class HintonKD(LogitLoss):
    """Hinton et al. 2015: T² · KL(softmax(t/T) ‖ softmax(s/T)), averaged over the batch.

    The T² factor keeps gradient magnitudes comparable across temperatures.
    """

    def __init__(self, temperature: float = 4.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ArchkdError(f"KD temperature must be positive, got {temperature}", "use e.g. distill.temperature=4")
        self.temperature = float(temperature)

    def forward(self, s: torch.Tensor, t: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        T = self.temperature
        log_p_s = F.log_softmax(s.float() / T, dim=1)
        log_p_t = F.log_softmax(t.float() / T, dim=1)
        return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (T * T)


def match_spatial(f: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a feature map to ``size``: average-pool when shrinking, bilinear when growing."""
    if tuple(f.shape[-2:]) == tuple(size):
        return f
    if f.shape[-2] >= size[0] and f.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(f, size)
    return F.interpolate(f, size=size, mode="bilinear", align_corners=False)


@register_loss("fitnet")
class FitNet(FeatureLoss):
    """Romero et al. 2015 (FitNets): MSE between a projected student feature and the teacher's hint.

    A 1×1 conv + BN regressor maps student channels to teacher channels when they differ; spatial size is matched
    to the teacher's.
    """

    def __init__(self) -> None:
        super().__init__()
        self.proj: nn.Module = nn.Identity()

    def setup(self, student_shape: torch.Size, teacher_shape: torch.Size) -> None:
        cs, ct = student_shape[1], teacher_shape[1]
        if cs != ct:
            self.proj = nn.Sequential(nn.Conv2d(cs, ct, 1, bias=False), nn.BatchNorm2d(ct))

    def forward(self, fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
        fs = match_spatial(self.proj(fs), ft.shape[-2:])
        return F.mse_loss(fs.float(), ft.float())


def attention_map(f: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Zagoruyko & Komodakis 2017: the L2-normalised spatial map of mean_c |f|^p, flattened."""
    return F.normalize(f.float().abs().pow(p).mean(1).flatten(1), dim=1)


@register_loss("at")
class AttentionTransfer(FeatureLoss):
    """Attention transfer: mean squared difference of normalised attention maps (default weight 1000, as published)."""

    default_weight = 1000.0

    def __init__(self, p: float = 2.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
        hs, ht = fs.shape[-2:], ft.shape[-2:]
        if tuple(hs) != tuple(ht):
            size = (min(hs[0], ht[0]), min(hs[1], ht[1]))
            fs, ft = match_spatial(fs, size), match_spatial(ft, size)
        return (attention_map(fs, self.p) - attention_map(ft, self.p)).pow(2).mean()


def hcl_distance(fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
    """Hierarchical context loss (ReviewKD): MSE at full resolution plus MSE of 4×4, 2×2, 1×1 average-pooled maps
    (levels smaller than the map only), weighted 1, 1/2, 1/4, 1/8 and normalised by the weights used."""
    loss = F.mse_loss(fs, ft)
    weight, total = 1.0, 1.0
    for level in (4, 2, 1):
        if level >= fs.shape[-1]:
            continue
        weight /= 2.0
        loss = loss + weight * F.mse_loss(F.adaptive_avg_pool2d(fs, level), F.adaptive_avg_pool2d(ft, level))
        total += weight
    return loss / total


@register_loss("hcl")
class HCL(FeatureLoss):
    """Hierarchical context loss on a tap pair (shapes must match, or a 1×1 conv projector is learned)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj: nn.Module = nn.Identity()

    def setup(self, student_shape: torch.Size, teacher_shape: torch.Size) -> None:
        if student_shape[1] != teacher_shape[1]:
            self.proj = nn.Sequential(nn.Conv2d(student_shape[1], teacher_shape[1], 1, bias=False),
                                      nn.BatchNorm2d(teacher_shape[1]))

    def forward(self, fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
        return hcl_distance(match_spatial(self.proj(fs), ft.shape[-2:]).float(), ft.float())
