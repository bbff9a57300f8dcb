"""Relational feature losses: RKD (Park et al., CVPR 2019) and PKT (Passalis & Tefas, ECCV 2018), written from the
papers. Both compare how samples relate *within* a batch, so student and teacher features may have any widths (no
projector) and any spatial sizes: a 4-D map is global-average-pooled to an embedding first.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from archkd.distill.losses import FeatureLoss, register_loss


def embedding(f: torch.Tensor) -> torch.Tensor:
    """A batch of embeddings from a tap: pooled over space for a 4-D map, flattened otherwise."""
    f = f.float()
    return f.mean((2, 3)) if f.dim() == 4 else f.flatten(1)


def _pairwise(e: torch.Tensor) -> torch.Tensor:
    sq = (e * e).sum(1)
    return (sq[:, None] + sq[None, :] - 2 * e @ e.T).clamp_min(1e-12).sqrt()


def rkd_distance(e: torch.Tensor) -> torch.Tensor:
    """ψ_D: pairwise Euclidean distances divided by their mean over distinct pairs (scale-free), zero diagonal."""
    d = _pairwise(e)
    off = ~torch.eye(len(e), dtype=torch.bool, device=e.device)
    d = d * off
    return d / d[off].mean().clamp_min(1e-12)


def rkd_angle(e: torch.Tensor) -> torch.Tensor:
    """ψ_A: for every triplet (i, j, k), the cosine of the angle at j between e_i − e_j and e_k − e_j."""
    diff = F.normalize(e[None, :, :] - e[:, None, :], p=2, dim=2)  # diff[j, i] = unit(e_i − e_j)
    return torch.bmm(diff, diff.transpose(1, 2))  # [j, i, k]


@register_loss("rkd")
class RKD(FeatureLoss):
    """Relational KD: Huber (smooth-L1) distance between student and teacher ψ_D, weighted ``distance``, plus between
    their ψ_A, weighted ``angle`` (25 and 50, the paper's)."""

    def __init__(self, distance: float = 25.0, angle: float = 50.0) -> None:
        super().__init__()
        self.w_distance, self.w_angle = float(distance), float(angle)

    def forward(self, fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
        es, et = embedding(fs), embedding(ft)
        loss = self.w_distance * F.smooth_l1_loss(rkd_distance(es), rkd_distance(et))
        return loss + self.w_angle * F.smooth_l1_loss(rkd_angle(es), rkd_angle(et))


def pkt_conditional(e: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """PKT's conditional probabilities: the cosine-similarity kernel (cos + 1) / 2 of L2-normalised embeddings, each
    row divided by its sum: P(j | i)."""
    e = F.normalize(e, dim=1)
    k = (e @ e.T + 1.0) / 2.0
    return k / (k.sum(1, keepdim=True) + eps)


@register_loss("pkt")
class PKT(FeatureLoss):
    """Probabilistic knowledge transfer: Σ_i Σ_j P_T(j|i) log(P_T(j|i) / P_S(j|i)), averaged over the batch."""

    def forward(self, fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
        eps = 1e-7
        ps, pt = pkt_conditional(embedding(fs)), pkt_conditional(embedding(ft))
        return (pt * torch.log((pt + eps) / (ps + eps))).sum(1).mean()
