"""A distillation process: weighted teacher→student feature pathways whose weights change over training.

``ProcessObjective`` is a ``DistillObjective`` (the trainer needs nothing else): CE plus, per pathway i,
``w_i(step) · d(T_i(f_s[s_i]), f_t[t_i])``. The weights come from a learnable α (during the search, normalised by
``normalize``), from a recorded α trajectory stretched to the full schedule (replay), or from constants (baselines).
"""
from __future__ import annotations

import typing
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from archkd.config import Normalization, register_choices
from archkd.distill.losses import hcl_distance, match_spatial
from archkd.distill.objective import DistillObjective
from archkd.errors import ArchkdError
from archkd.process.transforms import create_transform

NORMALIZATIONS: tuple[str, ...] = typing.get_args(Normalization)  # the config type (process.normalization) is the list
DISTANCES = {"hcl": hcl_distance, "mse": lambda fs, ft: F.mse_loss(fs, ft)}
register_choices("process.distance", DISTANCES.keys)


def normalize(alpha: torch.Tensor, style: str, scale: float = 1.0) -> torch.Tensor:
    """Pathway weights from raw α (last dim). ``softmax_bias`` adds a fixed logit 1 as a "no distillation" slot;
    ``scaled_biased_softmax`` multiplies that by N·scale so weights are ≈ 1 each (DistPro's replay style)."""
    if style == "softmax":
        return torch.softmax(alpha, -1)
    if style in ("softmax_bias", "scaled_biased_softmax"):
        n = alpha.shape[-1]
        w = torch.softmax(torch.cat([alpha, torch.ones_like(alpha[..., :1])], -1), -1)[..., :n]
        return w * n * scale if style == "scaled_biased_softmax" else w
    if style == "sigmoid":
        return torch.sigmoid(alpha)
    if style == "none":  # the values are the weights (constant baselines such as "equal")
        return alpha
    raise ArchkdError(f"unknown α normalisation '{style}'", f"use one of {NORMALIZATIONS}")


@dataclass(frozen=True)
class Pathway:
    """A teacher feature → student feature connection, by index into the objective's taps (index 0 is the stem
    when the process taps it, then the stages); ``transform`` names its own student-feature transform (``None``:
    the objective's). DistPro's candidate set is pathways × transforms, each with its own weight."""

    teacher: int
    student: int
    transform: str | None = None

    def name(self) -> str:
        return f"t{self.teacher}→s{self.student}" + (f":{self.transform}" if self.transform else "")


def make_pathways(n_teacher: int, n_student: int, mode: str = "forward",
                  transforms: list[str] | None = None) -> list[Pathway]:
    """``forward``: every pair with student feature ≥ teacher feature (DistPro's default: 10 pairs for stem + 3
    stages on each side); ``all``: every pair. With ``transforms``, each pair once per transform (the search then
    chooses among them by their weights)."""
    if mode not in ("forward", "all"):
        raise ArchkdError(f"unknown pathway mode '{mode}'", "use forward (s ≥ t) or all")
    pairs = [(t, s) for t in range(n_teacher) for s in range(n_student) if mode == "all" or s >= t]
    return [Pathway(t, s, tr) for t, s in pairs for tr in (transforms or [None])]


def interpolate(trajectory: torch.Tensor, total_steps: int) -> torch.Tensor:
    """Stretch a recorded [S, N] trajectory linearly to ``total_steps`` rows; exact at both ends."""
    s = trajectory.shape[0]
    if total_steps <= 1 or s == 1:
        return trajectory[-1:].expand(max(1, total_steps), -1).clone()
    pos = torch.arange(total_steps, dtype=torch.float64) * (s - 1) / (total_steps - 1)
    lo = pos.floor().long().clamp(max=s - 1)
    hi = (lo + 1).clamp(max=s - 1)
    frac = (pos - lo).to(trajectory.dtype)[:, None]
    return trajectory[lo] * (1 - frac) + trajectory[hi] * frac


class ProcessObjective(DistillObjective):
    """CE + Σ_i w_i · d(T_i(student feature s_i), teacher feature t_i) (+ optional Hinton KD).

    ``stem``: the first tap of each side is the stem (recorded in the process file; the taps themselves are paths).
    Not ``mixable``: each call advances the replayed schedule one step.
    """

    mixable = False

    def __init__(self, student_taps: list[str], teacher_taps: list[str], pathways: list[Pathway], *,
                 transform: str = "attention", distance: str = "hcl", normalization: str = "softmax",
                 scale: float = 1.0, schedule: torch.Tensor | None = None, tau: float | None = None,
                 logit_kd: float = 0.0, temperature: float = 4.0, label_smoothing: float = 0.0,
                 stem: bool = False) -> None:
        super().__init__(ce_weight=1.0, kd_weight=logit_kd, kd_kwargs={"temperature": temperature},
                         label_smoothing=label_smoothing)
        if distance not in DISTANCES:
            raise ArchkdError(f"unknown pathway distance '{distance}'", f"use one of {sorted(DISTANCES)}")
        normalize(torch.zeros(1), normalization)  # validates the style name early
        self._s_taps, self._t_taps = list(student_taps), list(teacher_taps)
        self.pathways = list(pathways)
        self.stem = bool(stem)
        self.transform_name, self.distance_name = transform, distance
        self.normalization, self.scale, self.tau = normalization, float(scale), tau
        self.transforms = nn.ModuleList()
        self.alpha = nn.Parameter(torch.ones(len(pathways))) if schedule is None else None
        self.register_buffer("schedule", schedule.clone() if schedule is not None else None)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("computed", torch.zeros((), dtype=torch.long))
        self.register_buffer("skipped", torch.zeros((), dtype=torch.long))
        self._ready = False

    @property
    def uses_teacher(self) -> bool:
        return True

    @property
    def student_taps(self) -> list[str]:
        return self._s_taps

    @property
    def teacher_taps(self) -> list[str]:
        return self._t_taps

    def setup(self, s_feats: list[torch.Tensor], t_feats: list[torch.Tensor]) -> None:
        self.transforms = nn.ModuleList(
            create_transform(p.transform or self.transform_name, s_feats[p.student].shape[1],
                             t_feats[p.teacher].shape[1], tuple(t_feats[p.teacher].shape[-2:])) for p in self.pathways)
        self._ready = True

    def weights(self) -> torch.Tensor:
        """The pathway weights at the current step (a learnable function of α while searching)."""
        if self.schedule is None:
            return normalize(self.alpha, self.normalization, self.scale)
        row = self.schedule[min(int(self.step), self.schedule.shape[0] - 1)]
        return normalize(row, self.normalization, self.scale)

    def forward(self, s_logits: torch.Tensor, targets: torch.Tensor, t_logits: torch.Tensor | None = None,
                s_feats: list[torch.Tensor] | None = None, t_feats: list[torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, dict[str, float]]:
        if not self._ready:
            raise RuntimeError("ProcessObjective.setup() must run before the first loss")
        total, parts = super().forward(s_logits, targets, t_logits if self.kd is not None else None)
        w = self.weights()
        dist = DISTANCES[self.distance_name]
        feat = s_logits.new_zeros(())
        for i, (p, tr) in enumerate(zip(self.pathways, self.transforms)):
            if self.tau is not None and float(w[i]) < self.tau:
                self.skipped += 1
                continue
            self.computed += 1
            ft = t_feats[p.teacher]
            fs = match_spatial(tr(s_feats[p.student]), ft.shape[-2:])
            feat = feat + w[i] * dist(fs.float(), ft.float())
        if self.training:
            self.step += 1
        parts["pathways"] = float(feat.detach())
        return total + feat, parts

    def saved_share(self) -> float:
        """Share of pathway loss computations skipped by τ-clipping."""
        n = int(self.computed) + int(self.skipped)
        return int(self.skipped) / n if n else 0.0
