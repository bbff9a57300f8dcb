"""Checkpoints that rebuild their model and resume their training.

Why the spec inside: a checkpoint that stores the architecture spec (``archkd.models.model_spec``), preprocessing and
class names is enough to rebuild, evaluate, export or keep training the model — no config needed. Files are written
atomically (tmp + rename) so a crash mid-save never destroys the previous checkpoint, and loaded with
``weights_only=True`` so a checkpoint cannot run code.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn as nn
from torch.nn.modules.module import register_module_parameter_registration_hook

from archkd.errors import ArchkdError

FORMAT = "archkd-checkpoint-v1"


def atomic_save(payload: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file, then rename: readers never see a half-written file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + f".tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, p)
    return p


def safe_load(path: str | Path, what: str, fix: str) -> Any:
    """``torch.load(weights_only=True)`` whose failures are one-line user errors."""
    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - anything torch.load raises means the user's file is unusable
        raise ArchkdError(f"cannot load {what} {path} ({type(e).__name__})", fix) from None


def save_checkpoint(path: str | Path, model: nn.Module, *, spec: dict | None, extra: dict[str, Any] | None = None) -> Path:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return atomic_save({"format": FORMAT, "spec": spec, "state_dict": state, **(extra or {})}, path)


def load_artifact(path: str | Path, fmt: str, what: str, missing_fix: str, wrong_fix: str) -> dict:
    """Load an archkd file of format ``fmt``; a missing, unreadable or foreign file is a one-line user error."""
    p = Path(path)
    if not p.is_file():
        raise ArchkdError(f"{what} not found: {p}", missing_fix)
    d = safe_load(p, what, wrong_fix)
    if not isinstance(d, dict) or d.get("format") != fmt:
        raise ArchkdError(f"{p} is not an archkd {what}", wrong_fix)
    return d


# The fix for a checkpoint whose parts do not agree: archkd writes them consistent (and atomically), so the file was
# damaged on disk or in a copy, or edited by hand
DAMAGED = "the file is damaged or was edited; use the checkpoint as archkd wrote it"


def load_checkpoint(path: str | Path) -> dict:
    """Load an archkd checkpoint and check that it can be used: ``state_dict`` maps names to tensors and, when the
    file has a spec, the network it describes has exactly those tensors with those shapes (``check_spec_fits``)."""
    d = load_artifact(path, FORMAT, "checkpoint", "check the path (runs/<name>/student/best.pt)",
                      "give a checkpoint written by archkd; for a plain state dict use "
                      "teacher.path=module:factory with teacher.weights=<file>")
    if "state_dict" not in d:
        raise ArchkdError(f"checkpoint {path} has no 'state_dict'", DAMAGED)
    state = d["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ArchkdError(f"checkpoint {path} has a 'state_dict' that is not a mapping of names to tensors", DAMAGED)
    _check_metadata(path, d)
    if d.get("spec") is not None:
        check_spec_fits(path, d["spec"], state)
    return d


def _check_metadata(path: str | Path, d: dict) -> None:
    """The entries that teachers, export and measurement read besides the weights, when present: a list of positive
    ints ``input_shape``, a list of names ``classes``, and ``preprocessing`` whose ``mean`` and ``std`` are lists of
    numbers (``std`` positive: inputs are divided by it). Why: an edited entry would otherwise surface as a
    traceback far from the file (a string ``mean`` in the exporter, an int ``input_shape`` in the teacher loader)."""
    def numbers(v: Any, positive: bool = False) -> bool:
        return isinstance(v, (list, tuple)) and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and (x > 0 or not positive) for x in v)

    pre = d.get("preprocessing")
    problems = {
        "input_shape": d.get("input_shape") is not None and not (
            numbers(d["input_shape"], positive=True) and all(isinstance(x, int) for x in d["input_shape"])),
        "classes": d.get("classes") is not None and not (
            isinstance(d["classes"], (list, tuple)) and all(isinstance(c, str) for c in d["classes"])),
        "preprocessing": pre is not None and not (
            isinstance(pre, dict) and (pre.get("mean") is None or numbers(pre["mean"]))
            and (pre.get("std") is None or numbers(pre["std"], positive=True))),
    }
    bad = next((k for k, wrong in problems.items() if wrong), None)
    if bad is not None:
        raise ArchkdError(f"checkpoint {path} has an unusable '{bad}' ({str(d[bad])[:80]})", DAMAGED)


class _TooLarge(Exception):
    """Raised inside a build that registers more parameters than the checkpoint could hold."""


@contextlib.contextmanager
def _at_most_parameters(limit: int) -> Iterator[None]:
    """Stop a model build once it has registered more than ``limit`` parameters: on the meta device a spec with an
    absurd depth still costs Python time and memory per block, so it must stop early rather than finish."""
    count = 0

    def hook(_module: nn.Module, _name: str, _param: nn.Parameter | None) -> None:
        nonlocal count
        count += 1
        if count > limit:
            raise _TooLarge

    handle = register_module_parameter_registration_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def check_spec_fits(path: str | Path, spec: Any, state: dict[str, torch.Tensor]) -> None:
    """Refuse a checkpoint whose spec does not describe its weights, before anything is allocated.

    Why: the spec and the weights are separate entries of the file, so an edit or damage can make them disagree, and
    a spec is trusted to build a network: a 123 KB file whose spec says ``width: 1000000`` would have archkd allocate
    a terabyte. The network is built on the meta device (shapes, no memory; a build registering far more parameters
    than the file stores is stopped) and compared with the stored tensors: the same names, the same shapes. Building
    it for real after that costs what the file's weights do.
    """
    from archkd.models import build_from_spec

    limit = 2 * len(state) + 64  # the file stores each parameter once; the slack covers re-registered ones
    try:
        with _at_most_parameters(limit), torch.device("meta"):
            own = build_from_spec(spec).state_dict()
    except _TooLarge:
        raise ArchkdError(f"checkpoint {path} has a spec of a network with more than {limit:,} parameter tensors, but "
                          f"stores {len(state):,} tensors", DAMAGED) from None
    except ArchkdError as e:
        raise ArchkdError(f"checkpoint {path} has a spec archkd cannot build ({e.problem.rstrip('.')})",
                          DAMAGED) from None
    except Exception as e:  # noqa: BLE001 - whatever a factory raises on the file's spec, the file is what is wrong
        raise ArchkdError(f"checkpoint {path} has a spec archkd cannot build ({type(e).__name__}: "
                          f"{str(e).strip().splitlines()[0][:160] if str(e).strip() else '-'})", DAMAGED) from None
    for name, t in own.items():
        if name not in state:
            raise ArchkdError(f"checkpoint {path} lacks '{name}' of the network its spec describes", DAMAGED)
        if tuple(state[name].shape) != tuple(t.shape):
            raise ArchkdError(f"checkpoint {path}: '{name}' is {tuple(state[name].shape)} in the file but "
                              f"{tuple(t.shape)} in the network its spec describes", DAMAGED)
    extra = [name for name in state if name not in own]
    if extra:
        raise ArchkdError(f"checkpoint {path} stores '{extra[0]}', which the network its spec describes lacks", DAMAGED)


def model_from_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild the model a checkpoint describes and load its weights; returns (model in eval mode, checkpoint)."""
    from archkd.models import build_from_spec

    d = load_checkpoint(path)
    if not d.get("spec"):
        raise ArchkdError(f"checkpoint {path} has no architecture spec ('spec')", "re-save it with archkd")
    model = build_from_spec(d["spec"])
    model.load_state_dict(d["state_dict"])
    return model.eval(), d
