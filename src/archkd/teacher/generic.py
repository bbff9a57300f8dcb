"""GTN: one *generic* teacher, trained once to be easy to distil into every student of a pool.

The pool is a weight-sharing supernet (``archkd.models.supernet``) over a space. Each training step samples a path
``a ~ p_θ`` (a student of the pool), trains it by KD from the teacher, and lets the same KD term shape the teacher:

    L_teacher = CE(z_T, y) + λ · T² · KL(σ(z_T/T) ‖ σ(sg[z_S(a)]/T))        (conditioning ``kd``: pull the teacher's
                                                                             soft outputs toward what the path can match)
    L_student = (1 − α) · CE(z_S(a), y) + α · T² · KL(σ(sg[z_T]/T) ‖ σ(z_S(a)/T))   (ordinary KD into the path)

``sg`` stops gradients, so each loss trains only its own network: the teacher with its recipe (``teacher.train``), the
supernet with the student recipe (``train``). This is SFTN's form (a teacher trained with its CE plus a KL term to a
student trained beside it) with two changes: the students are whole networks fed the image (SFTN grafts student
branches onto the teacher's features), and they are sampled from a pool rather than fixed, which is GTN's
generalisation from one student to many. The conditioning term is a choice (``generic.condition``): ``kd`` above, or
``standardized`` (the default; ``standardized_kl``: the same KL between per-sample standardised logits, which cannot
shrink the teacher's logit scale). On digits (``bench/gtn.py``, README), ``kd`` with λ = 1 made the teacher's logits
collapse in scale and cost its students 20 points of accuracy, λ = 0.1 still 3 to 7; ``standardized`` with λ = 0.1 (the
defaults) stays within noise of the vanilla teacher.

The path distribution is trained by an architecture loss that moves probability toward the students the teacher
currently serves worst (the larger distillation gap ``g(a) = T²·KL(σ(z_T/T) ‖ σ(z_S(a)/T))``), so the conditioning does
not settle on the easy ones; see ``PathDistribution``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from archkd.config import DistillConfig, GenericConfig, TrainConfig, read_yaml
from archkd.data import DataBundle
from archkd.distill import (Batch, DistillObjective, FitResult, StepContext, TrainHook, build_optimizer, evaluate, fit,
                            objective_from_config, recalibrate_bn, save_checkpoint)
from archkd.distill.checkpoint import atomic_save, load_artifact
from archkd.errors import ArchkdError
from archkd.measure import count_params
from archkd.models import model_spec
from archkd.models.supernet import Supernet, create_supernet
from archkd.spaces import CategoricalDim, IntDim, SearchSpace

SUPERNET_FORMAT = "archkd-supernet-v1"


class PathDistribution(nn.Module):
    """Independent categoricals over a pool's choices, trained by REINFORCE toward paths with a larger gap.

    ``p_θ(a) = Π_k softmax(θ_k)[a_k]`` (one factor for a finite pool's member index, or one per architecture dimension
    of a whole space). After a step on path ``a`` with gap ``g ≥ 0``, with baseline ``b`` an exponential moving average
    (decay ``decay``) of the gaps seen before:

        L_arch(θ) = −clip(g / b − 1, −1, 1) · log p_θ(a) − β · Σ_k H(softmax(θ_k))

    The first term is a score-function (REINFORCE) estimate of ``−∇_θ E_{a∼p_θ}[g(a)] / b``: descending it raises the
    probability of paths whose gap is above average. The advantage is relative to ``b``, so the learning rate does not
    depend on the KD loss's scale, and it shrinks as the pool's gaps even out (the paths the distribution favours are
    then no harder than the rest); clipping bounds a step when the gaps jump (early in training they grow several-fold
    within an epoch as the teacher sharpens). The entropy bonus ``β`` keeps every student of the pool in the teacher's
    sight.
    Plain SGD: the estimate's magnitude carries the signal, which per-coordinate optimisers such as Adam would erase.
    """

    def __init__(self, sizes: list[int], lr: float = 0.05, entropy_weight: float = 0.1, decay: float = 0.9) -> None:
        super().__init__()
        if not sizes or min(sizes) < 1:
            raise ArchkdError(f"a path distribution needs at least one choice per factor, got {sizes}",
                              "give a non-empty pool")
        self.logits = nn.ParameterList([nn.Parameter(torch.zeros(n)) for n in sizes])
        self.register_buffer("baseline", torch.zeros(()))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.entropy_weight = float(entropy_weight)
        self.decay = float(decay)
        self.opt = torch.optim.SGD(self.logits.parameters(), lr=lr)

    def probs(self) -> list[torch.Tensor]:
        return [torch.softmax(t.detach(), 0) for t in self.logits]

    def sample(self, generator: torch.Generator) -> list[int]:
        return [int(torch.multinomial(p, 1, generator=generator)) for p in self.probs()]

    def entropy(self) -> float:
        return float(sum(-(p * p.clamp_min(1e-12).log()).sum() for p in self.probs()))

    def update(self, choice: list[int], gap: float) -> None:
        """One step of ``L_arch`` for the path ``choice`` that showed distillation gap ``gap``."""
        g = float(gap)
        if int(self.updates) == 0:
            self.baseline.fill_(g)
        advantage = max(-1.0, min(1.0, g / (float(self.baseline) + 1e-8) - 1.0))
        self.baseline.mul_(self.decay).add_((1 - self.decay) * g)
        self.updates.add_(1)
        log_p = sum(torch.log_softmax(t, 0)[c] for t, c in zip(self.logits, choice))
        entropy = sum(-(torch.softmax(t, 0) * torch.log_softmax(t, 0)).sum() for t in self.logits)
        loss = -advantage * log_p - self.entropy_weight * entropy
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def full_state(self) -> dict:
        return {"module": self.state_dict(), "optimizer": self.opt.state_dict()}

    def load_full_state(self, state: dict) -> None:
        self.load_state_dict(state["module"])
        self.opt.load_state_dict(state["optimizer"])


def _choices(dim: object) -> tuple:
    if isinstance(dim, CategoricalDim):
        return tuple(dim.choices)
    if isinstance(dim, IntDim):
        return tuple(range(dim.low, dim.high + 1, dim.step))
    raise ArchkdError(f"dimension '{getattr(dim, 'name', dim)}' is continuous, so the whole space is no finite pool",
                      "give a finite pool (random:N or a file of configurations)")


@dataclass
class Pool:
    """The students a generic teacher serves: ``configs`` of ``space`` (a finite pool) or, with ``configs=None``,
    every configuration of its architecture dimensions."""

    space: SearchSpace
    input_shape: tuple[int, ...]
    num_classes: int
    configs: list[dict] | None = None

    def sizes(self) -> list[int]:
        if self.configs is not None:
            return [len(self.configs)]
        return [len(_choices(d)) for d in self.space.arch_dims()]

    def config(self, choice: list[int]) -> dict:
        if self.configs is not None:
            return self.configs[choice[0]]
        return {d.name: _choices(d)[c] for d, c in zip(self.space.arch_dims(), choice)}

    def spec(self, choice: list[int]) -> dict:
        return self.space.spec(self.config(choice), self.input_shape, self.num_classes)

    def largest(self) -> dict:
        return self.space.spec(self.space.largest(), self.input_shape, self.num_classes)


def _params(space: SearchSpace, config: dict, input_shape: tuple[int, ...], num_classes: int) -> int:
    return count_params(space.build(config, input_shape, num_classes))


def _checked(space: SearchSpace, config: object, where: str) -> dict:
    """An architecture configuration of ``space`` from a pool file: every dimension present, every value a choice."""
    if not isinstance(config, dict):
        raise ArchkdError(f"{where} is {config!r}, not a configuration", "give a mapping of dimension → value")
    out = {}
    for d in space.arch_dims():
        if d.name not in config:
            raise ArchkdError(f"{where} lacks dimension '{d.name}' of space '{space.name}'",
                              "give configurations of the pool's space (generic.space)")
        if config[d.name] not in _choices(d):
            raise ArchkdError(f"{where} has {d.name}={config[d.name]!r}, not a choice of space '{space.name}'",
                              f"use one of {list(_choices(d))}")
        out[d.name] = config[d.name]
    return out


def _from_file(space: SearchSpace, source: str) -> list[dict]:
    """Configurations from a search's ``results.json`` (completed trials, best first; ``:K`` keeps the top K) or a
    YAML/JSON list of configurations."""
    path, top = source, None
    head, _, tail = source.rpartition(":")
    if head and tail.isdigit():
        path, top = head, int(tail)
    p = Path(path)
    if not p.is_file():
        raise ArchkdError(f"pool source '{source}' is neither random:N, space, nor a file",
                          "give random:N, space, a search's results.json[:K] or a YAML list of configurations")
    doc = read_yaml(p, "pool file")
    if isinstance(doc, dict) and "trials" in doc:
        searched = (doc.get("search") or {}).get("space")
        if searched and searched != space.name:
            raise ArchkdError(f"pool file {p} is a search of space '{searched}', not '{space.name}'",
                              f"set generic.space={searched} or give a search of '{space.name}'")
        trials = sorted((t for t in doc["trials"] if t.get("state") == "COMPLETE"), key=lambda t: -t.get("reward", 0))
        items = [t.get("config") for t in trials]
    elif isinstance(doc, list):
        items = doc
    else:
        raise ArchkdError(f"pool file {p} holds neither a search's results nor a list of configurations",
                          "give runs/<search>/results.json or a YAML list of configurations")
    configs = [_checked(space, c, f"pool file {p} entry {i}") for i, c in enumerate(items)]
    return configs[:top] if top is not None else configs


# Without budget.max_params, random pool students are drawn within this share of the teacher's parameters: a pool
# student is meant to be distilled from the teacher, and one as large as the teacher compresses nothing (before,
# `--pool random:3` drew 321k-parameter students for a 272k-parameter teacher). A quarter leaves most of the default
# stages space to draw from for a resnet20 teacher, and enough distinct students (24 in 1,600 draws) for a resnet8.
POOL_TEACHER_SHARE = 0.25


def make_pool(space: SearchSpace, sources: list[str], input_shape: tuple[int, ...], num_classes: int, seed: int = 0,
              max_params: int | None = None, teacher_params: int | None = None) -> Pool:
    """Resolve ``generic.pool`` sources (``random:N``, ``space``, files) into a ``Pool``; duplicates are kept once.

    ``random:N`` students have at most ``max_params`` parameters or, when it is None and the teacher's size
    ``teacher_params`` is given, at most ``POOL_TEACHER_SHARE`` of it; files and ``space`` are taken as given."""
    space.largest()  # a space without a supernet fails here, before any data is touched
    if not sources:
        raise ArchkdError("generic.pool is empty", "give e.g. --pool random:8")
    if "space" in sources:
        if len(sources) > 1:
            raise ArchkdError("pool source 'space' (the whole space) cannot be combined with others",
                              "give either space or a list of random:N and files")
        return Pool(space, tuple(input_shape), num_classes)
    cap, within = max_params, ""
    if cap is not None:
        within = f" within {cap:,} parameters"
    elif teacher_params is not None:
        cap = int(teacher_params * POOL_TEACHER_SHARE)
        within = f" within {cap:,} parameters ({POOL_TEACHER_SHARE:.0%} of the teacher's {teacher_params:,})"
    rng = np.random.default_rng(seed)
    configs: dict[str, dict] = {}
    for source in sources:
        if source.startswith("random:"):
            try:
                n = int(source.split(":", 1)[1])
            except ValueError:
                n = 0
            if n < 1:
                raise ArchkdError(f"pool source '{source}' needs a positive count", "write e.g. random:8")
            added, tries = 0, 0
            while added < n:
                tries += 1
                if tries > 200 * n:
                    raise ArchkdError(f"found only {added} of {n} distinct pool students{within}",
                                      "ask for fewer, or raise budget.max_params")
                c = space.sample_rng(rng)
                key = json.dumps(c, sort_keys=True)
                if key in configs or (cap is not None and _params(space, c, input_shape, num_classes) > cap):
                    continue
                configs[key] = c
                added += 1
        else:
            for c in _from_file(space, source):
                configs.setdefault(json.dumps(c, sort_keys=True), c)
    return Pool(space, tuple(input_shape), num_classes, list(configs.values()))


def standardized_kl(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``KL(σ(ẑ_T) ‖ σ(ẑ_S))`` over per-sample standardised logits ``ẑ = (z − mean_k z) / std_k z``, batch mean.

    Standardising makes the term blind to the teacher's logit scale: it shapes which classes the teacher finds alike
    (what a student can imitate) and leaves confidence to the teacher's CE. Without it, conditioning on students that
    are still weak shrinks the teacher's logits until its temperature-softened outputs are nearly uniform (measured on
    digits: logit std 5.4 → 1.1, soft-label entropy at T = 4 of 2.26 nats against log 10 = 2.30), and KD from it
    teaches little."""
    def z(v: torch.Tensor) -> torch.Tensor:
        v = v.float()
        return (v - v.mean(1, keepdim=True)) / (v.std(1, keepdim=True) + 1e-6)

    return torch.nn.functional.kl_div(torch.log_softmax(z(s), 1), torch.log_softmax(z(t), 1), reduction="batchmean",
                                      log_target=True)


class GenericTeacherHook(TrainHook):
    """The GTN step inside the one training loop, whose model is the teacher: sample a path, train it by KD from the
    teacher (``student``) and add the conditioning term to the teacher's loss (``condition``); then step the supernet
    and the path distribution. Its supernet, optimiser and distribution are saved with the loop's ``last.pt``."""

    def __init__(self, supernet: Supernet, pool: Pool, objective: DistillObjective, student: TrainConfig,
                 condition_weight: float, distribution: PathDistribution, seed: int = 0,
                 condition: str = "standardized") -> None:
        if objective.kd is None or objective.feature_terms:
            raise ArchkdError("a generic teacher is conditioned through a logit KD loss only",
                              "set distill.alpha > 0 and distill.features=[]")
        self.supernet, self.pool, self.objective, self.student = supernet, pool, objective, student
        self.weight = float(condition_weight)
        self.condition = condition
        self.dist = distribution
        self.generator = torch.Generator().manual_seed(int(seed))
        self.choice: list[int] = []
        self.gap = 0.0
        self.gaps: list[float] = []

    def setup(self, ctx: StepContext) -> None:
        self.supernet.to(ctx.device)
        self.objective.to(ctx.device)
        total = ctx.cfg.epochs * ctx.steps_per_epoch
        self.opt, self.sched = build_optimizer(list(self.supernet.parameters()), replace(self.student, epochs=ctx.cfg.epochs),
                                               total, ctx.steps_per_epoch)

    def before_step(self, ctx: StepContext, batch: Batch) -> None:
        self.choice = self.dist.sample(self.generator)
        self.supernet.set_path(self.pool.spec(self.choice))
        self.supernet.train()
        self.opt.zero_grad(set_to_none=True)

    def loss_terms(self, ctx: StepContext, batch: Batch, s_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        t = s_logits  # the loop's model is the teacher
        z = self.supernet(batch.x)
        student, parts = self.objective(z, batch.y, t.detach())
        self.gap = parts["kd"] / self.objective.kd_weight  # the path's KD loss: its distillation gap
        if self.condition == "kd":  # T²·KL(σ(z_T/T) ‖ σ(sg[z_S]/T)): gradients reach the teacher only
            condition = self.objective.kd(z.detach(), t)
        else:
            condition = standardized_kl(t, z.detach())
        return {"student": student, "condition": self.weight * condition}

    def after_step(self, ctx: StepContext, batch: Batch, loss: float) -> None:
        if self.student.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.supernet.parameters(), self.student.grad_clip)
        self.opt.step()
        self.sched.step()
        self.dist.update(self.choice, self.gap)
        self.gaps.append(self.gap)

    def after_epoch(self, ctx: StepContext, row: dict) -> None:
        row["gap"] = float(np.mean(self.gaps)) if self.gaps else 0.0
        row["path_entropy"] = self.dist.entropy()
        self.gaps = []

    def state_dict(self) -> dict:
        return {"supernet": {k: v.detach().cpu() for k, v in self.supernet.state_dict().items()},
                "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                "distribution": self.dist.full_state(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.supernet.load_state_dict(state["supernet"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.dist.load_full_state(state["distribution"])
        self.generator.set_state(state["generator"])


@dataclass
class PoolMember:
    """A pool student after GTN training: its configuration, spec and size, the probability the path distribution
    ended with, and — extracted from the supernet with BatchNorm recalibrated — its validation accuracy and checkpoint
    (a starting point for ``student.init=checkpoint``)."""

    index: int
    config: dict
    spec: dict
    params: int
    probability: float
    supernet_val_acc: float
    checkpoint: str | None = None


@dataclass
class GenericTeacherResult:
    fit: FitResult
    members: list[PoolMember] = field(default_factory=list)
    supernet: Path | None = None
    entropy: float = 0.0


def extract_student(supernet: Supernet, spec: dict, data: DataBundle, n: int, device: torch.device | str = "cpu",
                    seed: int = 0) -> nn.Module:
    """The standalone student of ``spec`` with the supernet's weights and BatchNorm statistics recalibrated on ``n``
    training images (shared statistics describe no single path)."""
    model = supernet.extract(spec).to(device)
    recalibrate_bn(model, data.train, data.normalize, device, indices=data.train.subset(1.0, seed), n=n,
                   batch_size=256)
    return model.eval()


def save_supernet(path: Path, supernet: Supernet, pool: Pool, meta: dict | None = None) -> Path:
    return atomic_save({"format": SUPERNET_FORMAT, "largest": supernet.largest, "space": pool.space.describe(),
                        "state_dict": {k: v.detach().cpu() for k, v in supernet.state_dict().items()},
                        **(meta or {})}, path)


def load_supernet(path: str | Path) -> Supernet:
    """A supernet saved by ``archkd teacher generic`` (``runs/<name>/supernet.pt``); ``extract_student`` takes any
    path of its space out of it."""
    d = load_artifact(path, SUPERNET_FORMAT, "supernet", "give runs/<name>/supernet.pt of 'archkd teacher generic'",
                      "give a supernet written by 'archkd teacher generic'")
    net = create_supernet(d["largest"])
    net.load_state_dict(d["state_dict"])
    return net


def train_generic_teacher(teacher: nn.Module, data: DataBundle, pool: Pool, teacher_train: TrainConfig,
                          student_train: TrainConfig, distill: DistillConfig, generic: GenericConfig, *, seed: int = 0,
                          device: torch.device | str = "cpu", out_dir: Path, meta: dict | None = None,
                          log: Callable[[str], None] | None = print,
                          on_epoch: Callable[[int, dict], None] | None = None) -> GenericTeacherResult:
    """Train ``teacher`` (from scratch, or fine-tune it) as GTN's generic teacher for ``pool``, in ``fit``.

    Writes ``out_dir/teacher/{best,last}.pt`` (an ordinary archkd teacher checkpoint; a re-run resumes), then
    ``out_dir/supernet.pt`` and, for a finite pool, each member extracted as ``out_dir/pool/<i>.pt``."""
    torch.manual_seed(seed)
    supernet = create_supernet(pool.largest())
    dist = PathDistribution(pool.sizes(), lr=generic.arch_lr, entropy_weight=generic.entropy_weight)
    objective = objective_from_config(replace(distill, features=[]), student_train.label_smoothing)
    hook = GenericTeacherHook(supernet, pool, objective, student_train, generic.condition_weight, dist, seed,
                              generic.condition)
    identity = {**(meta or {}), "generic": {  # what makes a re-run the same run (resumed) rather than a new one
        "pool": pool.configs if pool.configs is not None else "space", "space": pool.space.describe(),
        "student": asdict(student_train), "distill": asdict(distill),
        **{k: getattr(generic, k) for k in ("condition", "condition_weight", "arch_lr", "entropy_weight")}}}
    res = fit(teacher, data, teacher_train, seed=seed, device=device, out_dir=out_dir / "teacher",
              spec=model_spec(teacher), meta=identity, log=log, resume=True, hooks=[hook], on_epoch=on_epoch)
    out = GenericTeacherResult(fit=res, entropy=dist.entropy())
    out.supernet = save_supernet(out_dir / "supernet.pt", supernet, pool, {k: v for k, v in (meta or {}).items()
                                                                           if k in ("preprocessing", "classes",
                                                                                    "input_shape")})
    if pool.configs is None:
        return out
    probs = dist.probs()[0]
    for i, config in enumerate(pool.configs):
        spec = pool.spec([i])
        model = extract_student(supernet, spec, data, generic.bn_recalibration, device, seed)
        acc = evaluate(model, data.val, data.normalize, device)
        path = save_checkpoint(out_dir / "pool" / f"{i:02d}.pt", model, spec=spec,
                               extra={**(meta or {}), "pool_config": config, "val_acc": acc})
        out.members.append(PoolMember(i, config, spec, count_params(model), float(probs[i]),
                                      acc, str(path)))
        if log:
            log(f"pool student {i}: {out.members[-1].params:,} params, p={float(probs[i]):.3f}, "
                f"supernet weights val acc {acc:.4f} -> {path}")
    return out
