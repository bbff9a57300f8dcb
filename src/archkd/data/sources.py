"""Dataset sources: each turns a user's reference into decoded uint8 arrays (or a file list to stream).

Why decode once: small-image datasets fit in memory as uint8 (CIFAR-10 is 150 MB), so decoding JPEGs or pickles every
epoch is waste. Decoded arrays are cached on disk keyed by the path, size and modification time of every file (a
single image replaced in place must not be served stale).

Here: ``open_source`` (the dispatch and the decoded cache) and ImageFolder directories and ``.zip``s with the limits on
one image file; these limits are read at call time from this module, so every check of a load (including streamed
reads in workers) applies the same values. Array sources are in ``arrays``, CIFAR batches in ``cifar``, image modes in
``pixels`` and ``RawData`` with the source keys in ``raw``; their names stay importable from here.
"""
from __future__ import annotations

import io
import os
import warnings
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np

from archkd.errors import ArchkdError, ArchkdWarning

from .arrays import from_torch_dataset, load_digits_source, load_npz
from .cifar import load_cifar_python
from .pixels import DECODE_VERSION, GRAY_MODES, SIXTEEN_BIT_MODES, _conversion_note, _convert, _native, _source_mode
from .raw import RawData, _fingerprint, _source_key, _walk_files

__all__ = ["IMAGE_EXTS", "MAX_IMAGE_BYTES", "MAX_COMPRESSION_RATIO", "MAX_IMAGE_PIXELS", "GRAY_MODES",
           "SIXTEEN_BIT_MODES", "DECODE_VERSION", "MODE_SAMPLE", "RawData", "load_digits_source", "load_cifar_python",
           "load_npz", "load_image_folder", "from_torch_dataset", "open_source"]

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
# Images whose modes are surveyed when a folder is streamed (decoding them all up front is what streaming avoids).
MODE_SAMPLE = 256


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
