"""Zero-cost proxies: DisWOT's teacher–student similarities and the standard baselines.

DisWOT (Dong, Li, Wei, CVPR 2023) scores a student, before any training, by how much its feature semantics and sample
relations resemble the teacher's on one batch. archkd's forms, written from the paper's description:

- **semantic** (``diswot_semantic``): per network, the gradient of the batch's cross-entropy (true labels) with respect
  to the classifier's weights, ``g ∈ R^{K×D}``: row ``k`` is ``(1/B) Σ_i (p_ik − [y_i = k]) · f̄_i``, a class-wise,
  gradient-weighted sum of the pooled features — the class activation the classifier sees. Its rows, L2-normalised,
  give the class-by-class similarity ``G = ĝ ĝᵀ ∈ R^{K×K}``, independent of the network's width ``D``. Score
  ``−‖G_T − G_S‖²_F / K²``.
- **relation** (``diswot_relation``): the last stage's feature map (before pooling), flattened per sample, gives the
  sample-by-sample Gram matrix ``A = f fᵀ ∈ R^{B×B}`` with L2-normalised rows (Similarity-Preserving KD's matrix).
  Score ``−‖A_T − A_S‖²_F / B²``.
- ``diswot``: their sum (equal weights).

Baselines: ``grad_norm`` (Σ over parameters of ‖∂CE/∂θ‖₂ at initialisation), ``params``, ``flops``.

Networks run in training mode (BatchNorm on batch statistics: at initialisation its running statistics mean nothing),
except a trained teacher, which runs in eval mode as it does for KD. Scores average over the batches.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from archkd.config import register_choices
from archkd.data import DataBundle
from archkd.errors import ArchkdError
from archkd.measure import count_flops, count_params
from archkd.models import build_from_spec

Batches = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Signature:
    """What the DisWOT proxies compare, per batch: class similarity ``G`` (K×K) and sample relations ``A`` (B×B)."""

    classes: list[torch.Tensor]
    relations: list[torch.Tensor]


def _classifier(model: nn.Module, num_classes: int) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    if not linears:
        raise ArchkdError(f"{type(model).__name__} has no linear classifier with {num_classes} outputs",
                          "the DisWOT semantic proxy needs one; use another proxy (grad_norm, params)")
    return linears[-1]


def _last_stage(model: nn.Module) -> nn.Module:
    names = getattr(model, "stage_names", None)
    if not names:
        raise ArchkdError(f"{type(model).__name__} declares no stage_names", "build it with archkd.models")
    return dict(model.named_modules())[names[-1]]


def signature(model: nn.Module, batches: Batches, num_classes: int, train_mode: bool = True) -> Signature:
    """One forward and backward pass per batch: the class-similarity and sample-relation matrices of ``model``
    (a frozen teacher's classifier weights take gradients for the duration)."""
    was = model.training
    model.train(train_mode)
    fc = _classifier(model, num_classes)
    frozen = not fc.weight.requires_grad
    fc.weight.requires_grad_(True)
    classes, relations = [], []
    feats: dict[str, torch.Tensor] = {}
    hook = _last_stage(model).register_forward_hook(lambda _m, _i, out: feats.__setitem__("f", out))
    try:
        for x, y in batches:
            (g,) = torch.autograd.grad(F.cross_entropy(model(x).float(), y), fc.weight)
            g = F.normalize(g.detach(), dim=1)
            classes.append(g @ g.T)
            f = feats["f"].detach().flatten(1).float()
            relations.append(F.normalize(f @ f.T, dim=1))
    finally:
        hook.remove()
        fc.weight.requires_grad_(not frozen)
        model.train(was)
    return Signature(classes, relations)


@dataclass
class Probe:
    """A student to score against a reference teacher on fixed batches; signatures are computed once, on demand."""

    student: nn.Module
    batches: Batches
    input_shape: tuple[int, ...]
    num_classes: int
    teacher_signature: Callable[[], Signature]
    _student_sig: Signature | None = field(default=None, repr=False)

    def student_signature(self) -> Signature:
        if self._student_sig is None:
            self._student_sig = signature(self.student, self.batches, self.num_classes)
        return self._student_sig

    def teacher(self) -> Signature:
        return self.teacher_signature()


PROXIES: dict[str, Callable[[Probe], float]] = {}
register_choices("search.prescreen.proxy", lambda: PROXIES)


def register_proxy(name: str) -> Callable:
    """Register ``fn(probe) -> float`` (higher = predicted better) as proxy ``name``."""

    def deco(fn: Callable[[Probe], float]) -> Callable[[Probe], float]:
        PROXIES[name] = fn
        return fn

    return deco


def _distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return float(np.mean([float(((u - v) ** 2).mean()) for u, v in zip(a, b)]))


@register_proxy("diswot_semantic")
def diswot_semantic(probe: Probe) -> float:
    return -_distance(probe.student_signature().classes, probe.teacher().classes)


@register_proxy("diswot_relation")
def diswot_relation(probe: Probe) -> float:
    return -_distance(probe.student_signature().relations, probe.teacher().relations)


@register_proxy("diswot")
def diswot(probe: Probe) -> float:
    return diswot_semantic(probe) + diswot_relation(probe)


@register_proxy("grad_norm")
def grad_norm(probe: Probe) -> float:
    model = probe.student
    was = model.training
    model.train()
    total = 0.0
    try:
        for x, y in probe.batches:
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x).float(), y).backward()
            total += sum(float(p.grad.norm()) for p in model.parameters() if p.grad is not None)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was)
    return total / max(1, len(probe.batches))


@register_proxy("params")
def params(probe: Probe) -> float:
    return float(count_params(probe.student))


@register_proxy("flops")
def flops(probe: Probe) -> float:
    return float(count_flops(probe.student, probe.input_shape).flops)


def proxy_batches(data: DataBundle, n: int = 1, batch_size: int = 64, seed: int = 0) -> Batches:
    """``n`` batches of normalised, un-augmented training images drawn at random (seeded) — the same for every
    candidate, so scores compare architectures and not samples."""
    sel = data.train.sample(n * batch_size, seed)
    out = []
    for x8, y, _ in data.train.batches(batch_size, device=torch.device("cpu"), indices=sel):
        out.append((data.normalize(x8), y))
    return out[:n]


class ProxyScorer:
    """Scores architecture specs with the named proxies against one reference teacher.

    ``teacher`` is the network the DisWOT proxies compare with: a trained teacher (``teacher_trained=True``: eval mode)
    or a freshly initialised one (train mode, DisWOT's protocol). Each student is initialised from a seed derived from
    ``seed`` and its spec, so a spec's score does not depend on the order candidates are scored in."""

    def __init__(self, names: list[str], teacher: nn.Module | None, data: DataBundle, *, n_batches: int = 1,
                 batch_size: int = 64, seed: int = 0, teacher_trained: bool = False) -> None:
        unknown = [n for n in names if n not in PROXIES]
        if unknown:
            raise ArchkdError(f"unknown proxy '{unknown[0]}'", f"choose from {', '.join(sorted(PROXIES))}")
        self.names, self.teacher, self.seed = list(names), teacher, int(seed)
        self.teacher_trained = teacher_trained
        self.input_shape, self.num_classes = tuple(data.input_shape), data.num_classes
        self.batches = proxy_batches(data, n_batches, batch_size, seed)
        self._teacher_sig: Signature | None = None

    def _teacher(self) -> Signature:
        if self._teacher_sig is None:
            if self.teacher is None:
                raise ArchkdError("the DisWOT proxies compare with the teacher's network, which this teacher does not "
                                  "expose (TorchScript)", "give the teacher as an archkd checkpoint, or use proxy "
                                  "grad_norm, params or flops")
            self._teacher_sig = signature(self.teacher, self.batches, self.num_classes,
                                          train_mode=not self.teacher_trained)
        return self._teacher_sig

    def __call__(self, spec: dict) -> dict[str, float]:
        torch.manual_seed(self.seed + zlib.crc32(json.dumps(spec, sort_keys=True).encode()))
        probe = Probe(build_from_spec(spec), self.batches, self.input_shape, self.num_classes, self._teacher)
        return {n: PROXIES[n](probe) for n in self.names}


@dataclass(frozen=True)
class RankCorrelation:
    kendall_tau: float
    spearman_rho: float
    n: int


def rank_correlation(a: list[float], b: list[float]) -> RankCorrelation:
    """Kendall's τ (τ-b, ties counted) and Spearman's ρ between two scorings of the same items."""
    from scipy.stats import kendalltau, spearmanr

    if len(a) != len(b) or len(a) < 3:
        raise ValueError("rank correlation needs two equal-length lists of at least 3 values")
    return RankCorrelation(float(kendalltau(a, b).statistic), float(spearmanr(a, b).statistic), len(a))
