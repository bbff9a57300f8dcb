"""Checkpoints that rebuild their model and resume their training.

Why the spec inside: a checkpoint that stores the architecture spec (``archkd.models.model_spec``), preprocessing and
class names is enough to rebuild, evaluate, export or keep training the model — no config needed. Files are written
atomically (tmp + rename) so a crash mid-save never destroys the previous checkpoint, and loaded with
``weights_only=True`` so a checkpoint cannot run code.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

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


def load_checkpoint(path: str | Path) -> dict:
    return load_artifact(path, FORMAT, "checkpoint", "check the path (runs/<name>/student/best.pt)",
                         "give a checkpoint written by archkd; for a plain state dict use "
                         "teacher.path=module:factory with teacher.weights=<file>")


def model_from_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild the model a checkpoint describes and load its weights; returns (model in eval mode, checkpoint)."""
    from archkd.models import build_from_spec

    d = load_checkpoint(path)
    if not d.get("spec"):
        raise ArchkdError(f"checkpoint {path} has no architecture spec", "re-save it with archkd")
    model = build_from_spec(d["spec"])
    model.load_state_dict(d["state_dict"])
    return model.eval(), d
