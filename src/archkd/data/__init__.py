"""archkd.data — datasets as uint8 tensors with seeded, batched, on-device augmentation.

Contract:
- ``load_data(source, ...) -> DataBundle`` with ``train`` / ``val`` / ``test`` ``ImageSet``s, class names, input shape,
  an ``Augment`` and a ``Normalize``. Sources: ``"digits"`` (embedded), CIFAR python folders, ImageFolder dirs or
  ``.zip``s, ``.npz`` files, or any ``torch.utils.data.Dataset`` (``load_data(dataset_object)``).
- ``ImageSet.batches(...)`` yields ``(x_uint8, y, idx)`` on the device; ``idx`` are positions within the set, which
  key both augmentation and the teacher cache. In-memory sets live on the device; sets too large for memory stream
  from disk through a DataLoader with workers and yield exactly the same tuples.
- Augmentation of sample ``i`` at epoch ``e`` is a pure function of ``(seed, e, i)``.
- ``val`` is held out of the training data for searches; ``test`` is only for final reports.
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch

from archkd.config import AugmentConfig, DataConfig
from archkd.data.augment import Augment, Normalize, hash_uniform
from archkd.data.sources import RawData, from_torch_dataset, open_source
from archkd.device import default_cache_dir
from archkd.errors import ArchkdError, ArchkdWarning

__all__ = ["Augment", "Normalize", "ImageSet", "DataBundle", "load_data", "hash_uniform"]

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def epoch_order(indices: np.ndarray, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The order samples are visited in an epoch: a seeded permutation, the same for every run with that seed."""
    if not shuffle:
        return indices
    return indices[np.random.default_rng([seed, epoch, 7]).permutation(len(indices))]


class ImageSet:
    """A split: labels plus a way to produce uint8 image batches on a device."""

    def __init__(self, name: str, labels: np.ndarray, fingerprint: str) -> None:
        self.name = name
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.fingerprint = fingerprint

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, fraction: float, seed: int) -> np.ndarray:
        """A fixed seeded subset of sample positions (the data-fraction fidelity of a search)."""
        n = len(self)
        if not 0 < fraction <= 1:
            raise ArchkdError(f"data fraction {fraction} is out of range", "use a value in (0, 1]")
        if fraction >= 1:
            return np.arange(n)
        k = max(1, int(round(n * fraction)))
        return np.sort(np.random.default_rng([seed, 11]).permutation(n)[:k])

    def sample(self, n: int, seed: int) -> np.ndarray:
        """``n`` sample positions drawn at random (seeded), sorted: a fixed, class-mixed sample (image folders are
        sorted by class, so the first ``n`` would not be) for calibration and scoring."""
        return np.sort(np.random.default_rng(seed).permutation(len(self))[:max(0, n)])

    def batches(self, batch_size: int, *, device: torch.device, shuffle: bool = False, epoch: int = 0,
                seed: int = 0, indices: np.ndarray | None = None, drop_last: bool = False) -> Iterator[Batch]:
        raise NotImplementedError


class TensorImageSet(ImageSet):
    """Decoded images held in memory (moved once to the training device)."""

    def __init__(self, name: str, images: np.ndarray, labels: np.ndarray, fingerprint: str) -> None:
        super().__init__(name, labels, fingerprint)
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self._on: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = str(device)
        if key not in self._on:
            self._on = {key: (self.images.to(device), self.labels.to(device))}
        return self._on[key]

    def batches(self, batch_size: int, *, device: torch.device, shuffle: bool = False, epoch: int = 0,
                seed: int = 0, indices: np.ndarray | None = None, drop_last: bool = False) -> Iterator[Batch]:
        x, y = self.on(device)
        order = epoch_order(np.arange(len(self)) if indices is None else np.asarray(indices), seed, epoch, shuffle)
        stop = len(order) - (len(order) % batch_size if drop_last and len(order) > batch_size else 0)
        order_t = torch.as_tensor(order, device=device)
        for s in range(0, stop, batch_size):
            idx = order_t[s:s + batch_size]
            yield x[idx], y[idx], idx


class _StreamDataset(torch.utils.data.Dataset):
    def __init__(self, items: list[tuple[Any, int]], opener: Callable[[Any], np.ndarray]) -> None:
        self.items, self.opener = items, opener

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        name, y = self.items[i]
        return torch.from_numpy(self.opener(name)), y, i


class StreamingImageSet(ImageSet):
    """Images decoded from disk by DataLoader workers; augmentation still runs batched on the device."""

    def __init__(self, name: str, items: list[tuple[Any, int]], opener: Callable[[Any], np.ndarray],
                 fingerprint: str, num_workers: int = 2) -> None:
        super().__init__(name, np.array([y for _, y in items], dtype=np.int64), fingerprint)
        self.dataset = _StreamDataset(items, opener)
        self.num_workers = num_workers

    def batches(self, batch_size: int, *, device: torch.device, shuffle: bool = False, epoch: int = 0,
                seed: int = 0, indices: np.ndarray | None = None, drop_last: bool = False) -> Iterator[Batch]:
        order = epoch_order(np.arange(len(self)) if indices is None else np.asarray(indices), seed, epoch, shuffle)
        loader = torch.utils.data.DataLoader(self.dataset, batch_size=batch_size, sampler=order.tolist(),
                                             num_workers=self.num_workers, drop_last=drop_last,
                                             pin_memory=device.type == "cuda", persistent_workers=False)
        try:
            for x, y, idx in loader:
                yield (x.to(device, non_blocking=True), y.to(device, non_blocking=True), idx.to(device))
        except ArchkdError as e:
            raise _from_worker(e) from None

    def first_image(self) -> np.ndarray:
        return self.dataset[0][0].numpy()


def _from_worker(err: ArchkdError) -> ArchkdError:
    """A worker's ``ArchkdError`` (e.g. an undecodable image) as the one line it was raised with: the DataLoader
    re-raises it in this process as ``ArchkdError("Caught ArchkdError in DataLoader worker process 0.\\nOriginal
    Traceback ...")``, whose last line is ``archkd.errors.ArchkdError: <problem — fix>``."""
    text = str(err)
    if not text.startswith("Caught "):
        return err
    return ArchkdError(text.strip().splitlines()[-1].partition(": ")[2])


@dataclass
class DataBundle:
    """Everything a trainer needs about the data, and the keys that make the teacher cache exact."""

    name: str
    classes: list[str]
    input_shape: tuple[int, int, int]
    train: ImageSet
    val: ImageSet
    test: ImageSet | None
    augment: Augment
    normalize: Normalize
    fingerprint: str
    normalize_note: str | None = None  # set when the normalisation was estimated rather than given

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def describe(self) -> dict:
        return {"name": self.name, "num_classes": self.num_classes, "input_shape": list(self.input_shape),
                "train": len(self.train), "val": len(self.val), "test": len(self.test) if self.test else 0,
                "augment": self.augment.key(), "normalize": self.normalize.to_dict()}


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng([seed, 3]).permutation(n)
    k = int(round(n * fraction))
    return np.sort(perm[k:]), np.sort(perm[:k])


STATS_SAMPLE = 5000


def _stats(x: np.ndarray, idx: np.ndarray, seed: int) -> tuple[list[float], list[float], int]:
    """Per-channel mean/std over a seeded random sample of ``x[idx]`` (``STATS_SAMPLE`` images at most).

    Why random: image folders are read class by class, so the first N images may be two classes out of ten."""
    if len(idx) > STATS_SAMPLE:
        idx = np.sort(np.random.default_rng([seed, 5]).choice(idx, STATS_SAMPLE, replace=False))
    sample = x[idx].astype(np.float64) / 255.0
    std = [max(s, 1e-3) for s in sample.std(axis=(0, 2, 3)).tolist()]
    return sample.mean(axis=(0, 2, 3)).tolist(), std, len(idx)


def _channels(n: int) -> str:
    return {1: "1 channel (grayscale)", 3: "3 channels (RGB)"}.get(n, f"{n} channels")


def load_data(source: Any = "digits", cfg: DataConfig | None = None, *, seed: int = 0,
              cache_dir: str | None = None, mean: list[float] | None = None, std: list[float] | None = None,
              progress: Callable[[str, int], Any] | None = None, teacher: bool = True) -> DataBundle:
    """Open a data source and split it into train / val / test.

    ``mean``/``std`` set the normalisation (e.g. the teacher's); otherwise it is computed from the training images.
    ``teacher``: whether a teacher will read these inputs — the note on an estimated normalisation then advises giving
    the teacher's own; without one (training a teacher, fitting a predictor) it says the trained model records it.
    The val split is drawn with ``seed``; a held-out test split (when the source has none) always uses seed 0 so that
    test accuracy is comparable across runs.
    """
    cfg = cfg or DataConfig()
    if not 0 < cfg.val_fraction < 1:
        raise ArchkdError(f"data.val_fraction={cfg.val_fraction} is out of range", "use a value in (0, 1), e.g. 0.1")
    if isinstance(source, str):
        raw = open_source(source, cfg.image_size, cfg.max_in_memory_mb, cache_dir or default_cache_dir(), progress,
                          cfg.skip_corrupt)
    elif isinstance(source, RawData):
        raw = source
    elif hasattr(source, "__getitem__") and hasattr(source, "__len__"):
        raw = from_torch_dataset(source)
    else:
        raise ArchkdError(f"unsupported data source {type(source).__name__}",
                          "pass a path, 'digits', or a torch.utils.data.Dataset")
    streaming = raw.x_train is None
    n_all = len(raw.y_train)
    if n_all < 10:
        raise ArchkdError(f"dataset {raw.name} has only {n_all} training samples", "provide at least 10 images")
    test_idx = None
    pool = np.arange(n_all)
    if raw.y_test is None:
        pool, test_idx = _split(n_all, cfg.test_fraction, 0)
    tr_rel, va_rel = _split(len(pool), cfg.val_fraction, seed)
    tr, va = pool[tr_rel], pool[va_rel]
    fp = hashlib.sha256(f"{raw.fingerprint}|{cfg.val_fraction}|{cfg.test_fraction}|{seed}".encode()).hexdigest()[:16]

    def make(name: str, idx: np.ndarray, test: bool = False) -> ImageSet:
        if streaming:
            items = raw.stream_test if test else [raw.stream_train[i] for i in idx]
            return StreamingImageSet(name, items, raw.opener, f"{fp}-{name}", cfg.num_workers)
        if test:
            return TensorImageSet(name, raw.x_test, raw.y_test, f"{fp}-{name}")
        return TensorImageSet(name, raw.x_train[idx], raw.y_train[idx], f"{fp}-{name}")

    train, val = make("train", tr), make("val", va)
    if raw.y_test is not None:
        test = make("test", np.arange(len(raw.y_test)), test=True)
    else:
        test = make("test", test_idx)
    first = train.first_image() if streaming else raw.x_train[0]
    input_shape = tuple(int(s) for s in first.shape)
    aug_cfg = cfg.augment or AugmentConfig()
    pad = aug_cfg.crop_padding if aug_cfg.crop_padding is not None else raw.defaults.get("crop_padding", 0)
    flip = aug_cfg.flip if aug_cfg.flip is not None else raw.defaults.get("flip", False)
    note = None
    how = ("give the teacher's own with teacher.mean=[...] teacher.std=[...]" if teacher else
           "the trained model's checkpoint records it; set it with teacher.mean=[...] teacher.std=[...]")
    if mean is None or std is None:
        if streaming:
            mean, std = [0.485, 0.456, 0.406][: input_shape[0]], [0.229, 0.224, 0.225][: input_shape[0]]
            note = f"normalisation: ImageNet's mean/std (data too large to scan) — {how}"
        else:
            mean, std, k = _stats(raw.x_train, tr, seed)
            note = (f"normalisation estimated from a seeded random sample of {k:,} of {len(tr):,} training images: "
                    f"mean {_fmt(mean)}, std {_fmt(std)} — {how}")
    for what, v in (("mean", mean), ("std", std)):
        if len(v) != input_shape[0]:
            raise ArchkdError(f"the teacher's normalisation is for {_channels(len(v))} but the data has "
                              f"{_channels(input_shape[0])}", f"give data with {_channels(len(v))} for this teacher, "
                              f"or set teacher.{what} with {input_shape[0]} value(s) if the teacher takes such input")
    _check_test_classes(raw, test)
    return DataBundle(raw.name, raw.classes, input_shape, train, val, test,
                      Augment(int(pad), bool(flip), int(aug_cfg.cutout), int(aug_cfg.randaug_ops),
                              int(aug_cfg.randaug_magnitude)), Normalize(mean, std), fp, note)


def _fmt(v: list[float]) -> str:
    return "[" + ", ".join(f"{x:.4f}" for x in v) + "]"


def _check_test_classes(raw: RawData, test: ImageSet) -> None:
    """A test split without some class gives an accuracy that silently ignores it: say which classes are missing."""
    missing = sorted(set(np.unique(raw.y_train).tolist()) - set(np.unique(test.labels.numpy()).tolist()))
    if missing:
        names = ", ".join(repr(raw.classes[i]) for i in missing[:5]) + (" ..." if len(missing) > 5 else "")
        warnings.warn(f"the test split has no images of {len(missing)} of {len(raw.classes)} classes ({names}); "
                      "test accuracy does not cover them — add test images of every class", ArchkdWarning,
                      stacklevel=3)
