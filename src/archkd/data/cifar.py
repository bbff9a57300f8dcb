"""CIFAR-10 / CIFAR-100 python batches, read with an unpickler that rebuilds arrays and nothing else.

Why a restricted unpickler: the batches are pickles, and ``pickle.load`` on a crafted file runs arbitrary code; a
dataset is untrusted input.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from archkd.errors import ArchkdError

from .raw import RawData, _tree_key


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that rebuilds only what CIFAR's python batches hold — dicts, lists, bytes and numpy arrays — and
    refuses every other global: ``pickle.load`` on a crafted file would run arbitrary code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def __init__(self, f, path: Path) -> None:
        super().__init__(f, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle's protocol
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise ArchkdError(f"refusing to load {self.path}: it asks to run {module}.{name}, which a CIFAR batch "
                          "never does", "use the original CIFAR python files, or an ImageFolder / .npz dataset")


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        try:
            return _ArraysOnly(f, path).load()
        except ArchkdError:
            raise
        except Exception as e:  # noqa: BLE001 - a truncated or foreign file is the user's data problem
            raise ArchkdError(f"cannot read CIFAR batch {path} ({type(e).__name__})",
                              "check the folder holds the original cifar-10-batches-py files") from None


def load_cifar_python(path: Path) -> RawData:
    """CIFAR-10 (``cifar-10-batches-py``) or CIFAR-100 (``cifar-100-python``) pickle folders."""
    if (path / "data_batch_1").exists():
        parts = [_unpickle(path / f"data_batch_{i}") for i in range(1, 6) if (path / f"data_batch_{i}").exists()]
        test = _unpickle(path / "test_batch")
        meta = _unpickle(path / "batches.meta") if (path / "batches.meta").exists() else {}
        classes = list(meta.get("label_names", [str(i) for i in range(10)]))
        lk = "labels"
    else:
        parts = [_unpickle(path / "train")]
        test = _unpickle(path / "test")
        meta = _unpickle(path / "meta") if (path / "meta").exists() else {}
        classes = list(meta.get("fine_label_names", [str(i) for i in range(100)]))
        lk = "fine_labels"
    x = np.concatenate([p["data"] for p in parts]).reshape(-1, 3, 32, 32).astype(np.uint8)
    y = np.concatenate([np.asarray(p[lk]) for p in parts]).astype(np.int64)
    xt = np.asarray(test["data"]).reshape(-1, 3, 32, 32).astype(np.uint8)
    yt = np.asarray(test[lk]).astype(np.int64)
    return RawData(path.name, x, y, xt, yt, classes, _tree_key(path),
                   defaults={"crop_padding": 4, "flip": True})
