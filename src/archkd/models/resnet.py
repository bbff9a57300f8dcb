"""CIFAR ResNets (He et al. 2016, 3 stages, depth = 6n + 2) as used in KD benchmarks (CRD / RepDistiller).

``resnetD`` has widths 16/32/64; ``resnetDx4`` has a 32-channel stem and stages 64/128/256. ``resnet`` is the generic
family behind them (searched by the ``multifamily`` space): per-stage block counts, widths, the block type — the
post-activation ``BasicBlock`` or the ``Bottleneck`` of the deeper ResNets (ResNet-164 on CIFAR) — and a stem stride
for large images (``stem_conv``).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from archkd.errors import ArchkdError
from archkd.models.blocks import BasicBlock, ClassifierHead, conv_bn, init_weights
from archkd.models.registry import register_model


def stem_conv(in_ch: int, out_ch: int, stride: int = 1, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """The stem conv -> BN -> act: 3x3 at stride 1 (small images); at stride ``s`` a (2s-1)x(2s-1) kernel, so that
    every input pixel is seen (7x7 at stride 4, the ImageNet stem's reach in one conv)."""
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ArchkdError(f"stem_stride must be an int >= 1, got {stride!r}.", "Use 1 (<= 32 px), 2 or 4 (224 px).")
    return conv_bn(in_ch, out_ch, 3 if stride == 1 else 2 * stride - 1, stride, act=act)


class Bottleneck(nn.Module):
    """Post-activation bottleneck: 1x1 reduce to ``out_ch / 4`` -> 3x3 (stride) -> 1x1 expand (+ shortcut) -> relu.

    The shortcut is a 1x1 conv + BN whenever stride or channel count changes, as in ``BasicBlock``.
    """

    expansion = 4

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        mid = out_ch // self.expansion
        self.conv1 = conv_bn(in_ch, mid, 1)
        self.conv2 = conv_bn(mid, mid, 3, stride)
        self.conv3 = conv_bn(mid, out_ch, 1, act=None)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = conv_bn(in_ch, out_ch, 1, stride, act=None)
        self.act = nn.ReLU()  # not in-place: this tensor is the block output that stage hooks may keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


BLOCKS: dict[str, type[nn.Module]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


def _positive_ints(values: Sequence[int], n: int, what: str, example: str) -> list[int]:
    ok = isinstance(values, (list, tuple)) and len(values) == n and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values)
    if not ok:
        raise ArchkdError(f"ResNet {what} must be {n} ints >= 1, got {values!r}.", f"Pass e.g. {what}={example}.")
    return [int(v) for v in values]


class ResNet(nn.Module):
    """Stem conv -> three residual stages (strides 1/2/2) -> pooled linear head; stage taps are the stages."""

    def __init__(
        self,
        depths: Sequence[int],
        widths: Sequence[int] = (16, 16, 32, 64),
        num_classes: int = 10,
        in_channels: int = 3,
        block: str = "basic",
        stem_stride: int = 1,
    ) -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ArchkdError(f"Unknown ResNet block '{block}'.", f"Use one of {sorted(BLOCKS)}.")
        n1, n2, n3 = _positive_ints(depths, 3, "depths", "[1, 1, 1]")
        stem, w1, w2, w3 = _positive_ints(widths, 4, "widths", "[16, 16, 32, 64]")
        if block == "bottleneck" and any(w % Bottleneck.expansion for w in (w1, w2, w3)):
            raise ArchkdError(f"Bottleneck stage widths must be multiples of 4, got {[w1, w2, w3]}.",
                              "Pass stage widths 4x the bottleneck width, e.g. [16, 64, 128, 256].")
        cls = BLOCKS[block]
        self.stem = stem_conv(in_channels, stem, stem_stride)
        self.layer1 = self._stage(cls, stem, w1, n1, 1)
        self.layer2 = self._stage(cls, w1, w2, n2, 2)
        self.layer3 = self._stage(cls, w2, w3, n3, 2)
        self.head = ClassifierHead(w3, num_classes)
        self.stage_names = ["layer1", "layer2", "layer3"]
        self.feature_channels = [w1, w2, w3]
        self.stem_name, self.stem_channels = "stem", stem
        init_weights(self)

    @staticmethod
    def _stage(cls: type[nn.Module], in_ch: int, out_ch: int, depth: int, stride: int) -> nn.Sequential:
        """``depth`` blocks; only the first one changes stride/channels."""
        return nn.Sequential(*[cls(in_ch if i == 0 else out_ch, out_ch, stride if i == 0 else 1) for i in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer3(self.layer2(self.layer1(self.stem(x)))))


class CifarResNet(ResNet):
    """ResNet-depth with BasicBlocks, ``n = (depth - 2) / 6`` per stage."""

    def __init__(
        self,
        depth: int,
        widths: Sequence[int] = (16, 16, 32, 64),
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        if depth < 8 or (depth - 2) % 6:
            raise ArchkdError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}.", "Use 8, 14, 20, 32, 44, 56 or 110.")
        n = (depth - 2) // 6
        super().__init__((n, n, n), tuple(widths), num_classes, in_channels)


@register_model("resnet")
def resnet(
    num_classes: int = 10,
    in_channels: int = 3,
    depths: list[int] | None = None,
    widths: list[int] | None = None,
    block: str = "basic",
    stem_stride: int = 1,
) -> nn.Module:
    """Any 3-stage ResNet: ``depths`` blocks per stage (default 1/1/1), ``widths`` = stem + stage outputs (default
    16/16/32/64; bottleneck stages need multiples of 4), ``block`` basic | bottleneck, ``stem_stride`` 1 | 2 | 4."""
    return ResNet((1, 1, 1) if depths is None else depths, (16, 16, 32, 64) if widths is None else widths,
                  num_classes, in_channels, block, stem_stride)


def _register(name: str, depth: int, widths: tuple[int, int, int, int]) -> None:
    def factory(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
        return CifarResNet(depth, widths, num_classes, in_channels)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"CIFAR ResNet-{depth}, widths {widths[1:]} (stem {widths[0]})."
    register_model(name)(factory)


for _depth in (8, 14, 20, 32, 44, 56, 110):
    _register(f"resnet{_depth}", _depth, (16, 16, 32, 64))
for _depth in (8, 32):
    _register(f"resnet{_depth}x4", _depth, (32, 64, 128, 256))
