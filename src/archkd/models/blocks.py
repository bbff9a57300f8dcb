"""Building blocks shared by the architectures.

Why shared: ResNet and StageNet use the same residual block, and every model ends in the same
pool-then-linear head, so behaviour (init, shapes, export) is fixed in one place.
"""
from __future__ import annotations

import torch
from torch import nn


def conv_bn(
    in_ch: int,
    out_ch: int,
    kernel: int = 3,
    stride: int = 1,
    groups: int = 1,
    act: type[nn.Module] | None = nn.ReLU,
) -> nn.Sequential:
    """Conv (same padding, no bias) -> BatchNorm -> optional activation."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Post-activation residual block: conv-bn-relu-conv-bn (+ shortcut) -> relu.

    The shortcut is a 1x1 conv + BN whenever stride or channel count changes (CIFAR "option B").
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, kernel: int = 3) -> None:
        super().__init__()
        self.conv1 = conv_bn(in_ch, out_ch, kernel, stride)
        self.conv2 = conv_bn(out_ch, out_ch, kernel, 1, act=None)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = conv_bn(in_ch, out_ch, 1, stride, act=None)
        self.act = nn.ReLU()  # not in-place: this tensor is the block output that stage hooks may keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


def make_stage(in_ch: int, out_ch: int, depth: int, stride: int, kernel: int = 3) -> nn.Sequential:
    """``depth`` BasicBlocks; only the first one changes stride/channels."""
    blocks = [BasicBlock(in_ch, out_ch, stride, kernel)]
    blocks += [BasicBlock(out_ch, out_ch, 1, kernel) for _ in range(depth - 1)]
    return nn.Sequential(*blocks)


class ClassifierHead(nn.Module):
    """Global average pool -> flatten -> linear; makes every model input-size agnostic."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal (fan_out) convs, unit/zero norms, small-normal linear: the standard CNN recipe.

    Uses only the global torch RNG, so a model is reproducible from ``torch.manual_seed``.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
