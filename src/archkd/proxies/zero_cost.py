r"""Zero-cost proxies: DisWOT's teacher–student similarities and the standard baselines.

DisWOT (Dong, Li, Wei, CVPR 2023, "DisWOT: Student Architecture Search for Distillation WithOut Training") scores a
student, before any training, by how closely its *semantics* and its *sample relations* resemble the teacher's on
one batch of real images, both networks randomly initialised. archkd's implementation, written from the method's
description (the paper's, and the authors' published statement of its two metrics; no code copied):

- **Re-initialisation** (``gaussian_reinit``). Both networks are scored as copies re-initialised with the Gaussian
  scheme the authors' released scoring scripts apply to teacher and student (Zen-NAS's): every convolution and
  linear weight ``~ N(0, 1)``, every bias 0, every normalisation layer's scale 1 and shift 0. archkd's own
  initialisation (Kaiming convolutions, an ``N(0, 0.01)`` classifier, so logits start near 0) is not the paper's.
- **Semantic similarity** (``diswot_semantic``). ``g = ∂CE/∂W ∈ R^{K×C}``, the gradient of the batch's
  cross-entropy (true labels) with respect to the classifier's weights (the last linear layer, ``K`` classes, ``C``
  input channels), what the paper calls its Grad-CAM map. Its inter-channel correlation (ICKD's matrix, with the
  classes in the role of ICKD's samples) is, per class, ``G_k = g_k g_kᵀ ∈ R^{C×C}`` with L2-normalised rows, and
  ``M_s`` is the mean over the ``K·C`` rows of the squared distance between the teacher's and the student's rows
  (``semantic_distance``).
- **Relation similarity** (``diswot_relation``). The last stage's feature map (before pooling), flattened per
  sample, gives the sample-by-sample Gram ``A = f fᵀ ∈ R^{B×B}`` with L2-normalised rows (Similarity-Preserving
  KD's matrix); ``M_r = ‖A_T − A_S‖²_F / B²`` (``relation_distance``).
- ``diswot``: ``−(M_s + M_r)``, the paper's sum of the two distances (higher = predicted better student).
- ``diswot_classgrad``: the same with the class-dimension ``M_s`` below for every pair (archkd's width-free form).

The channel correlation compares the teacher's channel ``j`` with the student's channel ``j``, so it needs equal
classifier input widths ``C_T = C_S``. The method's description gives no rule for unequal widths (the authors'
published form reshapes both gradients to the student's width, which needs them equal; NAS-Bench-201 networks and
depth-searched ResNet-20s all end in the teacher's width). When the widths differ, archkd correlates over the class
dimension instead — the ``K×K`` Gram ``g gᵀ`` (contracting the channels), rows L2-normalised, mean squared row
distance — the same construction on the only axis the two networks share. Both forms lie in ``[0, 4]``, but they
are different statistics: within one ranking, students whose width equals the teacher's and students whose width
does not are scored by different formulas (see ``semantic_distance``), and on digits the channel form sits far lower
(≈ 0.4 against ≈ 1.9 for a resnet20 teacher and ``stages`` students), so ``diswot`` then favours the students of the
teacher's width. ``diswot_classgrad`` scores every pair by the class form.

Baselines: ``grad_norm`` (Σ over parameters of ‖∂CE/∂θ‖₂ at archkd's initialisation), ``params``, ``flops``.

Networks run in training mode (BatchNorm on batch statistics: at initialisation its running statistics mean nothing),
except a trained teacher (``ProxyScorer(teacher_trained=True)``, archkd's variant, not the paper's), which keeps its
weights and runs in eval mode as it does for KD. Scores average over the batches (the paper uses one).
"""
from __future__ import annotations

import copy
import json
import math
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
from archkd.registry import Registry

Batches = list[tuple[torch.Tensor, torch.Tensor]]


def gaussian_reinit(model: nn.Module, seed: int) -> nn.Module:
    r"""A copy of ``model`` re-initialised as DisWOT scores networks; ``model`` itself is left untouched.

    Every convolution and linear layer gets ``W ~ N(0, 1)`` (drawn from a generator seeded by ``seed``) and bias 0;
    every BatchNorm, GroupNorm and LayerNorm gets scale 1 and shift 0 (and BatchNorm fresh running statistics).
    Other parameters (e.g. a ViT's position embeddings) keep their values.

    Args:
        model: the network to copy.
        seed: seeds the draws, so the copy is a function of ``model``'s architecture and ``seed`` alone.

    Returns:
        The re-initialised copy, in the training mode ``model`` was in.
    """
    clone = copy.deepcopy(model)
    gens: dict[torch.device, torch.Generator] = {}

    def gen(t: torch.Tensor) -> torch.Generator:
        if t.device not in gens:
            gens[t.device] = torch.Generator(device=t.device).manual_seed(int(seed))
        return gens[t.device]

    with torch.no_grad():
        for m in clone.modules():
            if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
                m.weight.normal_(0.0, 1.0, generator=gen(m.weight))
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)):
                if getattr(m, "weight", None) is not None:
                    m.weight.fill_(1.0)
                if getattr(m, "bias", None) is not None:
                    m.bias.zero_()
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                    m.reset_running_stats()
    return clone


def channel_correlation_distance(g_t: torch.Tensor, g_s: torch.Tensor) -> torch.Tensor:
    r"""DisWOT's semantic distance: the inter-channel correlations of two classifier-weight gradients.

    For ``g ∈ R^{K×C}`` (row ``k`` = the gradient of the loss with respect to class ``k``'s weights), class ``k``'s
    inter-channel correlation is ``G_k = g_k g_kᵀ ∈ R^{C×C}`` with L2-normalised rows, ``Ĝ_k[j] = G_k[j] /
    ‖G_k[j]‖``, and

        `M_s = 1/(K C) Σ_k ‖Ĝ^T_k − Ĝ^S_k‖²_F`,

    the mean over the ``K·C`` rows of the squared row distance (ICKD's loss with classes as its samples), in
    ``[0, 4]``. ``G_k`` has rank one: row ``j`` is ``g_kj g_k``, so ``Ĝ_k[j] = sign(g_kj) ĝ_k`` with ``ĝ_k =
    g_k / ‖g_k‖`` (a zero ``g_kj`` leaves a zero row), and the distance is computed without forming the ``K·C²``
    entries:

        `M_s = 1/(K C) Σ_k [n^T_k + n^S_k − 2 (s^T_k · s^S_k)(ĝ^T_k · ĝ^S_k)]`,

    with ``s_k = sign(g_k)`` and ``n_k`` its count of non-zeros.

    Args:
        g_t: the teacher's gradient, ``K × C``.
        g_s: the student's gradient, ``K × C`` (the same ``C``).

    Returns:
        ``M_s``, a scalar tensor.
    """
    if g_t.shape != g_s.shape:
        raise ValueError(f"channel correlation needs equal shapes, got {tuple(g_t.shape)} and {tuple(g_s.shape)}")
    g_t, g_s = g_t.double(), g_s.double()
    s_t, s_s = torch.sign(g_t), torch.sign(g_s)
    cos = (F.normalize(g_t, dim=1) * F.normalize(g_s, dim=1)).sum(1)  # ĝ^T_k · ĝ^S_k
    per_class = s_t.abs().sum(1) + s_s.abs().sum(1) - 2 * (s_t * s_s).sum(1) * cos
    return per_class.sum() / g_t.numel()


def class_correlation_distance(g_t: torch.Tensor, g_s: torch.Tensor) -> torch.Tensor:
    r"""archkd's semantic distance for unequal widths: the correlation of two classifier-weight gradients over classes.

    For ``g ∈ R^{K×C}``, ``H = g gᵀ ∈ R^{K×K}`` (channels contracted, so ``C_T`` and ``C_S`` may differ) with
    L2-normalised rows ``Ĥ``, and

        `M_s = 1/K Σ_k ‖Ĥ^T[k] − Ĥ^S[k]‖²`,

    the mean over the ``K`` rows of the squared row distance, in ``[0, 4]`` like ``channel_correlation_distance``.

    Args:
        g_t: the teacher's gradient, ``K × C_T``.
        g_s: the student's gradient, ``K × C_S``.

    Returns:
        ``M_s``, a scalar tensor.
    """
    if g_t.shape[0] != g_s.shape[0]:
        raise ValueError(f"class correlation needs the same classes, got {g_t.shape[0]} and {g_s.shape[0]}")
    h_t = F.normalize(g_t.double() @ g_t.double().T, dim=1)
    h_s = F.normalize(g_s.double() @ g_s.double().T, dim=1)
    return ((h_t - h_s) ** 2).sum() / g_t.shape[0]


def semantic_distance(g_t: torch.Tensor, g_s: torch.Tensor) -> torch.Tensor:
    """``channel_correlation_distance`` (DisWOT's) when the widths agree, else ``class_correlation_distance``.

    The two are different statistics on one ``[0, 4]`` scale: the channel form pairs the teacher's channel ``j``
    with the student's channel ``j``, which for two independently initialised networks are unrelated, so it sits
    near 2 for every such pair; the class form does not. A search space whose students' widths sometimes equal the
    teacher's therefore mixes the two in one ranking; ``diswot_classgrad`` uses the class form throughout."""
    if g_t.shape == g_s.shape:
        return channel_correlation_distance(g_t, g_s)
    return class_correlation_distance(g_t, g_s)


def relation_matrix(f: torch.Tensor) -> torch.Tensor:
    r"""The sample relations of a batch's feature map: ``A = f fᵀ ∈ R^{B×B}`` with L2-normalised rows.

    Args:
        f: features, ``B × …`` (flattened per sample).

    Returns:
        ``A``, ``B × B``.
    """
    f = f.flatten(1).double()
    return F.normalize(f @ f.T, dim=1)


def relation_distance(a_t: torch.Tensor, a_s: torch.Tensor) -> torch.Tensor:
    r"""DisWOT's relation distance, Similarity-Preserving KD's: `M_r = ‖A_T − A_S‖²_F / B²`, in ``[0, 4/B]``."""
    return ((a_t - a_s) ** 2).sum() / a_t.shape[0] ** 2


@dataclass
class Signature:
    """What the DisWOT proxies compare, per batch: the classifier-weight gradient ``g`` (K×C) and the sample
    relations ``A`` (B×B)."""

    grads: list[torch.Tensor]
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
    """One forward and backward pass per batch, on ``model`` as it is (re-initialise it first for DisWOT's protocol,
    ``gaussian_reinit``): its classifier-weight gradients and sample-relation matrices (a frozen teacher's
    classifier weights take gradients for the duration)."""
    was = model.training
    model.train(train_mode)
    fc = _classifier(model, num_classes)
    frozen = not fc.weight.requires_grad
    fc.weight.requires_grad_(True)
    grads, relations = [], []
    feats: dict[str, torch.Tensor] = {}
    hook = _last_stage(model).register_forward_hook(lambda _m, _i, out: feats.__setitem__("f", out))
    try:
        for x, y in batches:
            (g,) = torch.autograd.grad(F.cross_entropy(model(x).float(), y), fc.weight)
            grads.append(g.detach().float())
            relations.append(relation_matrix(feats["f"].detach().float()))
    finally:
        hook.remove()
        fc.weight.requires_grad_(not frozen)
        model.train(was)
    return Signature(grads, relations)


@dataclass
class Probe:
    """A student to score against a reference teacher on fixed batches; signatures are computed once, on demand.

    With ``reinit_seed`` set, the DisWOT signature is taken on a copy of ``student`` re-initialised from that seed
    (``gaussian_reinit``, the paper's protocol); the other proxies see ``student`` as given."""

    student: nn.Module
    batches: Batches
    input_shape: tuple[int, ...]
    num_classes: int
    teacher_signature: Callable[[], Signature]
    reinit_seed: int | None = None
    _student_sig: Signature | None = field(default=None, repr=False)

    def student_signature(self) -> Signature:
        if self._student_sig is None:
            model = self.student if self.reinit_seed is None else gaussian_reinit(self.student, self.reinit_seed)
            self._student_sig = signature(model, self.batches, self.num_classes)
        return self._student_sig

    def teacher(self) -> Signature:
        return self.teacher_signature()


PROXIES: Registry[Callable[[Probe], float]] = Registry("proxy")
register_choices("search.prescreen.proxy", PROXIES.names)


def register_proxy(name: str) -> Callable:
    """Register ``fn(probe) -> float`` (higher = predicted better) as proxy ``name``."""
    return PROXIES.register(name)


def _mean(distance: Callable, a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    d = float(np.mean([float(distance(u, v)) for u, v in zip(a, b)]))
    # A network whose activations overflow at N(0, 1) weights gives no comparison: rank it last, not NaN (which
    # sorts arbitrarily).
    return d if math.isfinite(d) else math.inf


@register_proxy("diswot_semantic")
def diswot_semantic(probe: Probe) -> float:
    """``−M_s`` (``semantic_distance``), averaged over the batches."""
    return -_mean(semantic_distance, probe.teacher().grads, probe.student_signature().grads)


@register_proxy("diswot_relation")
def diswot_relation(probe: Probe) -> float:
    """``−M_r`` (``relation_distance``), averaged over the batches."""
    return -_mean(relation_distance, probe.teacher().relations, probe.student_signature().relations)


@register_proxy("diswot")
def diswot(probe: Probe) -> float:
    """DisWOT: ``−(M_s + M_r)``.

    The paper adds the two distances unweighted. On their scales (``M_s ∈ [0, 4]``, ``M_r ∈ [0, 4/B]``) the sum is
    dominated by ``M_s`` whenever the batch is more than a few samples; archkd keeps the paper's sum."""
    return diswot_semantic(probe) + diswot_relation(probe)


@register_proxy("diswot_classgrad")
def diswot_classgrad(probe: Probe) -> float:
    """archkd's width-free DisWOT: ``−(M_s + M_r)`` with the class-dimension ``M_s``
    (``class_correlation_distance``) for every pair, whatever the widths, on the same re-initialised networks.

    For search spaces whose classifier widths sometimes equal the teacher's, where ``diswot`` would score those
    students by the channel form and the others by the class form."""
    m_s = _mean(class_correlation_distance, probe.teacher().grads, probe.student_signature().grads)
    return -m_s + diswot_relation(probe)


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


def _seed(seed: int, key: object) -> int:
    # The teacher's and each student's re-initialisation draw from their own streams: a student of the teacher's
    # architecture is not scored against an identical copy of itself.
    return (int(seed) + zlib.crc32(json.dumps(key, sort_keys=True).encode())) % 2**63


class ProxyScorer:
    """Scores architecture specs with the named proxies against one reference teacher.

    ``teacher`` is the network the DisWOT proxies compare with. By default (DisWOT's protocol) it is scored as a copy
    re-initialised by ``gaussian_reinit`` in train mode, whatever its weights; with ``teacher_trained=True`` (archkd's
    variant) it is scored as it is, in eval mode. Each student is built, and for the DisWOT proxies re-initialised,
    from a seed derived from ``seed`` and its spec, so a spec's score does not depend on the order candidates are
    scored in. The caller's ``teacher`` is never modified."""

    def __init__(self, names: list[str], teacher: nn.Module | None, data: DataBundle, *, n_batches: int = 1,
                 batch_size: int = 64, seed: int = 0, teacher_trained: bool = False) -> None:
        for n in names:
            PROXIES.lookup(n)  # an unknown name fails here, before any scoring
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
            if self.teacher_trained:
                self._teacher_sig = signature(self.teacher, self.batches, self.num_classes, train_mode=False)
            else:
                model = gaussian_reinit(self.teacher, _seed(self.seed, "teacher"))
                self._teacher_sig = signature(model, self.batches, self.num_classes)
        return self._teacher_sig

    def __call__(self, spec: dict) -> dict[str, float]:
        seed = _seed(self.seed, spec)
        torch.manual_seed(seed)
        probe = Probe(build_from_spec(spec), self.batches, self.input_shape, self.num_classes, self._teacher,
                      reinit_seed=seed)
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
