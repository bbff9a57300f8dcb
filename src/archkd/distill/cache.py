"""Teacher-output cache shared by every student trained on the same data, augmentation and seed.

Why it is exact: augmentation of sample ``i`` at epoch ``e`` is a pure function of ``(seed, e, i)``, so the teacher's
logits for that view are too. They are computed once, stored as fp16 per epoch (``[N, C]`` plus a filled mask), and
reused by every later trial of a search and by later runs. The key hashes the teacher's weights, the data split,
the augmentation, the normalisation and the seed, so a changed teacher or recipe can never read stale logits.
Files are written atomically with a SHA-256 of their content; a corrupt file is discarded and recomputed.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from archkd.distill.checkpoint import atomic_save
from archkd.errors import ArchkdError, ArchkdWarning

if TYPE_CHECKING:
    from archkd.data import DataBundle


PRECISIONS = ("fp32", "bf16")


def cache_precision(amp: bool) -> str:
    """The precision tag of teacher logits computed with (bf16 autocast) or without mixed precision."""
    return "bf16" if amp else "fp32"


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().cpu().numpy().tobytes()).hexdigest()


class TeacherCache:
    """Per-(epoch | "val") logit tables for one (teacher, data, augmentation, seed) combination."""

    def __init__(self, root: str | Path, *, teacher_hash: str, data_fingerprint: str, augment_key: str,
                 normalize_key: str, seed: int, n_train: int, n_val: int, num_classes: int,
                 precision: str = "fp32") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        # precision is always part of the key: caches written before it was recorded may hold bf16 logits (CUDA runs
        # autocast by default), so they are recomputed once rather than served as fp32
        key = json.dumps([teacher_hash, data_fingerprint, augment_key, normalize_key, seed, n_train, num_classes,
                          precision])
        self.key = hashlib.sha256(key.encode()).hexdigest()[:20]
        self.seed = int(seed)
        self.augment_key = augment_key
        self.precision = precision
        self.dir = Path(root) / "teacher_logits" / self.key
        self._inputs = dict(root=root, teacher_hash=teacher_hash, data_fingerprint=data_fingerprint,
                            augment_key=augment_key, normalize_key=normalize_key, seed=seed, n_train=n_train,
                            n_val=n_val, num_classes=num_classes)
        self.sizes = {"train": n_train, "val": n_val}
        self.num_classes = num_classes
        self._tables: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._dirty: set[str] = set()
        self.hits = 0
        self.misses = 0

    def at_precision(self, precision: str) -> TeacherCache:
        """The cache of the same teacher views computed in ``precision``: a training whose teacher runs in another
        precision than the caller built this cache for (``fit`` tunes it) reads and fills that one instead."""
        return self if precision == self.precision else TeacherCache(**self._inputs, precision=precision)

    def check_serves(self, seed: int, augment_key: str, precision: str) -> None:
        """Refuse a run whose teacher views differ from the ones cached: its logits would be silently wrong."""
        if (seed, augment_key, precision) != (self.seed, self.augment_key, self.precision):
            raise ArchkdError(f"teacher cache was built for seed {self.seed} / augmentation {self.augment_key} / "
                              f"{self.precision} logits but training uses seed {seed} / {augment_key} / {precision}",
                              "build the TeacherCache with fit()'s seed, data.augment.key() and "
                              "precision=cache_precision(amp)")

    def _path(self, tag: str) -> Path:
        return self.dir / f"{tag}.pt"

    def _load(self, tag: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        p = self._path(tag)
        if p.exists():
            try:
                d = torch.load(p, weights_only=True)
                if d["logits"].shape == (n, self.num_classes) and _digest(d["logits"]) == d["sha256"]:
                    return d["logits"], d["filled"]
                warnings.warn(f"teacher cache {p} failed its integrity check; recomputing its logits", ArchkdWarning,
                              stacklevel=2)
            except Exception as e:  # noqa: BLE001 - a damaged cache file is recomputed, never fatal
                why = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
                warnings.warn(f"teacher cache {p} is unreadable ({why}); recomputing its logits", ArchkdWarning,
                              stacklevel=2)
            p.unlink(missing_ok=True)
        return torch.zeros(n, self.num_classes, dtype=torch.float16), torch.zeros(n, dtype=torch.bool)

    def table(self, tag: str) -> tuple[torch.Tensor, torch.Tensor]:
        if tag not in self._tables:
            self.flush()
            self._tables = {tag: self._load(tag, self.sizes["val" if tag == "val" else "train"])}
        return self._tables[tag]

    def lookup(self, tag: str, idx: torch.Tensor, compute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Teacher logits (fp32, on ``idx``'s device) for samples ``idx``; ``compute(mask)`` fills the misses.

        ``compute`` receives a boolean mask over the batch rows that need the teacher and returns their logits.
        """
        logits, filled = self.table(tag)
        cpu_idx = idx.cpu()
        have = filled[cpu_idx]
        if not bool(have.all()):
            need = ~have
            fresh = compute(need.to(idx.device)).detach()
            logits[cpu_idx[need]] = fresh.to("cpu", torch.float16)
            filled[cpu_idx[need]] = True
            self._dirty.add(tag)
            self.misses += int(need.sum())
        self.hits += int(have.sum())
        return logits[cpu_idx].to(idx.device, torch.float32, non_blocking=True)

    def flush(self) -> None:
        """Write dirty tables atomically (tmp file + rename), each with the SHA-256 of its logits."""
        for tag in list(self._dirty):
            logits, filled = self._tables[tag]
            atomic_save({"logits": logits, "filled": filled, "sha256": _digest(logits)}, self._path(tag))
        self._dirty.clear()

    def stats(self) -> dict:
        total = self.hits + self.misses
        return {"hits": self.hits, "misses": self.misses, "hit_rate": self.hits / total if total else 0.0,
                "dir": str(self.dir)}


def teacher_cache(root: str | Path, teacher_fingerprint: str, data: "DataBundle", seed: int,
                  precision: str) -> TeacherCache:
    """The cache of one teacher's logits on ``data``: keyed by everything that decides those logits (the teacher,
    the data split and its augmentation and normalisation, the seed, the sizes, the precision they are computed in)."""
    return TeacherCache(root, teacher_hash=teacher_fingerprint, data_fingerprint=data.fingerprint,
                        augment_key=data.augment.key(), normalize_key=str(data.normalize.to_dict()), seed=seed,
                        n_train=len(data.train), n_val=len(data.val), num_classes=data.num_classes,
                        precision=precision)
