"""CIFAR ResNets (He et al. 2016, 3 stages, depth = 6n + 2) as used in KD benchmarks (CRD / RepDistiller).

``resnetD`` has widths 16/32/64; ``resnetDx4`` has a 32-channel stem and stages 64/128/256.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from archkd.errors import ArchkdError
from archkd.models.blocks import ClassifierHead, conv_bn, init_weights, make_stage
from archkd.models.registry import register_model


class CifarResNet(nn.Module):
    """Stem conv -> three BasicBlock stages (strides 1/2/2) -> pooled linear head."""

    def __init__(
        self,
        depth: int,
        widths: Sequence[int] = (16, 16, 32, 64),
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ArchkdError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}.", "Use 8, 14, 20, 32, 44, 56 or 110.")
        n = (depth - 2) // 6
        stem, w1, w2, w3 = widths
        self.stem = conv_bn(in_channels, stem, 3, 1)
        self.layer1 = make_stage(stem, w1, n, 1)
        self.layer2 = make_stage(w1, w2, n, 2)
        self.layer3 = make_stage(w2, w3, n, 2)
        self.head = ClassifierHead(w3, num_classes)
        self.stage_names = ["layer1", "layer2", "layer3"]
        self.feature_channels = [w1, w2, w3]
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer3(self.layer2(self.layer1(self.stem(x)))))


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
