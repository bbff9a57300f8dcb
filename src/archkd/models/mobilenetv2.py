"""MobileNetV2 (Sandler et al. 2018) adapted to small images: stride-1 stem and stride-1 second stage,
so a 32x32 input reaches the last stage at 4x4 instead of 1x1.

Beyond ``width_mult`` (and for the ``multifamily`` space), the usual scaling knobs: ``depth_mult`` (EfficientNet-style
``ceil(n * depth_mult)`` blocks per row), ``expansion`` (replaces t = 6), ``last_channels`` (the final 1x1 conv, 1280
by default, which alone would exceed small budgets), ``stem_stride`` and per-row ``strides`` (input-size adaptation).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from archkd.errors import ArchkdError
from archkd.models.blocks import ClassifierHead, conv_bn, init_weights
from archkd.models.registry import register_model
from archkd.models.resnet import stem_conv

# (expansion t, output channels c, repeats n, first stride s)
_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),  # stride 1 here (2 on ImageNet) is the CIFAR adaptation
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` without dropping more than 10% (hardware friendly)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


class InvertedResidual(nn.Module):
    """1x1 expand (ReLU6) -> depthwise 3x3 (ReLU6) -> 1x1 linear projection, residual when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_ch * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn(in_ch, hidden, 1, act=nn.ReLU6))
        layers.append(conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6))
        layers.append(conv_bn(hidden, out_ch, 1, act=None))
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return out + x if self.use_residual else out


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check(name: str, value: object, ok: bool, fix: str) -> None:
    if not ok:
        raise ArchkdError(f"MobileNetV2 {name} is invalid: {value!r}.", fix)


class MobileNetV2(nn.Module):
    """Stage taps: the last row before each stride-2 row (32, 16, 8 px for a 32 px input) and the final 1x1 conv."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0, dropout: float = 0.0,
                 depth_mult: float = 1.0, expansion: int | None = None, last_channels: int | None = None,
                 stem_stride: int = 1, strides: list[int] | None = None) -> None:
        super().__init__()
        if not width_mult > 0:
            raise ArchkdError(f"width_mult must be > 0, got {width_mult}.", "Use e.g. 0.5, 0.75 or 1.0.")
        _check("depth_mult", depth_mult, depth_mult > 0, "Use e.g. 0.5 or 1.0.")
        _check("expansion", expansion, expansion is None or _is_positive_int(expansion), "Use an int >= 1, e.g. 6.")
        _check("last_channels", last_channels, last_channels is None or _is_positive_int(last_channels),
               "Use an int >= 1, e.g. 1280.")
        strides = [s for *_, s in _SETTINGS] if strides is None else list(strides)
        _check("strides", strides, len(strides) == len(_SETTINGS) and all(s in (1, 2) for s in strides),
               f"Give {len(_SETTINGS)} strides of 1 or 2, one per row.")
        in_ch = make_divisible(32 * width_mult)
        self.stem_name, self.stem_channels = "stem", in_ch
        last_ch = make_divisible(1280 * max(1.0, width_mult)) if last_channels is None else last_channels
        self.stem = stem_conv(in_channels, in_ch, stem_stride, act=nn.ReLU6)
        rows: list[nn.Module] = []
        row_channels = []
        for (t, c, n, _), s in zip(_SETTINGS, strides):
            out_ch = make_divisible(c * width_mult)
            t = t if t == 1 or expansion is None else expansion
            blocks = []
            for i in range(max(1, math.ceil(n * depth_mult))):
                blocks.append(InvertedResidual(in_ch, out_ch, s if i == 0 else 1, t))
                in_ch = out_ch
            rows.append(nn.Sequential(*blocks))
            row_channels.append(out_ch)
        self.blocks = nn.Sequential(*rows)
        self.conv_last = conv_bn(in_ch, last_ch, 1, act=nn.ReLU6)
        self.head = ClassifierHead(last_ch, num_classes, dropout)
        # The last row of each resolution: the row before each stride-2 row (rows 1, 2, 4 with the default strides).
        taps = [i - 1 for i in range(1, len(strides)) if strides[i] == 2]
        self.stage_names = [f"blocks.{i}" for i in taps] + ["conv_last"]
        self.feature_channels = [row_channels[i] for i in taps] + [last_ch]
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv_last(self.blocks(self.stem(x))))


@register_model("mobilenetv2")
def mobilenetv2(num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0, dropout: float = 0.0,
                depth_mult: float = 1.0, expansion: int | None = None, last_channels: int | None = None,
                stem_stride: int = 1, strides: list[int] | None = None) -> nn.Module:
    """CIFAR-style MobileNetV2; ``width_mult`` scales every layer (0.5 is the usual KD student), ``depth_mult`` the
    blocks per row, ``expansion`` replaces t = 6, ``last_channels`` the final conv (default 1280·max(1, width_mult)),
    ``stem_stride`` and ``strides`` (7 rows, default 1,1,2,2,1,2,1) adapt it to the input size."""
    return MobileNetV2(num_classes, in_channels, width_mult, dropout, depth_mult, expansion, last_channels,
                       stem_stride, strides)
