"""Pathway transforms: map a student feature to the teacher feature's shape so a distance can compare them.

A registry, so a new transform is one function. Each builder takes (student channels, teacher channels, teacher
spatial size) and returns a module.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from archkd.config import register_choices
from archkd.registry import Registry

TRANSFORMS: Registry[Callable[[int, int, tuple[int, int]], nn.Module]] = Registry("pathway transform")
register_choices("process.transform", TRANSFORMS.names)
register_choices("process.transforms", TRANSFORMS.names)


def register_transform(name: str) -> Callable:
    """Register ``fn(student channels, teacher channels, teacher size) -> nn.Module`` as transform ``name``."""
    return TRANSFORMS.register(name)


def create_transform(name: str, c_s: int, c_t: int, size: tuple[int, int]) -> nn.Module:
    return TRANSFORMS.lookup(name)(c_s, c_t, tuple(size))


class Resize(nn.Module):
    """To the teacher's spatial size: nearest when growing, average pooling when shrinking."""

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = tuple(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == self.size:
            return x
        if x.shape[-2] >= self.size[0] and x.shape[-1] >= self.size[1]:
            return F.adaptive_avg_pool2d(x, self.size)
        return F.interpolate(x, size=self.size, mode="nearest")


class SpatialAttention(nn.Module):
    """Multiplies the feature by a learned one-channel mask (a 1×1 conv, squashed by a sigmoid)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mask = nn.Conv2d(channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.mask(x))


def _conv_bn(c_in: int, c_out: int, k: int, relu: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False), nn.BatchNorm2d(c_out)]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


def _init(m: nn.Module) -> nn.Module:
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
    return m


@register_transform("conv1x1")
def conv1x1(c_s: int, c_t: int, size: tuple[int, int]) -> nn.Module:
    """1×1 conv + BN to the teacher's channels, resized to its spatial size (FitNet-style regressor)."""
    return _init(nn.Sequential(Resize(size), *_conv_bn(c_s, c_t, 1, relu=False)))


@register_transform("attention")
def attention(c_s: int, c_t: int, size: tuple[int, int]) -> nn.Module:
    """3×3 conv stack with a spatial attention mask: conv-BN-ReLU, mask, conv-BN-ReLU, resize, conv-BN."""
    mid = max(1, min(512, c_s, c_t))
    return _init(nn.Sequential(*_conv_bn(c_s, mid, 3, True), SpatialAttention(mid), *_conv_bn(mid, mid, 3, True),
                               Resize(size), *_conv_bn(mid, c_t, 3, relu=False)))


@register_transform("linear")
def linear(c_s: int, c_t: int, size: tuple[int, int]) -> nn.Module:
    """Identity when the channels already match (only resizing), else a bias-free linear 1×1 projection."""
    if c_s == c_t:
        return Resize(size)
    return _init(nn.Sequential(Resize(size), nn.Conv2d(c_s, c_t, 1, bias=False)))
