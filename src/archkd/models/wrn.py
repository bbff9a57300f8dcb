"""Wide ResNets (Zagoruyko & Komodakis 2016): pre-activation blocks, stages 16k/32k/64k, depth = 6n + 4."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from archkd.errors import ArchkdError
from archkd.models.blocks import ClassifierHead, init_weights
from archkd.models.registry import create_model, register_model


class PreActBlock(nn.Module):
    """bn-relu-conv-bn-relu-(dropout)-conv; 1x1 conv shortcut on the activated input when shapes change."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu2 = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Conv2d(in_ch, out_ch, 1, stride, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.relu1(self.bn1(x))  # bn1 returns a new tensor, so x itself is never modified
        residual = x if self.shortcut is None else self.shortcut(act)
        out = self.conv2(self.dropout(self.relu2(self.bn2(self.conv1(act)))))
        return out + residual


class WideResNet(nn.Module):
    """WRN-depth-widen. The last stage tap is the final bn-relu ("act"): that is the map the pooling sees."""

    def __init__(
        self, depth: int, widen: int, num_classes: int = 10, in_channels: int = 3, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ArchkdError(f"WRN depth must be 6n+4 with n >= 1, got {depth}.", "Use e.g. 10, 16, 22, 28 or 40.")
        if widen < 1:
            raise ArchkdError(f"WRN widen factor must be >= 1, got {widen}.", "Use e.g. 1, 2, 4 or 10.")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.block1 = self._stage(widths[0], widths[1], n, 1, dropout)
        self.block2 = self._stage(widths[1], widths[2], n, 2, dropout)
        self.block3 = self._stage(widths[2], widths[3], n, 2, dropout)
        self.norm = nn.BatchNorm2d(widths[3])
        self.act = nn.ReLU()
        self.head = ClassifierHead(widths[3], num_classes)
        self.stage_names = ["block1", "block2", "act"]
        self.feature_channels = widths[1:]
        self.stem_name, self.stem_channels = "conv1", widths[0]  # pre-activation net: the stem is the bare conv
        init_weights(self)

    @staticmethod
    def _stage(in_ch: int, out_ch: int, n: int, stride: int, dropout: float) -> nn.Sequential:
        return nn.Sequential(*[PreActBlock(in_ch if i == 0 else out_ch, out_ch, stride if i == 0 else 1, dropout) for i in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.head(self.act(self.norm(x)))


@register_model("wrn")
def _wrn_factory(
    num_classes: int = 10, in_channels: int = 3, depth: int = 16, widen: int = 1, dropout: float = 0.0
) -> nn.Module:
    """Any WRN-depth-widen; registered so arbitrary depth/widen still round-trips through a spec."""
    return WideResNet(depth, widen, num_classes, in_channels, dropout)


def wrn(depth: int, widen: int, num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> nn.Module:
    """Build WRN-depth-widen through the registry, so the result carries a rebuildable spec."""
    return create_model("wrn", num_classes=num_classes, in_channels=in_channels, depth=depth, widen=widen, **kwargs)


def _register(depth: int, widen: int) -> None:
    name = f"wrn_{depth}_{widen}"

    def factory(num_classes: int = 10, in_channels: int = 3, dropout: float = 0.0) -> nn.Module:
        return WideResNet(depth, widen, num_classes, in_channels, dropout)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"WRN-{depth}-{widen}."
    register_model(name)(factory)


for _d, _k in ((16, 1), (16, 2), (40, 1), (40, 2)):
    _register(_d, _k)
