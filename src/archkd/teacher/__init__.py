"""archkd.teacher — bring your own teacher, and check it against the data before any training.

Contract:
- ``load_teacher(ref, weights=None, mean=None, std=None, kwargs=None) -> Teacher``. ``ref`` is an archkd checkpoint,
  a TorchScript file (its JSON sidecar gives normalisation, classes and input shape), ``module.path:factory`` (called
  with ``kwargs``; ``weights`` is a state dict loaded with ``weights_only=True``), ``hf:<folder or hub id>`` (a
  Hugging Face image classifier with its processor's normalisation and class names; ``archkd.teacher.hf``, optional
  extra) or ``timm:<name>`` (optional extra; ``kwargs`` go to ``timm.create_model``). Loaders live in a registry: ``register_teacher_loader(name, matches)`` adds
  ``fn(ref, weights, kwargs)`` in one file.
- Weights that do not fit the built model name the first missing, unexpected and mis-shaped keys.
- ``check_teacher(teacher, data)``: class count, input channels and size, normalisation — a one-line error on mismatch.
- A ``Teacher`` is frozen and always in eval mode; ``fingerprint`` (a content hash) keys the teacher-output cache.
- ``archkd.teacher.generic`` (GTN): ``make_pool`` (the students, from a space), ``train_generic_teacher`` (the teacher
  trained in the one loop against a weight-sharing supernet of the pool, with a ``PathDistribution`` over its paths)
  returning a ``GenericTeacherResult``; ``load_supernet`` / ``extract_student`` take pool students out of the supernet.
"""
from __future__ import annotations

import difflib
import hashlib
import importlib
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from archkd.errors import ArchkdError, ArchkdWarning
from archkd.registry import Registry


@dataclass
class Teacher:
    module: nn.Module
    name: str
    source: str
    fingerprint: str
    mean: list[float] | None = None
    std: list[float] | None = None
    classes: list[str] | None = None
    input_shape: tuple[int, ...] | None = None
    spec: dict | None = None
    supports_features: bool = True
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def describe(self) -> dict:
        return {"name": self.name, "source": self.source, "fingerprint": self.fingerprint,
                "params": sum(p.numel() for p in self.module.parameters()), **self.info}


@dataclass(frozen=True)
class TeacherLoader:
    """``load(ref, weights, kwargs) -> Teacher`` for the references where ``matches(ref)``."""

    matches: Callable[[str], bool]
    load: Callable[..., Teacher]


# In registration order, which is the order references are tried in: the first loader that matches wins.
LOADERS: Registry[TeacherLoader] = Registry("teacher loader", origin=lambda loader: loader.load)
# Catch-all loaders ("module.path:factory" takes any "a:b" reference, the file loader any reference at all) stay
# last: a specific loader (e.g. a plugin's for "hub:<name>") registered later still goes before them.
CATCH_ALL: list[str] = []


def register_teacher_loader(name: str, matches: Callable[[str], bool], catch_all: bool = False) -> Callable:
    """Register ``fn(ref, weights, kwargs) -> Teacher`` for references where ``matches(ref)``; first match wins. A
    loader is tried before every ``catch_all`` one (the generic ``module:factory`` and file loaders)."""

    def deco(fn: Callable[..., Teacher]) -> Callable[..., Teacher]:
        first_catch_all = next((n for n in LOADERS if n in CATCH_ALL), None)
        LOADERS.register(name, TeacherLoader(matches, fn),
                         before=None if catch_all or name in LOADERS else first_catch_all)
        if catch_all and name not in CATCH_ALL:
            CATCH_ALL.append(name)
        return fn

    return deco


def _sha(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:20]


def _is_module_ref(ref: str) -> bool:
    return ":" in ref and not Path(ref).exists() and not ref.startswith("timm:") and re.match(r"^[\w.]+:\w+$", ref) is not None


@register_teacher_loader("timm", lambda ref: ref.startswith("timm:"))
def _load_timm(ref: str, weights: str | None, kwargs: dict) -> Teacher:
    try:
        import timm
    except ImportError:
        raise ArchkdError("timm teachers need the optional timm package", "pip install 'archkd[timm]'") from None
    name = ref.split(":", 1)[1]
    try:
        module = timm.create_model(name, pretrained=False, **kwargs)
    except Exception as e:  # noqa: BLE001 - timm's error for an unknown model is the user's to fix
        raise ArchkdError(f"timm cannot build '{name}' ({_first_line(e)})",
                          "check the name with timm.list_models() and teacher.kwargs") from None
    paths = []
    if weights:
        _load_weights(module, weights, ref)
        paths.append(Path(weights))
    cfg = getattr(module, "pretrained_cfg", {}) or {}
    fp = _sha(*paths) if paths else hashlib.sha256(ref.encode()).hexdigest()[:20]
    return Teacher(module, name, ref, _with_kwargs(fp, kwargs),
                   mean=list(cfg.get("mean", [])) or None, std=list(cfg.get("std", [])) or None,
                   input_shape=tuple(cfg["input_size"]) if "input_size" in cfg else None)


def _state_dict(weights: str) -> dict:
    p = Path(weights)
    if not p.is_file():
        raise ArchkdError(f"teacher weights not found: {weights}", "check teacher.weights")
    from archkd.distill.checkpoint import safe_load

    sd = safe_load(p, "teacher weights", "save them with torch.save(model.state_dict(), path)")
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    return sd


def _with_kwargs(fingerprint: str, kwargs: dict) -> str:
    """Constructor arguments are part of the teacher's identity (they may change what it computes)."""
    if not kwargs:
        return fingerprint
    return hashlib.sha256(f"{fingerprint}|{json.dumps(kwargs, sort_keys=True, default=str)}".encode()).hexdigest()[:20]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:160]}" if text else type(e).__name__


def _load_weights(module: nn.Module, weights: str, ref: str) -> None:
    """Load a state dict strictly, naming what does not fit (PyTorch's own message lists every key over many lines).

    A ``module.`` prefix on every key (saved from DistributedDataParallel) is removed first."""
    sd = _state_dict(weights)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} is {tuple(sd[k].shape)} in the file but {tuple(own[k].shape)} in the model" for k in own
              if k in sd and hasattr(sd[k], "shape") and tuple(sd[k].shape) != tuple(own[k].shape)]
    problems = ([f"{len(missing)} missing (first: {', '.join(missing[:3])})"] if missing else []) + \
               ([f"{len(unexpected)} unexpected (first: {', '.join(unexpected[:3])})"] if unexpected else []) + \
               ([f"{len(shapes)} of another shape (first: {shapes[0]})"] if shapes else [])
    if problems:
        raise ArchkdError(f"weights {weights} do not fit '{ref}': keys " + "; ".join(problems),
                          "use the weights saved from this architecture, or set teacher.kwargs so the factory builds "
                          "it (e.g. num_classes)")
    module.load_state_dict(sd)


@register_teacher_loader("factory", _is_module_ref, catch_all=True)
def _load_factory(ref: str, weights: str | None, kwargs: dict) -> Teacher:
    mod_name, fn_name = ref.split(":")
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as e:
        raise ArchkdError(f"cannot import teacher factory '{ref}' ({e})", "check module.path:function is importable") from None
    if weights is None:
        raise ArchkdError(f"teacher factory '{ref}' needs weights", "set teacher.weights=<state dict file>")
    try:
        module = fn(**kwargs)
    except Exception as e:  # noqa: BLE001 - the factory is the user's code; its failure is theirs to fix
        raise ArchkdError(f"teacher factory '{ref}' raised {_first_line(e)}",
                          "fix the factory or the arguments it gets from teacher.kwargs") from None
    if not isinstance(module, nn.Module):
        raise ArchkdError(f"teacher factory '{ref}' returned {type(module).__name__}, not a torch.nn.Module",
                          "return the model from the factory")
    _load_weights(module, weights, ref)
    return Teacher(module, fn_name, ref, _with_kwargs(_sha(Path(weights)), kwargs),
                   info={"kwargs": dict(kwargs)} if kwargs else {})


def _sidecar(path: Path) -> dict:
    stem = path.name
    for suffix in (".torchscript.pt", ".pt", ".pth", ".ts"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    for cand in (path.with_name(stem + ".json"), path.with_suffix(".json")):
        if cand.is_file():
            try:
                return json.loads(cand.read_text())
            except json.JSONDecodeError:
                raise ArchkdError(f"teacher metadata {cand} is not valid JSON", "fix or remove the file") from None
    return {}


@register_teacher_loader("file", lambda ref: True, catch_all=True)
def _load_file(ref: str, weights: str | None, kwargs: dict) -> Teacher:
    if kwargs:
        raise ArchkdError(f"teacher.kwargs were given but {ref} is a file, built already",
                          "drop teacher.kwargs (they apply to module:factory and timm: teachers)")
    path = Path(ref).expanduser()
    if not path.is_file():
        raise ArchkdError(f"teacher file not found: {ref}",
                          "give a TorchScript file, an archkd checkpoint, module:factory, hf:<folder or hub id> or timm:<name>")
    fp = _sha(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.load notices TorchScript archives; we handle those below
            d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a plain checkpoint; try TorchScript next
        d = None
    if isinstance(d, dict) and d.get("format") == "archkd-checkpoint-v1":
        from archkd.distill.checkpoint import model_from_checkpoint

        module, ck = model_from_checkpoint(path)
        pre = ck.get("preprocessing") or {}
        return Teacher(module, ck["spec"]["name"], str(path), fp, mean=pre.get("mean"), std=pre.get("std"),
                       classes=ck.get("classes"), input_shape=tuple(ck["input_shape"]) if ck.get("input_shape") else None,
                       spec=ck["spec"], info={"val_acc": ck.get("val_acc")})
    if isinstance(d, dict):
        raise ArchkdError(f"{path} holds a plain state dict, not a model",
                          "load it with teacher.path=module.path:factory teacher.weights=" + str(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:  # noqa: BLE001
        raise ArchkdError(f"cannot load teacher {path} ({type(e).__name__})",
                          "give a TorchScript file, an archkd checkpoint, module:factory, hf:<folder or hub id> or timm:<name>") from None
    meta = _sidecar(path)
    # two sidecar layouts: flat keys (normalize_mean, ...) and archkd's own export (preprocessing.mean, input_shape,
    # spec), so an exported student loads back as a teacher with the normalisation it was trained with
    pre = meta.get("preprocessing") if isinstance(meta.get("preprocessing"), dict) else {}
    shape = tuple(int(v) for v in meta["input_shape"]) if meta.get("input_shape") else None
    m = re.search(r"N\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)", str(meta.get("input", "")))
    if m and shape is None:
        shape = tuple(int(v) for v in m.groups())
    name = (meta.get("spec") or {}).get("name") if isinstance(meta.get("spec"), dict) else None
    return Teacher(module, name or path.name.split(".")[0], str(path), fp,
                   mean=meta.get("normalize_mean") or meta.get("mean") or pre.get("mean"),
                   std=meta.get("normalize_std") or meta.get("std") or pre.get("std"),
                   classes=meta.get("classes"), input_shape=shape, supports_features=False,
                   info={k: meta[k] for k in ("test_acc", "val_acc", "params") if meta.get(k) is not None})


def load_teacher(ref: str, weights: str | None = None, mean: list[float] | None = None,
                 std: list[float] | None = None, kwargs: dict | None = None) -> Teacher:
    """Load a teacher through the first matching loader; explicit ``mean``/``std`` override its metadata.

    Loading runs code by design: a TorchScript file carries its program, and ``module:factory`` imports a module."""
    for loader in LOADERS.values():
        if loader.matches(ref):
            t = loader.load(ref, weights, dict(kwargs or {}))
            break
    if mean is not None:
        t.mean = list(mean)
    if std is not None:
        t.std = list(std)
    return t


@torch.no_grad()
def check_teacher(teacher: Teacher, data: "DataBundle") -> None:  # noqa: F821
    """Fail fast, before any training, when teacher and data cannot work together."""
    c, h, w = data.input_shape
    if teacher.input_shape is not None:
        tc, th, tw = teacher.input_shape[-3:]
        if tc != c:
            raise ArchkdError(f"teacher expects {tc} input channels but the data has {c}",
                              "use data with the teacher's channels (RGB vs grayscale)")
        if (th, tw) != (h, w):
            raise ArchkdError(f"teacher expects {th}×{tw} inputs but the data is {h}×{w}",
                              f"set data.image_size={th} or use a teacher trained at {h}×{w}")
    for name, v in (("mean", teacher.mean), ("std", teacher.std)):
        if v is not None and len(v) != c:
            raise ArchkdError(f"teacher normalisation {name} has {len(v)} values but the data has {c} channels",
                              f"set teacher.{name} with {c} values")
    x8, _, _ = next(data.val.batches(2, device=torch.device("cpu")))
    try:
        out = teacher.module(data.normalize(x8))
    except Exception as e:  # noqa: BLE001 - any failure here is an input mismatch the user must fix
        msg = str(e).strip().splitlines()[-1][:160] if str(e).strip() else type(e).__name__
        raise ArchkdError(f"teacher cannot run on the data's {c}×{h}×{w} inputs ({msg})",
                          "check data.image_size and that the teacher was trained on this kind of image") from None
    if isinstance(out, (tuple, list)):
        out = out[0]
    if out.ndim != 2:
        raise ArchkdError(f"teacher output has shape {tuple(out.shape)}, expected (batch, classes)",
                          "wrap the teacher so its forward returns logits")
    if out.shape[1] != data.num_classes:
        raise ArchkdError(f"teacher predicts {out.shape[1]} classes but the data has {data.num_classes}",
                          "use a teacher trained on this dataset or data with the teacher's classes")
    if teacher.classes and list(teacher.classes) != list(data.classes):
        if sorted(teacher.classes) == sorted(data.classes):
            raise ArchkdError("teacher and data list the same classes in a different order",
                              "name the data's class folders so they sort in the teacher's order")
        close = difflib.SequenceMatcher(None, teacher.classes, data.classes).ratio()
        if close < 1:
            warnings.warn(f"teacher class names {teacher.classes[:3]}... differ from the data's {data.classes[:3]}...;"
                          " assuming the same order", ArchkdWarning, stacklevel=2)

from archkd.teacher import hf as _hf  # noqa: E402,F401  (registers the hf: loader; transformers is imported on use)
