"""The training objective: CE plus weighted distillation terms, with features taken through forward hooks.

Why hooks: feature losses name tap points by module path (``layer2``, ``features.3``) so no model is edited and any
user model works. ``Taps`` collects the outputs of those modules during a normal forward pass.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from archkd.distill.losses import FeatureLoss, create_loss
from archkd.errors import ArchkdError


ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish, nn.LeakyReLU)


class Taps:
    """Forward hooks that record features of named submodules, in the order the paths were given.

    A path is a module path (its output is recorded) or ``"input:<path>"`` (the module's input is recorded, e.g. the
    pre-activation feature entering a stage's final ReLU; see ``preactivation_paths``).
    """

    def __init__(self, model: nn.Module, paths: list[str]) -> None:
        modules = dict(model.named_modules())
        self.paths = list(paths)
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = []
        for p in dict.fromkeys(self.paths):
            if p.startswith("input:"):
                target = p[len("input:"):]
                if target not in modules:
                    raise ArchkdError(f"tap point '{target}' is not a module of {type(model).__name__}",
                                      "list module paths with model.named_modules()")
                self._handles.append(modules[target].register_forward_pre_hook(self._pre_hook(p)))
                continue
            if p not in modules:
                import difflib

                close = difflib.get_close_matches(p, [n for n in modules if n], n=1)
                raise ArchkdError(f"tap point '{p}' is not a module of {type(model).__name__}",
                                  f"did you mean '{close[0]}'?" if close else "list module paths with model.named_modules()")
            self._handles.append(modules[p].register_forward_hook(self._hook(p)))

    def _hook(self, path: str):
        def fn(_m: nn.Module, _i: tuple, out: torch.Tensor) -> None:
            self.outputs[path] = out

        return fn

    def _pre_hook(self, path: str):
        def fn(m: nn.Module, inputs: tuple) -> None:
            x = inputs[0]
            self.outputs[path] = x.clone() if getattr(m, "inplace", False) else x

        return fn

    def pop(self) -> list[torch.Tensor]:
        out = [self.outputs[p] for p in self.paths]
        self.outputs = {}
        return out

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


@torch.no_grad()
def preactivation_paths(model: nn.Module, paths: list[str], example: torch.Tensor) -> list[str]:
    """Map stage paths to pre-activation taps.

    When the last module to *execute* inside a stage is an activation whose output is the stage's output, tap that
    activation's input (``"input:<path>"``); otherwise the stage output already is pre-activation (e.g. pre-act
    WRN blocks) or ends in another op (concat, shuffle), and the stage output is tapped.
    """
    modules = dict(model.named_modules())
    order: list[str] = []
    outs: dict[str, torch.Tensor] = {}
    names = {id(m): n for n, m in modules.items()}

    def record(mod: nn.Module, _i: tuple, out: torch.Tensor) -> None:
        order.append(names[id(mod)])
        outs[names[id(mod)]] = out

    handles = [m.register_forward_hook(record) for n, m in modules.items()
               if n and (not list(m.children()) or n in paths)]
    was = model.training
    model.eval()
    try:
        model(example)
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    out = []
    for p in paths:
        inside = [n for n in order if n.startswith(p + ".")]
        last = inside[-1] if inside else p
        same = last in outs and p in outs and outs[last].data_ptr() == outs[p].data_ptr() \
            and outs[last].shape == outs[p].shape
        if last == p and isinstance(modules.get(p), ACTIVATIONS):
            out.append(f"input:{p}")
        elif same and isinstance(modules.get(last), ACTIVATIONS):
            out.append(f"input:{last}")
        else:
            out.append(p)
    return out


@dataclass
class FeatureTerm:
    """One feature loss and its taps: one student and one teacher path, or equally long lists of them for a loss
    over several stages at once (``multi_stage``, e.g. ReviewKD)."""

    name: str
    student: tuple[str, ...]
    teacher: tuple[str, ...]
    weight: float


class DistillObjective(nn.Module):
    """``ce_weight · CE(s, y) + kd_weight · KD(s, t) + Σ w_k · feature_k(s_k, t_k)``.

    With no teacher terms it is plain (label-smoothed) cross-entropy, which is how teachers and CE baselines train.
    ``mixable``: its ``forward`` keeps no per-call state, so a mixed batch (``train.mixup``/``cutmix``) may take it
    once per label set; an objective that counts its calls (a replayed process's schedule) sets it False.
    """

    mixable = True

    def __init__(self, ce_weight: float = 1.0, kd_weight: float = 0.0, kd_loss: str = "kd",
                 kd_kwargs: dict | None = None, features: list[dict] | None = None,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.ce_weight = float(ce_weight)
        self.kd_weight = float(kd_weight)
        self.label_smoothing = float(label_smoothing)
        self.kd = create_loss(kd_loss, **(kd_kwargs or {})) if kd_weight > 0 else None
        self.feature_terms: list[FeatureTerm] = []
        self.feature_losses = nn.ModuleList()
        for f in features or []:
            loss = create_loss(f["loss"], **(f.get("kwargs") or {}))
            if not isinstance(loss, FeatureLoss):
                raise ArchkdError(f"loss '{f['loss']}' is not a feature loss", "use it as distill.loss instead")
            if not f.get("student") or not f.get("teacher"):
                raise ArchkdError(f"feature loss '{f['loss']}' needs both tap points",
                                  "set student: <module path> and teacher: <module path>")
            s_taps, t_taps = _paths(f["student"]), _paths(f["teacher"])
            multi = getattr(loss, "multi_stage", False)
            if (len(s_taps) != len(t_taps)) or (not multi and len(s_taps) > 1):
                raise ArchkdError(f"feature loss '{f['loss']}' got {len(s_taps)} student and {len(t_taps)} teacher "
                                  "tap points", "give one of each" if not multi else "give equally long lists")
            w = f.get("weight")
            self.feature_terms.append(FeatureTerm(f["loss"], s_taps, t_taps,
                                                  float(loss.default_weight if w is None else w)))
            self.feature_losses.append(loss)
        self._ready = not self.feature_terms

    @property
    def uses_teacher(self) -> bool:
        return self.kd is not None or bool(self.feature_terms)

    @property
    def ready(self) -> bool:
        """Whether ``setup`` has sized the adapters the losses need (true at once when there are none)."""
        return self._ready

    @property
    def student_taps(self) -> list[str]:
        return [p for t in self.feature_terms for p in t.student]

    @property
    def teacher_taps(self) -> list[str]:
        return [p for t in self.feature_terms for p in t.teacher]

    def _per_term(self, s_feats: list[torch.Tensor], t_feats: list[torch.Tensor]):  # noqa: ANN202 - a generator
        """(term, loss, student feature(s), teacher feature(s)) in the order the taps were flattened."""
        i = 0
        for term, loss in zip(self.feature_terms, self.feature_losses):
            n = len(term.student)
            fs, ft = s_feats[i:i + n], t_feats[i:i + n]
            i += n
            yield (term, loss, fs, ft) if getattr(loss, "multi_stage", False) else (term, loss, fs[0], ft[0])

    def setup(self, s_feats: list[torch.Tensor], t_feats: list[torch.Tensor]) -> None:
        """Size projectors from one example forward; must run before the optimizer is built."""
        for _, loss, fs, ft in self._per_term(s_feats, t_feats):
            shapes = ([f.shape for f in fs], [f.shape for f in ft]) if isinstance(fs, list) else (fs.shape, ft.shape)
            loss.setup(*shapes)
        self._ready = True

    def forward(self, s_logits: torch.Tensor, targets: torch.Tensor, t_logits: torch.Tensor | None = None,
                s_feats: list[torch.Tensor] | None = None, t_feats: list[torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, dict[str, float]]:
        if not self._ready:
            raise RuntimeError("DistillObjective.setup() must run before the first loss")
        parts: dict[str, torch.Tensor] = {}
        if self.ce_weight > 0:
            parts["ce"] = self.ce_weight * F.cross_entropy(s_logits.float(), targets,
                                                           label_smoothing=self.label_smoothing)
        if self.kd is not None:
            parts["kd"] = self.kd_weight * self.kd(s_logits, t_logits, targets)
        for term, loss, fs, ft in self._per_term(s_feats or [], t_feats or []) if self.feature_terms else ():
            parts[f"{term.name}:{','.join(term.student)}"] = term.weight * loss(fs, ft)
        total = sum(parts.values())
        return total, {k: float(v.detach()) for k, v in parts.items()}


def _paths(value: str | list) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(str(v) for v in value)


def _temperature(distill: "DistillConfig") -> dict:  # noqa: F821
    """``distill.temperature`` for the logit losses that take one (kd, dkd), nothing for those that do not."""
    import inspect

    from archkd.distill.losses import LOSSES

    cls = LOSSES.get(distill.loss)
    takes = cls is not None and "temperature" in inspect.signature(cls.__init__).parameters
    return {"temperature": distill.temperature} if takes else {}


def objective_from_config(distill: "DistillConfig | None", label_smoothing: float = 0.0) -> DistillObjective:  # noqa: F821
    """Build the objective for a config section; ``None`` means CE only (teacher training, CE baselines)."""
    if distill is None:
        return DistillObjective(label_smoothing=label_smoothing)
    if not 0 <= distill.alpha <= 1:
        raise ArchkdError(f"distill.alpha={distill.alpha} is out of range", "use a value in [0, 1]")
    feats = []
    for f in distill.features:
        feats.append(f if isinstance(f, dict) else vars(f))
    return DistillObjective(ce_weight=1.0 - distill.alpha, kd_weight=distill.alpha, kd_loss=distill.loss,
                            kd_kwargs=_temperature(distill),
                            features=feats, label_smoothing=label_smoothing)
