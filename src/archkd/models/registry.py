"""Name -> factory registry and the serialisable model spec.

Why a registry: search, distillation, reports and export all need to rebuild *the same* network from a
small JSON record (checkpoints, result tables, worker processes). Every model built through
``create_model`` carries that record as ``model.archkd_spec``.
"""
from __future__ import annotations

import copy
import inspect
import json
import numbers
from typing import Any, Callable

import torch
from torch import nn

from archkd.config import register_choices
from archkd.errors import ArchkdError
from archkd.registry import Registry, suggest

ModelFactory = Callable[..., nn.Module]

MODELS: Registry[ModelFactory] = Registry("model")
_REGISTRY = MODELS  # the old name, which tests use to remove their temporary models
register_choices("teacher.arch", MODELS.names)
register_choices("student.arch", MODELS.names)
register_choices("search.baseline", MODELS.names)
_SPEC_KEYS = ("name", "num_classes", "in_channels", "kwargs")
_GLOBAL_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Register ``fn(num_classes=10, in_channels=3, **kwargs) -> nn.Module`` under ``name``.

    Returns the function unchanged so factories stay directly callable. A name taken by another factory is refused;
    re-registering the same function (a module reload) is harmless.
    """
    return MODELS.register(name)


def list_models() -> list[str]:
    """Sorted names of all registered models."""
    return MODELS.names()


def _check_kwargs(name: str, fn: ModelFactory, kwargs: dict[str, Any]) -> None:
    """Turn a misspelt keyword into a user-facing error instead of a bare TypeError from deep inside."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins / C callables: let the factory decide
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [
        p_name
        for p_name, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and p_name not in ("num_classes", "in_channels")
    ]
    for key in kwargs:
        if key not in accepted:
            guess = suggest(key, accepted)
            fix = f"Did you mean '{guess}'? " if guess else ""
            fix += f"Options for '{name}': {', '.join(accepted) if accepted else '(none)'}."
            raise ArchkdError(f"Model '{name}' has no option '{key}'.", fix)


def _json_copy(obj: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(obj))
    except (TypeError, ValueError) as exc:
        raise ArchkdError(
            f"{what} is not JSON-serialisable ({exc}).",
            "Pass only plain ints, floats, strings, bools, lists and dicts as model options.",
        ) from None


def _dry_run(model: nn.Module, in_channels: int, taps: dict[str, nn.Module], size: int = 32) -> dict[str, list[int]]:
    """One eval-mode forward on zeros, recording the output shape of each tapped module (in call order)."""
    shapes: dict[str, list[int]] = {}
    handles = []
    for tap_name, module in taps.items():
        def hook(_m: nn.Module, _i: Any, out: Any, _n: str = tap_name) -> None:
            if isinstance(out, torch.Tensor):
                shapes[_n] = list(out.shape)

        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_channels, size, size, dtype=dtype, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return shapes


def infer_stage_info(model: nn.Module, in_channels: int) -> tuple[list[str], list[int]]:
    """Guess stage tap points for a model that did not declare them.

    Why: third-party models registered by users rarely declare ``stage_names``. A dry run with hooks on the
    top-level children picks, for each spatial resolution, the last child producing a 4-D map; that is the
    usual definition of a stage output, and the last one is what the global pooling sees.
    """
    children = dict(model.named_children())
    shapes = _dry_run(model, in_channels, children)
    maps: list[tuple[str, list[int]]] = []
    for child_name, shape in shapes.items():  # dict keeps call order
        if isinstance(children[child_name], _GLOBAL_POOLS):
            break  # everything from the global pooling on is the head, not a stage
        if len(shape) == 4:
            maps.append((child_name, shape))
    names: list[str] = []
    channels: list[int] = []
    for i, (child_name, shape) in enumerate(maps):
        nxt = maps[i + 1][1] if i + 1 < len(maps) else None
        if nxt is None or nxt[2:] != shape[2:]:
            names.append(child_name)
            channels.append(shape[1])
    return names, channels


def _ensure_stage_info(model: nn.Module, name: str, in_channels: int) -> None:
    stage_names = getattr(model, "stage_names", None)
    channels = getattr(model, "feature_channels", None)
    if stage_names is None:
        stage_names, inferred = infer_stage_info(model, in_channels)
        channels = inferred if channels is None else channels
        model.stage_names = stage_names
    modules = dict(model.named_modules())
    missing = [s for s in stage_names if s not in modules]
    if missing:
        raise ArchkdError(
            f"Model '{name}' declares stage_names {missing} that are not modules of the network.",
            "Set stage_names to paths listed by model.named_modules().",
        )
    stem = getattr(model, "stem_name", None)
    if stem is not None and stem not in modules:
        raise ArchkdError(f"Model '{name}' declares stem_name '{stem}', which is not a module of the network.",
                          "Set stem_name to a path listed by model.named_modules(), or to None.")
    stem_channels = getattr(model, "stem_channels", None) if stem is not None else None
    if channels is None or (stem is not None and stem_channels is None):
        taps = {s: modules[s] for s in stage_names} | ({stem: modules[stem]} if stem is not None else {})
        shapes = _dry_run(model, in_channels, taps)
        channels = [shapes[s][1] for s in stage_names] if channels is None else channels
        stem_channels = shapes[stem][1] if stem is not None and stem_channels is None else stem_channels
    model.feature_channels = [int(c) for c in channels]
    model.stem_name = stem
    model.stem_channels = None if stem_channels is None else int(stem_channels)


def create_model(name: str, num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> nn.Module:
    """Build a registered model and stamp it with its spec (so it can be rebuilt later)."""
    fn = MODELS.lookup(name)
    for label, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ArchkdError(f"{label} must be a positive integer, got {value!r}.", f"Pass an int >= 1 as {label}.")
    num_classes, in_channels = int(num_classes), int(in_channels)  # numpy ints would break the JSON spec
    _check_kwargs(name, fn, kwargs)
    # Copy through JSON first so the recorded spec is exactly what a rebuild from disk would see.
    plain_kwargs = _json_copy(kwargs, f"Options for model '{name}'")
    model = fn(num_classes=num_classes, in_channels=in_channels, **copy.deepcopy(plain_kwargs))
    if not isinstance(model, nn.Module):
        raise ArchkdError(
            f"The factory registered as '{name}' returned {type(model).__name__}, not an nn.Module.",
            "Make the registered function return a torch.nn.Module.",
        )
    _ensure_stage_info(model, name, in_channels)
    model.archkd_spec = {
        "name": name,
        "num_classes": int(num_classes),
        "in_channels": int(in_channels),
        "kwargs": plain_kwargs,
    }
    return model


def model_spec(model: nn.Module) -> dict[str, Any]:
    """The JSON-serialisable recipe ``{"name", "num_classes", "in_channels", "kwargs"}`` of a model."""
    spec = getattr(model, "archkd_spec", None)
    if spec is None:
        raise ArchkdError(
            f"This {type(model).__name__} has no archkd spec.",
            "Build models with archkd.models.create_model(...) so they can be saved and rebuilt.",
        )
    return copy.deepcopy(spec)


def build_from_spec(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a model from ``model_spec`` output (e.g. read back from a checkpoint or JSON file)."""
    if not isinstance(spec, dict) or "name" not in spec:
        raise ArchkdError(
            f"Invalid model spec {spec!r}.",
            'A spec is a dict like {"name": "resnet20", "num_classes": 10, "in_channels": 3, "kwargs": {}}.',
        )
    unknown = [k for k in spec if k not in _SPEC_KEYS]
    if unknown:
        raise ArchkdError(f"Model spec has unknown keys {unknown}.", f"Allowed keys: {', '.join(_SPEC_KEYS)}.")
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ArchkdError(f"Model spec 'kwargs' must be a dict, got {type(kwargs).__name__}.", "Use a dict of options.")
    return create_model(
        spec["name"],
        num_classes=spec.get("num_classes", 10),
        in_channels=spec.get("in_channels", 3),
        **kwargs,
    )
