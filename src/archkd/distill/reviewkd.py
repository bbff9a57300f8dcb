"""ReviewKD ("Distilling Knowledge via Knowledge Review", Chen et al. 2021): every teacher stage is matched by a fusion
of the student's same and deeper stages, compared by the hierarchical context loss.

Why it is here: it is the feature-distillation method DistPro compares against; with every pathway fixed
(stage i → stage i, equal weights) it is the hand-designed process that DistPro's searched weights must beat.

The student's stage features ``f_1 … f_n`` (shallow to deep) are *reviewed* from the deepest: an attention-based
fusion (ABF) maps ``f_n`` to ``(o_n, r_n)``, then for ``i = n−1 … 1``

.. math::

    x_i = \\mathrm{BN}(W_i f_i),\\quad y = \\mathrm{up}(r_{i+1}),\\quad
    a = \\sigma(V_i [x_i; y]) \\in [0,1]^{2\\times H\\times W},\\quad r_i = a_0 x_i + a_1 y,\\quad
    o_i = \\mathrm{BN}(U_i * r_i),

with ``W_i`` a 1×1 conv to a shared width, ``V_i`` a 1×1 conv to two attention maps and ``U_i`` a 3×3 conv to the
teacher stage's channels. The loss is :math:`\\sum_i \\mathrm{HCL}(o_i, t_i)`.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from archkd.distill.losses import FeatureLoss, hcl_distance, match_spatial, register_loss


class ABF(nn.Module):
    """One attention-based fusion: the student stage feature with the (upsampled) fused residual of the deeper one."""

    def __init__(self, c_in: int, mid: int, c_out: int, fuse: bool) -> None:
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(c_in, mid, 1, bias=False), nn.BatchNorm2d(mid))
        self.att = nn.Conv2d(2 * mid, 2, 1) if fuse else None
        self.out = nn.Sequential(nn.Conv2d(mid, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out))
        nn.init.kaiming_uniform_(self.reduce[0].weight, a=1)
        nn.init.kaiming_uniform_(self.out[0].weight, a=1)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.reduce(x)
        if self.att is not None and residual is not None:
            y = F.interpolate(residual, size=x.shape[-2:], mode="nearest")
            a = torch.sigmoid(self.att(torch.cat([x, y], 1)))
            x = x * a[:, :1] + y * a[:, 1:]
        return self.out(x), x


@register_loss("reviewkd")
class ReviewKD(FeatureLoss):
    """Knowledge review over several stage pairs: give ``student`` and ``teacher`` as equally long lists of taps."""

    multi_stage = True

    def __init__(self, mid_channels: int | None = None) -> None:
        super().__init__()
        self.mid_channels = mid_channels
        self.abfs = nn.ModuleList()

    def setup(self, student_shapes: list[torch.Size], teacher_shapes: list[torch.Size]) -> None:
        mid = self.mid_channels or max(8, min(256, max(s[1] for s in student_shapes)))
        n = len(student_shapes)
        self.abfs = nn.ModuleList(ABF(s[1], mid, t[1], fuse=i < n - 1)
                                  for i, (s, t) in enumerate(zip(student_shapes, teacher_shapes)))

    def fused(self, fs: list[torch.Tensor]) -> list[torch.Tensor]:
        """The outputs ``o_1 … o_n`` of the review, deepest stage first in the computation, returned shallow first."""
        outs: list[torch.Tensor] = [None] * len(fs)  # type: ignore[list-item]
        residual = None
        for i in range(len(fs) - 1, -1, -1):
            outs[i], residual = self.abfs[i](fs[i], residual)
        return outs

    def forward(self, fs: list[torch.Tensor], ft: list[torch.Tensor]) -> torch.Tensor:
        return sum(hcl_distance(match_spatial(o, t.shape[-2:]).float(), t.float()) for o, t in zip(self.fused(fs), ft))
