"""What every dataset source yields (``RawData``) and the keys that tell when a source's files changed.

Why keys from every file's path, size and modification time: decoded arrays and data fingerprints (which key the
teacher cache) are reused across runs, and a single image replaced in place must not be served stale.
"""
from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from archkd.errors import ArchkdError


@dataclass
class RawData:
    """Decoded data: uint8 images in NCHW, int64 labels, optional test split, class names."""

    name: str
    x_train: np.ndarray | None
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    classes: list[str]
    fingerprint: str
    defaults: dict = field(default_factory=dict)
    stream_train: list[tuple[Any, int]] | None = None
    stream_test: list[tuple[Any, int]] | None = None
    opener: Callable[[Any], Any] | None = None
    conversion_note: str | None = None  # the warning about images converted to the dataset's mode (repeated from cache)


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:16]


def _file_key(path: Path) -> str:
    st = path.stat()
    return _fingerprint(path.resolve(), st.st_size, int(st.st_mtime))


def _walk_files(root: Path) -> list[tuple[str, os.stat_result]]:
    """Every regular file under ``root`` as (``/``-separated relative path, stat of the file), in sorted path order.

    Why not ``rglob``/``os.walk``: they skip symlinked folders, and a class folder that is a symlink (a common way to
    assemble a dataset) would silently vanish. Symlinks to folders and files are followed; a folder link back to one
    of its own ancestors (a loop) is not entered; broken links and non-regular files (FIFOs, devices) are left out.
    A folder that cannot be listed is an error, not a silently missing class."""
    out: list[tuple[str, os.stat_result]] = []

    def visit(folder: str, rel: str, ancestors: frozenset[tuple[int, int]]) -> None:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            raise ArchkdError(f"cannot list folder {folder} ({e.strerror or type(e).__name__})",
                              "make it readable, or move it out of the dataset") from None
        for e in entries:
            try:
                st = os.stat(e.path)  # follows symlinks
            except OSError:  # a broken link, or one that loops on itself
                continue
            if stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) not in ancestors:
                    visit(e.path, f"{rel}{e.name}/", ancestors | {(st.st_dev, st.st_ino)})
            elif stat.S_ISREG(st.st_mode):
                out.append((f"{rel}{e.name}", st))

    top = os.stat(root)
    visit(str(root), "", frozenset({(top.st_dev, top.st_ino)}))
    return out


def _tree_key(path: Path) -> str:
    """Every file under ``path``: its relative name, size and modification time (ns). A stat per file is cheap next
    to decoding it, and anything less (the first N files, the folder's own mtime) misses in-place replacements."""
    h = hashlib.sha256(str(path.resolve()).encode())
    for rel, st in _walk_files(path):
        h.update(f"{rel}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _source_key(path: Path) -> str:
    return _file_key(path) if path.is_file() else _tree_key(path)
