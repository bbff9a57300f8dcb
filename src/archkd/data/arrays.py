"""Sources already held as arrays: scikit-learn's digits, ``.npz`` files and in-memory torch datasets.

Why apart from the image files: these need no decoding or per-file limits, only a check that the arrays are images
and labels (shape, finite values, integer class indices) before they become uint8 NCHW.
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from archkd.errors import ArchkdError

from .raw import RawData, _file_key, _fingerprint


def _to_uint8_nchw(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ArchkdError(f"{what}: images must be N×H×W, N×H×W×C or N×C×H×W, got shape {x.shape}",
                          "reshape the array before saving it")
    if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x = x.transpose(0, 3, 1, 2)
    if x.dtype != np.uint8:
        xf = x.astype(np.float64)
        bad = int(np.count_nonzero(~np.isfinite(xf)))
        if bad:  # NaN would make max() NaN, the scale 1, and every image silently 0/1 pixels
            raise ArchkdError(f"{what}: {bad} image values are NaN or infinite",
                              "replace or drop those images before saving the array")
        scale = 255.0 if xf.max() <= 1.0 + 1e-6 else 1.0
        x = np.clip(np.round(xf * scale), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(x)


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (N×8×8 pixel values 0..16, labels), read from the CSV that scikit-learn ships.

    Why not ``sklearn.datasets.load_digits``: importing ``sklearn.datasets`` takes ≈1.5 s (it loads SciPy), paid by
    every process of a search on digits, for a 1797-row file. The import is the fallback if the file moves."""
    spec = importlib.util.find_spec("sklearn")
    csv = Path(next(iter(spec.submodule_search_locations or []), "")) / "datasets" / "data" / "digits.csv.gz" \
        if spec is not None else None
    if csv is not None and csv.is_file():
        rows = np.loadtxt(csv, delimiter=",", dtype=np.float64)
        return rows[:, :-1].reshape(-1, 8, 8), rows[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images, d.target.astype(np.int64)


def load_digits_source() -> RawData:
    """scikit-learn's 8×8 digits: ships inside scikit-learn, so it needs no download."""
    images, y = _digits_arrays()
    x = np.clip(np.round(images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[:, None]
    return RawData("digits", x, y, None, None, [str(c) for c in range(10)], _fingerprint("digits", len(y)),
                   defaults={"crop_padding": 1, "flip": False})


def load_npz(path: Path) -> RawData:
    """``.npz`` with ``x_train, y_train[, x_test, y_test]`` (or ``x, y``); images uint8 or float in [0, 1]."""
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any numpy failure is a bad file for the user
        raise ArchkdError(f"cannot read {path} as .npz ({e})", "save it with numpy.savez(x_train=..., y_train=...)") from None
    keys = set(z.files)
    if {"x_train", "y_train"} <= keys:
        xtr, ytr = z["x_train"], z["y_train"]
        xte, yte = (z["x_test"], z["y_test"]) if {"x_test", "y_test"} <= keys else (None, None)
    elif {"x", "y"} <= keys:
        xtr, ytr, xte, yte = z["x"], z["y"], None, None
    else:
        raise ArchkdError(f"{path} has arrays {sorted(keys)}", "name them x_train, y_train (and x_test, y_test)")
    ytr = _labels(ytr, len(xtr), "y_train", path)
    yte = None if yte is None else _labels(yte, len(xte), "y_test", path)
    n_cls = int(max(ytr.max(), -1 if yte is None else yte.max())) + 1
    classes = [str(c) for c in (z["classes"] if "classes" in keys else range(n_cls))]
    for name, y in (("y_train", ytr), ("y_test", yte)):
        if y is not None and y.max() >= len(classes):
            raise ArchkdError(f"{path}: {name} has label {int(y.max())} but 'classes' names only {len(classes)}",
                              "fix the labels or the classes array")
    return RawData(path.stem, _to_uint8_nchw(xtr, str(path)), ytr,
                   None if xte is None else _to_uint8_nchw(xte, str(path)), yte, classes, _file_key(path))


def _labels(y: np.ndarray, n_images: int, name: str, path: Path) -> np.ndarray:
    """Integer class labels, one per image, in 0..C−1: a short, fractional or negative label array is an error, never
    a silently dropped image or an invented class."""
    y = np.asarray(y).reshape(-1)
    if len(y) != n_images:
        raise ArchkdError(f"{path}: {name} has {len(y)} labels for {n_images} images", "give exactly one label per image")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.isfinite(y)) or not np.all(np.equal(np.mod(y, 1), 0)):
            raise ArchkdError(f"{path}: {name} holds non-integer labels", "labels are class indices 0..C−1")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ArchkdError(f"{path}: {name} has negative label {int(y.min())}", "labels are class indices 0..C−1")
    return y


def from_torch_dataset(ds: Any, name: str = "dataset", classes: list[str] | None = None) -> RawData:
    """Any map-style ``torch.utils.data.Dataset`` yielding (image, label): PIL images, HWC arrays or CHW tensors."""
    import torch

    xs, ys = [], []
    for i in range(len(ds)):
        img, y = ds[i]
        if isinstance(img, torch.Tensor):
            a = img.detach().cpu().numpy()
            a = a if a.ndim == 3 else a[None]
        else:
            a = np.asarray(img)
            a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        xs.append(a)
        ys.append(int(y))
    x = _to_uint8_nchw(np.stack(xs), name)
    y = np.asarray(ys, dtype=np.int64)
    classes = classes or list(getattr(ds, "classes", [str(c) for c in range(int(y.max()) + 1)]))
    return RawData(name, x, y, None, None, [str(c) for c in classes],
                   _fingerprint(name, hashlib.sha256(x.tobytes()).hexdigest(), hashlib.sha256(y.tobytes()).hexdigest()))
