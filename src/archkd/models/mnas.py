"""MnasNet-style factorized hierarchical network (Tan et al. 2019), the student family of AKD.

Each stage repeats one block type ``layers`` times: ``op`` ∈ {conv, dwsep, mbconv3, mbconv6}, ``kernel`` ∈ {3, 5},
``se`` ratio ∈ {0, 0.25}, ``skip`` ∈ {none, identity} (identity residual only where shapes match), ``filters``.
A MobileNetV2-style head (1×1 conv, pool, linear) ends the network. Every stage dict is plain JSON, so a sampled
architecture *is* its spec.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from archkd.errors import ArchkdError
from archkd.models.blocks import ClassifierHead, conv_bn, init_weights
from archkd.models.registry import register_model

OPS = ("conv", "dwsep", "mbconv3", "mbconv6")
SKIPS = ("none", "identity")


class SqueezeExcite(nn.Module):
    """Channel attention: global pool → reduce → ReLU → expand → sigmoid gate."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(self.act(self.reduce(s))))


class MnasBlock(nn.Module):
    """One searchable block; ``skip == "identity"`` adds the input when stride is 1 and channels match."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, op: str, kernel: int, se: float, skip: str) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if op == "conv":
            layers.append(conv_bn(in_ch, out_ch, kernel, stride))
            se_ch = out_ch
            tail: list[nn.Module] = []
        elif op == "dwsep":
            layers.append(conv_bn(in_ch, in_ch, kernel, stride, groups=in_ch))
            se_ch = in_ch
            tail = [conv_bn(in_ch, out_ch, 1, act=None)]
        else:
            hidden = in_ch * (3 if op == "mbconv3" else 6)
            layers += [conv_bn(in_ch, hidden, 1), conv_bn(hidden, hidden, kernel, stride, groups=hidden)]
            se_ch = hidden
            tail = [conv_bn(hidden, out_ch, 1, act=None)]
        if se > 0:
            layers.append(SqueezeExcite(se_ch, max(1, int(in_ch * se))))
        self.body = nn.Sequential(*layers, *tail)
        self.residual = skip == "identity" and stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out + x if self.residual else out


def _check_stage(i: int, st: dict[str, Any]) -> dict[str, Any]:
    need = {"op", "kernel", "se", "skip", "layers", "filters", "stride"}
    missing = need - set(st)
    if missing:
        raise ArchkdError(f"mnasnet stage {i} lacks {sorted(missing)}", "give op, kernel, se, skip, layers, filters, stride")
    if st["op"] not in OPS or st["skip"] not in SKIPS:
        raise ArchkdError(f"mnasnet stage {i} has op={st['op']!r} skip={st['skip']!r}", f"use op in {OPS}, skip in {SKIPS}")
    return st


class MnasNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, stages: Sequence[dict[str, Any]], stem_filters: int,
                 stem_stride: int, head_filters: int, dropout: float) -> None:
        super().__init__()
        self.stem = conv_bn(in_channels, stem_filters, 3, stem_stride)
        blocks, ch = [], stem_filters
        self.feature_channels = []
        for i, st in enumerate(stages):
            st = _check_stage(i, st)
            layer = []
            for j in range(int(st["layers"])):
                layer.append(MnasBlock(ch, int(st["filters"]), int(st["stride"]) if j == 0 else 1, st["op"],
                                       int(st["kernel"]), float(st["se"]), st["skip"]))
                ch = int(st["filters"])
            blocks.append(nn.Sequential(*layer))
            self.feature_channels.append(ch)
        self.stages = nn.Sequential(*blocks)
        self.head_conv = conv_bn(ch, head_filters, 1)
        self.head = ClassifierHead(head_filters, num_classes, dropout)
        self.stage_names = [f"stages.{i}" for i in range(len(blocks))] + ["head_conv"]
        self.feature_channels.append(head_filters)
        self.stem_name, self.stem_channels = "stem", stem_filters
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_conv(self.stages(self.stem(x))))


@register_model("mnasnet")
def mnasnet(num_classes: int = 10, in_channels: int = 3, stages: list | None = None, stem_filters: int = 16,
            stem_stride: int = 1, head_filters: int = 256, dropout: float = 0.0) -> nn.Module:
    """A MnasNet-style network from per-stage dicts (defaults: a small 4-stage net for 32 px inputs)."""
    if stages is None:
        stages = [{"op": "mbconv3", "kernel": 3, "se": 0.0, "skip": "identity", "layers": 2, "filters": f, "stride": s}
                  for f, s in ((16, 1), (24, 2), (40, 2), (80, 1))]
    return MnasNet(num_classes, in_channels, stages, stem_filters, stem_stride, head_filters, dropout)
