"""DKD — Decoupled Knowledge Distillation (Zhao, Cui, Song, Qiu, Liang; CVPR 2022), written from the paper.

Hinton's KD loss splits into a *target-class* part and a *non-target-class* part whose weight is coupled to the
teacher's confidence on the target. DKD weighs the two freely:

    DKD = α · TCKD + β · NCKD,    TCKD = T² · KL(b_T ‖ b_S),    NCKD = T² · KL(p̂_T ‖ p̂_S)

where ``b = [p_y, 1 − p_y]`` is the binary (target vs rest) distribution of the softened probabilities
``p = softmax(z / T)`` and ``p̂`` the softened distribution over the non-target classes alone. Defaults α = 1, β = 8,
T = 4 are the paper's CIFAR-100 setting. It needs only logits (and labels), so the teacher-output cache serves it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from archkd.distill.losses import LogitLoss, register_loss
from archkd.errors import ArchkdError


@register_loss("dkd")
class DecoupledKD(LogitLoss):
    def __init__(self, temperature: float = 4.0, alpha: float = 1.0, beta: float = 8.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ArchkdError(f"DKD temperature must be positive, got {temperature}", "use e.g. distill.temperature=4")
        self.temperature, self.alpha, self.beta = float(temperature), float(alpha), float(beta)

    def forward(self, s: torch.Tensor, t: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        if targets is None:
            raise ArchkdError("DKD needs the labels", "call it with targets")
        T = self.temperature
        s, t = s.float() / T, t.float() / T
        gt = F.one_hot(targets, s.shape[1]).bool()
        p_s, p_t = F.softmax(s, 1), F.softmax(t, 1)
        b_s = torch.stack([p_s[gt], 1 - p_s[gt]], 1).clamp_min(1e-12)
        b_t = torch.stack([p_t[gt], 1 - p_t[gt]], 1).clamp_min(1e-12)
        tckd = (b_t * (b_t.log() - b_s.log())).sum(1).mean()
        # non-target distributions: the target logit removed (−∞ before the softmax)
        log_q_s = F.log_softmax(s.masked_fill(gt, float("-inf")), 1).masked_fill(gt, 0.0)
        log_q_t = F.log_softmax(t.masked_fill(gt, float("-inf")), 1).masked_fill(gt, 0.0)
        nckd = (log_q_t.exp() * (log_q_t - log_q_s)).sum(1).mean()
        return (self.alpha * tckd + self.beta * nckd) * T * T
