"""ShuffleNetV2 (Ma et al. 2018) for small images: stride-1 3x3 stem and no max-pool.

``net_size`` picks the paper's channel table; for the ``multifamily`` space, ``widths`` (three stages + final 1x1
conv) and ``repeats`` (basic units per stage) replace it, and ``stem_stride`` / per-stage ``strides`` adapt it to the
input size. A stage whose first unit has stride 1 but changes channels uses the two-branch (down-sampling) unit
without down-sampling.
"""
from __future__ import annotations

import torch
from torch import nn

from archkd.errors import ArchkdError
from archkd.models.blocks import ClassifierHead, conv_bn, init_weights
from archkd.models.registry import register_model
from archkd.models.resnet import stem_conv

# net_size -> (stage1, stage2, stage3, final 1x1 conv) channels
_WIDTHS: dict[float, tuple[int, int, int, int]] = {
    0.5: (48, 96, 192, 1024),
    1.0: (116, 232, 464, 1024),
    1.5: (176, 352, 704, 1024),
    2.0: (224, 488, 976, 2048),
}
_REPEATS = (3, 7, 3)  # basic units after each stage's down-sampling unit
_STRIDES = (2, 2, 2)
_STEM = 24


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """Interleave channel groups so information crosses the two branches of the next unit."""
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    """Stride 1, same channels: split channels, transform one half. Otherwise both branches transform (and
    downsample when the stride is 2)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.split = stride == 1 and in_ch == out_ch
        mid = out_ch // 2
        if self.split:
            if out_ch % 2:
                raise ArchkdError(f"Shuffle unit with stride 1 needs equal, even channels ({in_ch}->{out_ch}).", None)
            branch_in = mid
            self.left: nn.Module = nn.Identity()
        else:
            branch_in = in_ch
            self.left = nn.Sequential(
                conv_bn(in_ch, in_ch, 3, stride, groups=in_ch, act=None),
                conv_bn(in_ch, mid, 1),
            )
        self.right = nn.Sequential(
            conv_bn(branch_in, mid, 1),
            conv_bn(mid, mid, 3, stride, groups=mid, act=None),
            conv_bn(mid, out_ch - mid, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.split:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat([x1, self.right(x2)], dim=1)
        else:
            out = torch.cat([self.left(x), self.right(x)], dim=1)
        return channel_shuffle(out, 2)


def _ints(values: object, n: int, what: str, allowed: tuple[int, ...] | None = None, even: bool = False) -> list[int]:
    ok = isinstance(values, (list, tuple)) and len(values) == n and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 and (allowed is None or v in allowed)
        and (not even or (v >= 2 and v % 2 == 0)) for v in values)
    if not ok:
        need = f"one of {list(allowed)}" if allowed else ("even ints >= 2" if even else "ints >= 0")
        raise ArchkdError(f"ShuffleNetV2 {what} must be {n} values, {need}; got {values!r}.", f"Fix {what}.")
    return [int(v) for v in values]


class ShuffleNetV2(nn.Module):
    """Stage taps: the three shuffle stages and the final 1x1 conv (the map the pooling sees)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, net_size: float = 1.0,
                 widths: list[int] | None = None, repeats: list[int] | None = None, stem_stride: int = 1,
                 strides: list[int] | None = None) -> None:
        super().__init__()
        if widths is None:
            key = float(net_size)
            if key not in _WIDTHS:
                raise ArchkdError(
                    f"ShuffleNetV2 net_size {net_size} is not supported.", f"Use one of {sorted(_WIDTHS)}."
                )
            widths = list(_WIDTHS[key])
        *stage_ch, last_ch = _ints(widths, 4, "widths", even=True)
        reps = _ints(_REPEATS if repeats is None else repeats, 3, "repeats")
        strides = _ints(_STRIDES if strides is None else strides, 3, "strides", allowed=(1, 2))
        self.stem = stem_conv(in_channels, _STEM, stem_stride)
        in_ch = _STEM
        for i, (out_ch, n, s) in enumerate(zip(stage_ch, reps, strides), start=1):
            units = [ShuffleUnit(in_ch, out_ch, s)] + [ShuffleUnit(out_ch, out_ch, 1) for _ in range(n)]
            self.add_module(f"layer{i}", nn.Sequential(*units))
            in_ch = out_ch
        self.conv_last = conv_bn(in_ch, last_ch, 1)
        self.head = ClassifierHead(last_ch, num_classes)
        self.stage_names = ["layer1", "layer2", "layer3", "conv_last"]
        self.feature_channels = [*stage_ch, last_ch]
        self.stem_name, self.stem_channels = "stem", _STEM
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.head(self.conv_last(x))


@register_model("shufflenetv2")
def shufflenetv2(num_classes: int = 10, in_channels: int = 3, net_size: float = 1.0, widths: list[int] | None = None,
                 repeats: list[int] | None = None, stem_stride: int = 1, strides: list[int] | None = None) -> nn.Module:
    """CIFAR-style ShuffleNetV2; ``net_size`` in {0.5, 1, 1.5, 2} picks the channel table unless ``widths`` (stage 1-3
    and final conv, even) is given; ``repeats`` (default 3/7/3) basic units per stage; ``stem_stride`` and ``strides``
    (default 2/2/2) adapt it to the input size."""
    return ShuffleNetV2(num_classes, in_channels, net_size, widths, repeats, stem_stride, strides)
