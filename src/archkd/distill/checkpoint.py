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


def save_checkpoint(path: str | Path, model: nn.Module, *, spec: dict | None, extra: dict[str, Any] | None = None) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "spec": spec, "state_dict": state, **(extra or {})}
    tmp = p.with_suffix(p.suffix + f".tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, p)
    return p


def load_checkpoint(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ArchkdError(f"checkpoint not found: {p}", "check the path (runs/<name>/student/best.pt)")
    try:
        d = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - anything torch.load raises means the user's file is unusable
        raise ArchkdError(f"cannot load checkpoint {p} ({type(e).__name__})",
                          "give an archkd checkpoint (.pt) written by archkd, or a TorchScript file") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ArchkdError(f"{p} is not an archkd checkpoint", "for a plain state dict use teacher.path=module:factory "
                          "with teacher.weights=<file>")
    return d


def model_from_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild the model a checkpoint describes and load its weights; returns (model in eval mode, checkpoint)."""
    from archkd.models import build_from_spec

    d = load_checkpoint(path)
    if not d.get("spec"):
        raise ArchkdError(f"checkpoint {path} has no architecture spec", "re-save it with archkd")
    model = build_from_spec(d["spec"])
    model.load_state_dict(d["state_dict"])
    return model.eval(), d
