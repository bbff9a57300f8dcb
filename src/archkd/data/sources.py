"""Dataset sources: each turns a user's reference into decoded uint8 arrays (or a file list to stream).

Why decode once: small-image datasets fit in memory as uint8 (CIFAR-10 is 150 MB), so decoding JPEGs or pickles every
epoch is waste. Decoded arrays are cached on disk keyed by the path, size and modification time of every file (a
single image replaced in place must not be served stale).
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from archkd.errors import ArchkdError, ArchkdWarning

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")


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


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:16]


def _file_key(path: Path) -> str:
    st = path.stat()
    return _fingerprint(path.resolve(), st.st_size, int(st.st_mtime))


def _tree_key(path: Path) -> str:
    """Every file under ``path``: its relative name, size and modification time (ns). A stat per file is cheap next
    to decoding it, and anything less (the first N files, the folder's own mtime) misses in-place replacements."""
    h = hashlib.sha256(str(path.resolve()).encode())
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for f in sorted(files):
            st = os.stat(os.path.join(root, f))
            h.update(f"{os.path.relpath(os.path.join(root, f), path)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _source_key(path: Path) -> str:
    return _file_key(path) if path.is_file() else _tree_key(path)


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


def load_digits_source() -> RawData:
    """scikit-learn's 8×8 digits: ships inside scikit-learn, so it needs no download."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.clip(np.round(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[:, None]
    y = d.target.astype(np.int64)
    return RawData("digits", x, y, None, None, [str(c) for c in range(10)], _fingerprint("digits", len(y)),
                   defaults={"crop_padding": 1, "flip": False})


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


def _scan_folder(names: list[str]) -> tuple[dict[str, list[tuple[str, str]]], list[str]]:
    """Group image paths ``[split/]class/file`` into splits; returns {split: [(path, class)]}, classes."""
    splits: dict[str, list[tuple[str, str]]] = {}
    for n in names:
        if not n.lower().endswith(IMAGE_EXTS) or "/__MACOSX" in "/" + n:
            continue
        parts = [p for p in n.split("/") if p]
        if len(parts) >= 3 and parts[-3].lower() in ("train", "test", "val", "valid", "validation"):
            split = "test" if parts[-3].lower() == "test" else ("train" if parts[-3].lower() == "train" else "val")
        elif len(parts) >= 2:
            split = "all"
        else:
            continue
        splits.setdefault(split, []).append((n, parts[-2]))
    classes = sorted({c for items in splits.values() for _, c in items})
    return splits, classes


def _decode(data: bytes, mode: str, size: int | None) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im = im.convert(mode)
        if size is not None and im.size != (size, size):
            w, h = im.size
            s = size / min(w, h)
            im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            im = im.crop((left, top, left + size, top + size))
        a = np.array(im, dtype=np.uint8)
    return np.ascontiguousarray(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))


class _Reader:
    """Reads image bytes from a folder or a zip; picklable so DataLoader workers can stream from it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.is_zip = root.suffix.lower() == ".zip"
        self._zip: zipfile.ZipFile | None = None

    def names(self) -> list[str]:
        if self.is_zip:
            with zipfile.ZipFile(self.root) as z:
                return [i.filename for i in z.infolist() if not i.is_dir()]
        return [str(p.relative_to(self.root)).replace(os.sep, "/") for p in sorted(self.root.rglob("*")) if p.is_file()]

    def read(self, name: str) -> bytes:
        if self.is_zip:
            if self._zip is None:
                self._zip = zipfile.ZipFile(self.root)
            return self._zip.read(name)
        return (self.root / name).read_bytes()

    def __getstate__(self) -> dict:
        return {"root": self.root, "is_zip": self.is_zip, "_zip": None}


def _why(err: Exception) -> str:
    return str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__


def _undecodable(path: Path, name: str, err: Exception) -> ArchkdError:
    return ArchkdError(f"cannot decode image {path / name} ({_why(err)})",
                       "remove or replace the file, or set data.skip_corrupt=true to skip such files with a warning")


def _corrupt(path: Path, name: str, err: Exception, skip: bool) -> None:
    """A file that does not decode: a one-line error naming it, or (``data.skip_corrupt``) a warning."""
    if not skip:
        raise _undecodable(path, name, err) from None
    warnings.warn(f"skipping undecodable image {path / name} ({_why(err)})", ArchkdWarning, stacklevel=2)


def load_image_folder(path: Path, image_size: int | None, max_in_memory_mb: int,
                      progress: Callable[[str, int], Any] | None = None, skip_corrupt: bool = False) -> RawData:
    """ImageFolder layout (``[train|test]/<class>/<image>``), as a directory or a ``.zip``.

    A file that does not decode is an error naming it, or with ``skip_corrupt`` a warning and the file is left out
    (of in-memory data; a streamed set fails on the file when it is read)."""
    from PIL import Image

    reader = _Reader(path)
    try:
        names = reader.names()
    except zipfile.BadZipFile:
        raise ArchkdError(f"{path} is not a valid zip file", "re-create the archive or unpack it to a folder") from None
    splits, classes = _scan_folder(names)
    if not classes:
        raise ArchkdError(f"no images found in {path}", "expected <class>/<image>.jpg or train/<class>/<image>.jpg")
    train = splits.get("train", []) + splits.get("all", [])
    test = splits.get("test", []) or splits.get("val", [])
    if not train:
        raise ArchkdError(f"no training images in {path}", "put images under train/<class>/ or <class>/")
    cidx = {c: i for i, c in enumerate(classes)}
    first = None
    for n, _ in train:  # the first image that opens decides colour mode and size
        try:
            first = Image.open(io.BytesIO(reader.read(n)))
            break
        except Exception as e:  # noqa: BLE001 - PIL raises many types for a damaged file
            _corrupt(path, n, e, skip_corrupt)
    if first is None:
        raise ArchkdError(f"no training image in {path} can be decoded", "check the files are images")
    mode = "L" if first.mode in ("L", "1", "I;16", "I") else "RGB"
    size = image_size or (first.size[0] if first.size[0] == first.size[1] else min(first.size))
    chans = 1 if mode == "L" else 3
    fp = _fingerprint(_source_key(path), size, mode, skip_corrupt)
    est_mb = (len(train) + len(test)) * chans * size * size / 2**20
    defaults = {"crop_padding": max(1, size // 8), "flip": True}
    items_tr = [(n, cidx[c]) for n, c in train]
    items_te = [(n, cidx[c]) for n, c in test]
    if est_mb > max_in_memory_mb:
        return RawData(path.stem, None, np.array([y for _, y in items_tr], dtype=np.int64), None,
                       np.array([y for _, y in items_te], dtype=np.int64) if items_te else None, classes, fp, defaults,
                       stream_train=items_tr, stream_test=items_te or None,
                       opener=_StreamOpener(reader, mode, size))

    def decode_all(items: list[tuple[str, int]], label: str) -> tuple[np.ndarray, np.ndarray]:
        out = np.empty((len(items), chans, size, size), dtype=np.uint8)
        kept = np.ones(len(items), dtype=bool)
        for k, (n, _) in enumerate(items):
            try:
                out[k] = _decode(reader.read(n), mode, size)
            except Exception as e:  # noqa: BLE001 - PIL raises many types for a damaged file
                _corrupt(path, n, e, skip_corrupt)
                kept[k] = False
            if progress and (k % 2000 == 0 or k == len(items) - 1):
                progress(f"decoding {label}", k + 1)
        return out[kept], np.array([y for _, y in items], dtype=np.int64)[kept]

    x_tr, y_tr = decode_all(items_tr, "train")
    x_te, y_te = decode_all(items_te, "test") if items_te else (None, None)
    return RawData(path.stem, x_tr, y_tr, x_te, y_te, classes, fp, defaults)


class _StreamOpener:
    def __init__(self, reader: _Reader, mode: str, size: int) -> None:
        self.reader, self.mode, self.size = reader, mode, size

    def __call__(self, name: str) -> np.ndarray:
        try:
            return _decode(self.reader.read(name), self.mode, self.size)
        except Exception as e:  # noqa: BLE001 - PIL raises many types for a damaged file
            raise _undecodable(self.reader.root, name, e) from None


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


def open_source(source: str, image_size: int | None = None, max_in_memory_mb: int = 4096,
                cache_dir: str | None = None, progress: Callable[[str, int], Any] | None = None,
                skip_corrupt: bool = False) -> RawData:
    """Dispatch a data reference to its loader; decoded in-memory data is cached on disk as ``.npz``."""
    if source == "digits":
        return load_digits_source()
    path = Path(source).expanduser()
    if not path.exists():
        raise ArchkdError(f"data path not found: {source}",
                          "give an existing folder, .zip or .npz, or data.source=digits for the built-in set")
    if path.is_dir() and ((path / "data_batch_1").exists() or (path / "train").is_file()):
        return load_cifar_python(path)
    if path.suffix.lower() == ".npz":
        return load_npz(path)
    if path.is_dir() or path.suffix.lower() == ".zip":
        return _cached(path, image_size, max_in_memory_mb, cache_dir, progress, skip_corrupt)
    raise ArchkdError(f"unsupported data format: {path.name}",
                      "use digits, a CIFAR python folder, an ImageFolder directory or .zip, or an .npz file")


def _cached(path: Path, image_size: int | None, max_mb: int, cache_dir: str | None,
            progress: Callable[[str, int], Any] | None, skip_corrupt: bool = False) -> RawData:
    key = _fingerprint(_source_key(path), image_size, skip_corrupt)
    cfile = Path(cache_dir) / "decoded" / f"{path.stem}-{key}.npz" if cache_dir else None
    if cfile is not None and cfile.exists():
        try:
            z = np.load(cfile, allow_pickle=False)
            return RawData(str(z["name"]), z["x_train"], z["y_train"], z["x_test"] if "x_test" in z.files else None,
                           z["y_test"] if "y_test" in z.files else None, [str(c) for c in z["classes"]],
                           str(z["fingerprint"]), {"crop_padding": int(z["pad"]), "flip": bool(z["flip"])})
        except Exception:  # noqa: BLE001 - a corrupt cache is rebuilt, never fatal
            cfile.unlink(missing_ok=True)
    raw = load_image_folder(path, image_size, max_mb, progress, skip_corrupt)
    if cfile is not None and raw.x_train is not None:
        cfile.parent.mkdir(parents=True, exist_ok=True)
        tmp = cfile.with_name(f"{cfile.stem}.{os.getpid()}.tmp.npz")  # per process: workers may decode at once
        arrays = dict(name=raw.name, x_train=raw.x_train, y_train=raw.y_train, classes=np.array(raw.classes),
                      fingerprint=raw.fingerprint, pad=raw.defaults["crop_padding"], flip=raw.defaults["flip"])
        if raw.x_test is not None:
            arrays.update(x_test=raw.x_test, y_test=raw.y_test)
        np.savez(tmp, **arrays)
        os.replace(tmp, cfile)
    return raw
