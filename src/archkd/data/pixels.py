"""Image modes: which decoded images are grayscale, how others are converted to the dataset's mode, and the one
warning that counts the conversions.

Why one rule for every path: in-memory decoding and streaming (in DataLoader workers) must yield the same pixels for
the same file, and the same pixels a teacher trained with torchvision's ImageFolder loader saw.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

# Modes whose first image makes an image folder grayscale (1 channel); any other mode makes it RGB.
GRAY_MODES = ("L", "1", "I", "I;16", "I;16L", "I;16B", "I;16N")
# Integer modes holding 16-bit samples (PNG decodes 16-bit grayscale to "I;16", older PIL to "I"): scaled to 8 bits.
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")
# Bumped whenever decoding changes the pixels a file yields (v2: 16-bit scaling), so that decoded caches and data
# fingerprints (which key the teacher cache) built by an older decoder are not reused.
DECODE_VERSION = 2


def _source_mode(im: Any) -> str:
    """How a conversion warning names an image's mode: a palette with transparency is told apart from one without."""
    return "P with transparency" if im.mode == "P" and "transparency" in im.info else im.mode


def _native(source_mode: str, mode: str) -> bool:
    """Whether an image of ``source_mode`` is in the dataset's ``mode`` already (16-bit grayscale counts as "L": it
    is only rescaled), i.e. decodes without a conversion worth a warning."""
    return source_mode == mode or (mode == "L" and source_mode in SIXTEEN_BIT_MODES)


def _convert(im: Any, mode: str) -> Any:
    """``im`` in ``mode`` ("RGB" or "L").

    16-bit samples are scaled to 8 bits (round(v / 257), so 65535 → 255) rather than clipped, which would turn every
    non-zero pixel white. Transparency is dropped, keeping the colour under it — as torchvision's ImageFolder loader
    does, so a teacher trained that way saw the same pixels; a palette image with transparency goes through RGBA to
    get there (PIL warns on a direct conversion), and so the same rule holds for P, PA, LA and RGBA images."""
    from PIL import Image

    if im.mode in SIXTEEN_BIT_MODES:
        v = np.asarray(im).astype(np.int64)
        im = Image.fromarray(np.clip((v + 128) // 257, 0, 255).astype(np.uint8))
    elif im.mode == "PA" or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
    return im if im.mode == mode else im.convert(mode)


def _conversion_note(path: Path, mode: str, converted: Counter[str], n: int,
                     sampled_from: int | None = None) -> str | None:
    """The one warning per dataset about images converted to its mode, e.g. "converted 3 of 40 images in d.zip to RGB
    (CMYK: 1, LA: 1, P with transparency: 1)"; None when none were. ``sampled_from``: ``n`` is a sample of that many."""
    k = sum(converted.values())
    if not k:
        return None
    target = "grayscale (L)" if mode == "L" else "RGB"
    modes = ", ".join(f"{m}: {c}" for m, c in sorted(converted.items()))
    of = f"{n} images" if sampled_from is None else f"a sample of {n} of {sampled_from:,} images (streamed)"
    alpha = any(m.endswith(("A", "a")) or "transparency" in m for m in converted)  # LA, PA, RGBA, RGBa, ...
    return (f"converted {k} of {of} in {path} to {target} ({modes}), as the dataset's first image is {target}"
            + ("; transparency is dropped" if alpha else ""))
