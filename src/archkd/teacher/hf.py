"""``hf:<folder or hub id>`` teachers: a Hugging Face ``transformers`` image classifier, where most users' teachers live.

What is read from the saved model, so the user states nothing twice: the network
(``AutoModelForImageClassification``), its normalisation (the image processor's ``image_mean``/``image_std``, when it
normalises), its class names (``config.id2label``, unless they are the placeholder ``LABEL_i``) and the size its
processor resizes every image to. The teacher resizes its inputs to that size (bilinearly, as the processor's own
pipeline would; resizing and per-channel normalisation commute, so normalising first is the same), so a teacher
fine-tuned at 224 px distils into students trained at the data's own size.

Offline by design: a folder written by ``save_pretrained`` loads without a network; a hub id loads where the user's
Hugging Face cache (or network) has it. ``transformers`` is an optional extra (``pip install 'archkd[hf]'``).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from archkd.errors import ArchkdError
from archkd.teacher import Teacher, register_teacher_loader

PREFIX = "hf:"


class HFClassifier(nn.Module):
    """Pixels in (already normalised), logits out: the ``transformers`` model behind archkd's teacher contract."""

    def __init__(self, model: nn.Module, size: tuple[int, int] | None) -> None:
        super().__init__()
        self.model, self.size = model, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return self.model(pixel_values=x).logits


def _hw(size: object) -> dict:
    """A processor's size as a plain dict, whether a dict or transformers' ``SizeDict`` (unset fields left out)."""
    if isinstance(size, dict):
        return {k: v for k, v in size.items() if v is not None}
    return {k: getattr(size, k) for k in ("height", "width", "shortest_edge") if getattr(size, k, None) is not None}


def _size(processor: object | None) -> tuple[int, int] | None:
    """The (height, width) every image ends at in the processor: its centre crop when it crops, else its resize
    target when that is a fixed height × width (a shortest-edge resize without a crop keeps the aspect: none)."""
    if processor is None:
        return None
    if getattr(processor, "do_center_crop", False):
        crop = _hw(getattr(processor, "crop_size", None))
        if "height" in crop and "width" in crop:
            return int(crop["height"]), int(crop["width"])
    size = _hw(getattr(processor, "size", None)) if getattr(processor, "do_resize", True) else {}
    if "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    return None


def _classes(config: object) -> list[str] | None:
    labels = getattr(config, "id2label", None) or {}
    names = [str(labels.get(i, labels.get(str(i), ""))) for i in range(len(labels))]
    if not names or all(n == f"LABEL_{i}" for i, n in enumerate(names)):  # transformers' placeholders: no names
        return None
    return names


def _fingerprint(ref: str, where: str, config: object) -> str:
    """Hash of a local folder's weight and config files; for a hub id, of the id and the revision it resolved to."""
    folder = Path(where)
    h = hashlib.sha256(ref.encode())
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.suffix in (".safetensors", ".bin", ".json") and p.is_file():
                h.update(p.name.encode())
                h.update(p.read_bytes())
    else:
        h.update(str(getattr(config, "_commit_hash", "")).encode())
    return h.hexdigest()[:20]


@register_teacher_loader("hf", lambda ref: ref.startswith(PREFIX))
def load_hf(ref: str, weights: str | None, kwargs: dict) -> Teacher:
    """Load ``hf:<folder or hub id>`` (see the module docstring); ``kwargs`` go to ``from_pretrained``."""
    if weights:
        raise ArchkdError(f"teacher.weights was given but {ref} carries its own weights", "drop teacher.weights")
    try:
        from transformers import AutoImageProcessor, AutoModelForImageClassification
    except ImportError:
        raise ArchkdError("hf: teachers need the optional transformers package",
                          "pip install 'archkd[hf]' (or pip install transformers)") from None
    from transformers.utils import logging as hf_logging

    name = ref[len(PREFIX):]
    where = str(Path(name).expanduser()) if Path(name).expanduser().exists() else name
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # no progress bars or backend notices in archkd's output
    hf_logging.disable_progress_bar()
    try:
        try:
            model = AutoModelForImageClassification.from_pretrained(where, **kwargs)
        except Exception as e:  # noqa: BLE001 - a missing folder, an unknown id, no network: the user's to fix
            first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise ArchkdError(f"cannot load the Hugging Face image classifier '{name}' ({first})",
                              "give a folder written by save_pretrained, or a hub id in your Hugging Face cache"
                              ) from None
        try:
            processor = AutoImageProcessor.from_pretrained(where)
        except Exception:  # noqa: BLE001 - no processor saved: archkd estimates the normalisation from the data
            processor = None
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()
    normalises = processor is not None and getattr(processor, "do_normalize", True)
    mean = list(getattr(processor, "image_mean", None) or []) if normalises else []
    std = list(getattr(processor, "image_std", None) or []) if normalises else []
    size = _size(processor)
    channels = int(getattr(model.config, "num_channels", 3))
    return Teacher(HFClassifier(model.float().eval(), size), f"hf-{model.config.model_type}", ref,
                   _fingerprint(ref, where, model.config), mean=mean or None, std=std or None,
                   classes=_classes(model.config), input_shape=None, supports_features=False,
                   info={"channels": channels, "resizes_to": list(size) if size else None,
                         "architecture": type(model).__name__})
