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
import stat
import warnings
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from archkd.errors import ArchkdError, ArchkdWarning

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")

# Limits on one image file. Why: a dataset is untrusted input, and archkd shrinks every image to data.image_size
# (usually tens of pixels) anyway, so nothing near these sizes is a useful training image, only a mistake or an attack.
# 64 MiB of encoded bytes is more than any camera's JPEG or an 8192² PNG; a zip member is checked against it from its
# header before a byte is inflated, and read with a bounded read, so a 1.6 MB zip cannot expand to 1.5 GB in memory.
MAX_IMAGE_BYTES = 64 * 2**20
# A zip member over 1 MiB that inflates more than this many times is a zip bomb: deflate cannot exceed ~1032:1, and
# real images (already compressed, or photos in BMP/TIFF) stay far below it.
MAX_COMPRESSION_RATIO = 1000
# 64 Mi pixels (8192×8192) holds any camera photo up to 64 MP; decoding one costs up to 256 MiB (4 bytes a pixel for
# RGBA or 16-bit) per decoding process. Checked from the header, before the pixels are decoded. Below PIL's own bomb
# threshold (~89 M pixels), so PIL's DecompressionBombWarning never fires on an image archkd accepts.
MAX_IMAGE_PIXELS = 64 * 2**20
# Modes whose first image makes an image folder grayscale (1 channel); any other mode makes it RGB.
GRAY_MODES = ("L", "1", "I", "I;16", "I;16L", "I;16B", "I;16N")
# Integer modes holding 16-bit samples (PNG decodes 16-bit grayscale to "I;16", older PIL to "I"): scaled to 8 bits.
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")
# Bumped whenever decoding changes the pixels a file yields (v2: 16-bit scaling), so that decoded caches and data
# fingerprints (which key the teacher cache) built by an older decoder are not reused.
DECODE_VERSION = 2
# Images whose modes are surveyed when a folder is streamed (decoding them all up front is what streaming avoids).
MODE_SAMPLE = 256


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


def _open(data: bytes, where: str) -> Any:
    """Open an image (header only) and refuse one over ``MAX_IMAGE_PIXELS`` before its pixels are decoded.

    PIL's own DecompressionBombWarning (a raw multi-line warning) is silenced here, and its DecompressionBombError
    (over twice PIL's limit) becomes the same one-line error: both only concern images over archkd's lower limit."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            raise _too_many_pixels(where, f"over {2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels") from None
    w, h = im.size
    if w * h > MAX_IMAGE_PIXELS:
        im.close()
        raise _too_many_pixels(where, f"{w}×{h} = {w * h:,} pixels")
    return im


def _too_many_pixels(where: str, how_big: str) -> ArchkdError:
    return ArchkdError(f"image {where} is {how_big}, over the limit of {MAX_IMAGE_PIXELS:,} pixels",
                       "resize the images first (archkd shrinks them to data.image_size anyway), or remove this one")


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


def _decode(data: bytes, mode: str, size: int | None, where: str) -> tuple[np.ndarray, str | None]:
    """The image as uint8 CHW in ``mode``, resized and centre-cropped to ``size``; and its original mode when it was
    converted (for the one warning per dataset), else None."""
    from PIL import Image

    with _open(data, where) as src:
        source_mode = _source_mode(src)
        im = _convert(src, mode)
        if size is not None and im.size != (size, size):
            w, h = im.size
            s = size / min(w, h)
            im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            im = im.crop((left, top, left + size, top + size))
        a = np.array(im, dtype=np.uint8)
    chw = np.ascontiguousarray(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    return chw, None if _native(source_mode, mode) else source_mode


class _Reader:
    """Reads image bytes from a folder or a zip; picklable so DataLoader workers can stream from it.

    No read returns more than ``MAX_IMAGE_BYTES``: a zip member is checked against it (and against
    ``MAX_COMPRESSION_RATIO``) from its header before it is inflated, a file from its size, and both are then read with
    a bounded read, so a header that lies about the size cannot make a read allocate more either."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.is_zip = root.suffix.lower() == ".zip"
        self._zip: zipfile.ZipFile | None = None

    def names(self) -> list[str]:
        if self.is_zip:
            with zipfile.ZipFile(self.root) as z:
                return [i.filename for i in z.infolist() if not i.is_dir()]
        return [rel for rel, _ in _walk_files(self.root)]

    def read(self, name: str) -> bytes:
        if self.is_zip:
            if self._zip is None:
                self._zip = zipfile.ZipFile(self.root)
            info = self._zip.getinfo(name)
            self._check_member(info)
            with self._zip.open(info) as f:
                data = f.read(MAX_IMAGE_BYTES + 1)
        else:
            with open(self.root / name, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > MAX_IMAGE_BYTES:
                    raise self._too_large(name, f"{size:,} bytes")
                data = f.read(MAX_IMAGE_BYTES + 1)
        if len(data) > MAX_IMAGE_BYTES:
            raise self._too_large(name, f"more than {MAX_IMAGE_BYTES:,} bytes")
        return data

    def _check_member(self, info: zipfile.ZipInfo) -> None:
        """Refuse a member from its header alone, before a byte of it is inflated."""
        if info.file_size > MAX_IMAGE_BYTES:
            raise self._too_large(info.filename, f"{info.file_size:,} bytes uncompressed")
        if info.file_size > 2**20 and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            raise ArchkdError(f"{self.root} member {info.filename} inflates {info.compress_size:,} → "
                              f"{info.file_size:,} bytes, over {MAX_COMPRESSION_RATIO}:1, which no image does "
                              "(a zip bomb?)", "remove it from the archive, or re-create the archive from the images")

    def _too_large(self, name: str, how_big: str) -> ArchkdError:
        where = f"{self.root} member {name}" if self.is_zip else str(self.root / name)
        return ArchkdError(f"image {where} is {how_big}, over the limit of {MAX_IMAGE_BYTES:,} bytes per image",
                           "remove it, or resize it first (archkd shrinks images to data.image_size anyway)")

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


def _survey_modes(reader: _Reader, items: list[tuple[str, int]], mode: str, path: Path) -> str | None:
    """The conversion warning of a streamed dataset, from the headers of ``MODE_SAMPLE`` evenly spaced images: its
    images are decoded in DataLoader workers, batch by batch and epoch after epoch, where a warning would repeat and
    bypass the one-line format, so the mix of modes is told once, up front, from a sample."""
    sample = items[:: max(1, len(items) // MODE_SAMPLE)][:MODE_SAMPLE]
    converted: Counter[str] = Counter()
    for n, _ in sample:
        try:
            with _open(reader.read(n), str(path / n)) as im:
                source_mode = _source_mode(im)
        except ArchkdError:
            raise
        except Exception:  # noqa: BLE001, S112 - a damaged file fails when it is streamed, as documented
            continue
        if not _native(source_mode, mode):
            converted[source_mode] += 1
    return _conversion_note(path, mode, converted, len(sample), len(items) if len(sample) < len(items) else None)


def load_image_folder(path: Path, image_size: int | None, max_in_memory_mb: int,
                      progress: Callable[[str, int], Any] | None = None, skip_corrupt: bool = False) -> RawData:
    """ImageFolder layout (``[train|test]/<class>/<image>``), as a directory or a ``.zip``.

    A file that does not decode is an error naming it, or with ``skip_corrupt`` a warning and the file is left out
    (of in-memory data; a streamed set fails on the file when it is read). A file over the size or pixel limits
    (``MAX_IMAGE_BYTES``, ``MAX_IMAGE_PIXELS``) is always an error: it is not damaged, and skipping it would hide
    that the data holds images archkd will not decode.

    The first image that opens decides the dataset's mode (grayscale or RGB); images in other modes are converted
    (see ``_convert``) and one ``ArchkdWarning`` per load counts them by mode — for a streamed set, in a sample."""
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
            first = _open(reader.read(n), str(path / n))
            break
        except ArchkdError:
            raise
        except Exception as e:  # noqa: BLE001 - PIL raises many types for a damaged file
            _corrupt(path, n, e, skip_corrupt)
    if first is None:
        raise ArchkdError(f"no training image in {path} can be decoded", "check the files are images")
    mode = "L" if first.mode in GRAY_MODES else "RGB"
    size = image_size or (first.size[0] if first.size[0] == first.size[1] else min(first.size))
    chans = 1 if mode == "L" else 3
    fp = _fingerprint(_source_key(path), size, mode, skip_corrupt, DECODE_VERSION)
    est_mb = (len(train) + len(test)) * chans * size * size / 2**20
    defaults = {"crop_padding": max(1, size // 8), "flip": True}
    items_tr = [(n, cidx[c]) for n, c in train]
    items_te = [(n, cidx[c]) for n, c in test]
    if est_mb > max_in_memory_mb:
        note = _survey_modes(reader, items_tr + items_te, mode, path)
        if note:
            warnings.warn(note, ArchkdWarning, stacklevel=2)
        return RawData(path.stem, None, np.array([y for _, y in items_tr], dtype=np.int64), None,
                       np.array([y for _, y in items_te], dtype=np.int64) if items_te else None, classes, fp, defaults,
                       stream_train=items_tr, stream_test=items_te or None,
                       opener=_StreamOpener(reader, mode, size), conversion_note=note)
    converted: Counter[str] = Counter()

    def decode_all(items: list[tuple[str, int]], label: str) -> tuple[np.ndarray, np.ndarray]:
        out = np.empty((len(items), chans, size, size), dtype=np.uint8)
        kept = np.ones(len(items), dtype=bool)
        for k, (n, _) in enumerate(items):
            try:
                out[k], source_mode = _decode(reader.read(n), mode, size, str(path / n))
                if source_mode is not None:
                    converted[source_mode] += 1
            except ArchkdError:
                raise
            except Exception as e:  # noqa: BLE001 - PIL raises many types for a damaged file
                _corrupt(path, n, e, skip_corrupt)
                kept[k] = False
            if progress and (k % 2000 == 0 or k == len(items) - 1):
                progress(f"decoding {label}", k + 1)
        return out[kept], np.array([y for _, y in items], dtype=np.int64)[kept]

    x_tr, y_tr = decode_all(items_tr, "train")
    x_te, y_te = decode_all(items_te, "test") if items_te else (None, None)
    note = _conversion_note(path, mode, converted, len(x_tr) + (0 if x_te is None else len(x_te)))
    if note:
        warnings.warn(note, ArchkdWarning, stacklevel=2)
    return RawData(path.stem, x_tr, y_tr, x_te, y_te, classes, fp, defaults, conversion_note=note)


class _StreamOpener:
    """Decodes one streamed image exactly as the in-memory path does (same ``_decode``), without a warning: the
    conversions were told once at load time (``_survey_modes``)."""

    def __init__(self, reader: _Reader, mode: str, size: int) -> None:
        self.reader, self.mode, self.size = reader, mode, size

    def __call__(self, name: str) -> np.ndarray:
        try:
            return _decode(self.reader.read(name), self.mode, self.size, str(self.reader.root / name))[0]
        except ArchkdError:
            raise
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
    """``load_image_folder`` through the decoded cache; a cache hit repeats the load's conversion warning, so that every
    load of a mixed-mode dataset says so, not only the first."""
    key = _fingerprint(_source_key(path), image_size, skip_corrupt, DECODE_VERSION)
    cfile = Path(cache_dir) / "decoded" / f"{path.stem}-{key}.npz" if cache_dir else None
    if cfile is not None and cfile.exists():
        try:
            z = np.load(cfile, allow_pickle=False)
            raw = RawData(str(z["name"]), z["x_train"], z["y_train"], z["x_test"] if "x_test" in z.files else None,
                          z["y_test"] if "y_test" in z.files else None, [str(c) for c in z["classes"]],
                          str(z["fingerprint"]), {"crop_padding": int(z["pad"]), "flip": bool(z["flip"])},
                          conversion_note=str(z["conversion_note"]) if "conversion_note" in z.files else None)
        except Exception:  # noqa: BLE001 - a corrupt cache is rebuilt, never fatal
            cfile.unlink(missing_ok=True)
        else:
            if raw.conversion_note:
                warnings.warn(raw.conversion_note, ArchkdWarning, stacklevel=2)
            return raw
    raw = load_image_folder(path, image_size, max_mb, progress, skip_corrupt)
    if cfile is not None and raw.x_train is not None:
        cfile.parent.mkdir(parents=True, exist_ok=True)
        tmp = cfile.with_name(f"{cfile.stem}.{os.getpid()}.tmp.npz")  # per process: workers may decode at once
        arrays = dict(name=raw.name, x_train=raw.x_train, y_train=raw.y_train, classes=np.array(raw.classes),
                      fingerprint=raw.fingerprint, pad=raw.defaults["crop_padding"], flip=raw.defaults["flip"])
        if raw.x_test is not None:
            arrays.update(x_test=raw.x_test, y_test=raw.y_test)
        if raw.conversion_note:
            arrays.update(conversion_note=raw.conversion_note)
        np.savez(tmp, **arrays)
        os.replace(tmp, cfile)
    return raw
