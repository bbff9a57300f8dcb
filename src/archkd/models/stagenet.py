"""StageNet: the generic residual CNN that archkd's search spaces sample from.

A network is a stem plus a list of stages, each ``{"depth", "width", "kernel", "stride"?}`` of plain ints,
so a candidate architecture *is* its JSON spec.
"""
from __future__ import annotations

import difflib
from typing import Any, Sequence

import torch
from torch import nn

from archkd.errors import ArchkdError
from archkd.models.blocks import ClassifierHead, conv_bn, init_weights, make_stage
from archkd.models.registry import register_model

DEFAULT_STAGES: tuple[dict[str, int], ...] = (
    {"depth": 1, "width": 16, "kernel": 3},
    {"depth": 1, "width": 32, "kernel": 3},
    {"depth": 1, "width": 64, "kernel": 3},
)
_STAGE_KEYS = ("depth", "width", "kernel", "stride")
_KERNELS = (3, 5, 7)


def _positive_int(value: Any, what: str, allowed: Sequence[int] | None = None) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if ok and allowed is not None:
        ok = value in allowed
    if not ok:
        need = f"one of {list(allowed)}" if allowed is not None else "an int >= 1"
        raise ArchkdError(f"StageNet {what} must be {need}, got {value!r}.", f"Set {what} to {need}.")
    return int(value)


def normalize_stages(stages: Sequence[dict[str, Any]] | None) -> list[dict[str, int]]:
    """Validate stage dicts and fill in default strides (first stage 1, others 2)."""
    if stages is None:
        stages = DEFAULT_STAGES
    if isinstance(stages, dict) or not isinstance(stages, Sequence) or len(stages) == 0:
        raise ArchkdError(
            f"StageNet stages must be a non-empty list of dicts, got {stages!r}.",
            'Pass e.g. stages=[{"depth": 1, "width": 16, "kernel": 3}, {"depth": 2, "width": 32, "kernel": 3}].',
        )
    out: list[dict[str, int]] = []
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict):
            raise ArchkdError(f"StageNet stage {i} must be a dict, got {type(stage).__name__}.", "Use dicts with depth/width/kernel.")
        for key in stage:
            if key not in _STAGE_KEYS:
                guess = difflib.get_close_matches(str(key), _STAGE_KEYS, n=1, cutoff=0.0)
                raise ArchkdError(
                    f"StageNet stage {i} has unknown key '{key}'.",
                    f"Did you mean '{guess[0]}'? Allowed keys: {', '.join(_STAGE_KEYS)}.",
                )
        for key in ("depth", "width", "kernel"):
            if key not in stage:
                raise ArchkdError(f"StageNet stage {i} is missing '{key}'.", "Each stage needs depth, width and kernel.")
        out.append(
            {
                "depth": _positive_int(stage["depth"], f"stages[{i}].depth"),
                "width": _positive_int(stage["width"], f"stages[{i}].width"),
                "kernel": _positive_int(stage["kernel"], f"stages[{i}].kernel", _KERNELS),
                "stride": _positive_int(stage.get("stride", 1 if i == 0 else 2), f"stages[{i}].stride", (1, 2)),
            }
        )
    return out


class StageNet(nn.Module):
    """3x3 stem -> residual stages (BasicBlocks with the stage's kernel) -> pooled linear head."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        stages: Sequence[dict[str, Any]] | None = None,
        stem_width: int | None = None,
    ) -> None:
        super().__init__()
        self.stage_config = normalize_stages(stages)
        stem = self.stage_config[0]["width"] if stem_width is None else _positive_int(stem_width, "stem_width")
        self.stem = conv_bn(in_channels, stem, 3, 1)
        in_ch = stem
        layers = []
        for cfg in self.stage_config:
            layers.append(make_stage(in_ch, cfg["width"], cfg["depth"], cfg["stride"], cfg["kernel"]))
            in_ch = cfg["width"]
        self.stages = nn.Sequential(*layers)
        self.head = ClassifierHead(in_ch, num_classes)
        self.stage_names = [f"stages.{i}" for i in range(len(layers))]
        self.feature_channels = [cfg["width"] for cfg in self.stage_config]
        self.stem_name, self.stem_channels = "stem", stem
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))

    def blocks(self) -> list[tuple[dict, nn.Module]]:
        """The network before its head as consecutive blocks, one per stage (the stem goes with the first), each with
        what defines it: its stage configuration and its input channels.

        Why: blockwise distillation (``archkd.distill.blockwise``) trains and memoises a stage on its own, keyed by
        this definition, so every candidate containing the same stage after the same width shares one training."""
        out: list[tuple[dict, nn.Module]] = []
        in_ch = self.stem[0].in_channels
        for i, (cfg, stage) in enumerate(zip(self.stage_config, self.stages)):
            module = nn.Sequential(self.stem, stage) if i == 0 else stage
            key = {**cfg, "in_channels": in_ch} | ({"stem": self.stem_channels} if i == 0 else {})
            out.append((key, module))
            in_ch = cfg["width"]
        return out


@register_model("stagenet")
def stagenet(
    num_classes: int = 10,
    in_channels: int = 3,
    stages: list[dict[str, int]] | None = None,
    stem_width: int | None = None,
) -> nn.Module:
    """Configurable residual CNN; defaults to 3 single-block stages of width 16/32/64, kernel 3."""
    return StageNet(num_classes, in_channels, stages, stem_width)
