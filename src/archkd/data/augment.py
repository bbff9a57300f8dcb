"""Batched, counter-based augmentation.

Why counter-based: the crop offset, flip, cutout square and policy ops of sample ``i`` at epoch ``e`` are a pure
function of ``(seed, epoch, i)`` (a SplitMix64 hash), independent of batch composition, device and worker count. That
is what lets the teacher-output cache reuse a logit computed in one trial for the identical view seen in another.

The policy (``randaug_ops`` = N > 0, written from RandAugment's description: N ops drawn uniformly per image, one
magnitude M of 30 for all) applies, before the crop, N of the ops that are cheap on a uint8 batch: ``identity``,
``autocontrast``, ``brightness``, ``contrast``, ``solarize``, ``posterize``, ``translate_x``, ``translate_y`` and
``rotate``, each with a random sign where it has one. Its N and M are part of the augmentation's key, so cached teacher
outputs of one policy never serve another.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)


def _splitmix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + _GOLD
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def hash_uniform(seed: int, epoch: int, index: np.ndarray, stream: int) -> np.ndarray:
    """Uniform [0, 1) numbers, one per index, from the hash of (seed, epoch, index, stream)."""
    idx = np.asarray(index, dtype=np.uint64)
    with np.errstate(over="ignore"):
        key = _splitmix(np.full(idx.shape, seed, dtype=np.uint64) * np.uint64(1_000_003) + np.uint64(stream))
        key = _splitmix(key ^ (np.uint64(epoch) * _GOLD))
        h = _splitmix(key ^ idx)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


@dataclass(frozen=True)
class Augment:
    """Random crop with zero padding, horizontal flip and optional cutout, applied to a uint8 batch on its device."""

    crop_padding: int = 0
    flip: bool = False
    cutout: int = 0
    randaug_ops: int = 0  # N ops of the policy per image (0: off)
    randaug_magnitude: int = 9  # M of 30

    @property
    def is_identity(self) -> bool:
        return self.crop_padding == 0 and not self.flip and self.cutout == 0 and self.randaug_ops == 0

    def key(self) -> str:
        base = f"pad{self.crop_padding}-flip{int(self.flip)}-cut{self.cutout}"
        return base + (f"-ra{self.randaug_ops}m{self.randaug_magnitude}" if self.randaug_ops else "")

    def params(self, seed: int, epoch: int, index: np.ndarray, h: int, w: int) -> dict[str, np.ndarray]:
        """The per-sample parameters; exposed so tests can check they depend only on (seed, epoch, i)."""
        p = self.crop_padding
        out = {
            "dy": np.floor(hash_uniform(seed, epoch, index, 1) * (2 * p + 1)).astype(np.int64),
            "dx": np.floor(hash_uniform(seed, epoch, index, 2) * (2 * p + 1)).astype(np.int64),
            "flip": hash_uniform(seed, epoch, index, 3) < (0.5 if self.flip else 0.0),
        }
        if self.cutout:
            out["cy"] = np.floor(hash_uniform(seed, epoch, index, 4) * h).astype(np.int64)
            out["cx"] = np.floor(hash_uniform(seed, epoch, index, 5) * w).astype(np.int64)
        for j in range(self.randaug_ops):  # streams 10+: op j's choice and sign
            out[f"op{j}"] = np.floor(hash_uniform(seed, epoch, index, 10 + 2 * j) * len(OPS)).astype(np.int64)
            out[f"sign{j}"] = np.where(hash_uniform(seed, epoch, index, 11 + 2 * j) < 0.5, -1.0, 1.0)
        return out

    def __call__(self, x: torch.Tensor, index: torch.Tensor | np.ndarray, epoch: int, seed: int) -> torch.Tensor:
        """Augment ``x`` (N, C, H, W, any dtype) whose rows are samples ``index`` of the training set."""
        if self.is_identity:
            return x
        n, c, h, w = x.shape
        idx = index.cpu().numpy() if isinstance(index, torch.Tensor) else np.asarray(index)
        prm = self.params(seed, epoch, idx, h, w)
        dev = x.device
        for j in range(self.randaug_ops):
            x = policy_step(x, prm[f"op{j}"], prm[f"sign{j}"], self.randaug_magnitude / 30.0)
        if self.crop_padding:
            p = self.crop_padding
            xp = F.pad(x, (p, p, p, p))
            rows = torch.as_tensor(prm["dy"], device=dev)[:, None] + torch.arange(h, device=dev)[None, :]
            cols = torch.as_tensor(prm["dx"], device=dev)[:, None] + torch.arange(w, device=dev)[None, :]
            x = xp[torch.arange(n, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
                   rows[:, None, :, None], cols[:, None, None, :]]
        if self.flip:
            f = torch.as_tensor(prm["flip"], device=dev)[:, None, None, None]
            x = torch.where(f, x.flip(3), x)
        if self.cutout:
            half = self.cutout // 2
            ys = torch.arange(h, device=dev)[None, :, None]
            xs = torch.arange(w, device=dev)[None, None, :]
            cy = torch.as_tensor(prm["cy"], device=dev)[:, None, None]
            cx = torch.as_tensor(prm["cx"], device=dev)[:, None, None]
            hole = ((ys - cy).abs() <= half) & ((xs - cx).abs() <= half)
            x = x.masked_fill(hole[:, None], 0)
        return x.contiguous()


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """``x`` resampled through the per-image 2×3 affine maps ``theta`` (nearest, zeros outside), dtype kept."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False).to(x.dtype)


def _op(name: str, x: torch.Tensor, sign: torch.Tensor, m: float) -> torch.Tensor:
    """One policy op on a uint8-valued batch (any dtype holding 0..255) at magnitude ``m`` in [0, 1]."""
    xf = x.float()
    s = sign.view(-1, 1, 1, 1)
    if name == "autocontrast":
        lo = xf.amin(dim=(2, 3), keepdim=True)
        hi = xf.amax(dim=(2, 3), keepdim=True)
        out = (xf - lo) * 255.0 / (hi - lo).clamp(min=1.0)
    elif name == "brightness":
        out = xf * (1.0 + 0.9 * m * s)
    elif name == "contrast":
        mean = xf.mean(dim=(1, 2, 3), keepdim=True)
        out = mean + (xf - mean) * (1.0 + 0.9 * m * s)
    elif name == "solarize":
        out = torch.where(xf >= 256.0 * (1.0 - m), 255.0 - xf, xf)
    elif name == "posterize":
        keep = 8 - int(round(4 * m))
        out = torch.floor(xf / 2 ** (8 - keep)) * 2 ** (8 - keep)
    elif name in ("translate_x", "translate_y", "rotate"):
        n = x.shape[0]
        theta = torch.zeros(n, 2, 3, device=x.device)
        if name == "rotate":
            a = torch.deg2rad(30.0 * m * sign.to(x.device).float())
            theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = a.cos(), -a.sin(), a.sin(), a.cos()
        else:
            theta[:, 0, 0] = theta[:, 1, 1] = 1.0
            theta[:, 0 if name == "translate_x" else 1, 2] = 2 * 0.45 * m * sign.to(x.device).float()
        return _affine(x, theta)
    else:  # identity
        return x
    return out.round().clamp(0, 255).to(x.dtype)


OPS = ("identity", "autocontrast", "brightness", "contrast", "solarize", "posterize", "translate_x", "translate_y",
       "rotate")


def policy_step(x: torch.Tensor, ops: np.ndarray, signs: np.ndarray, m: float) -> torch.Tensor:
    """Apply to each image the op ``OPS[ops[i]]`` (sign ``signs[i]``): the images of one op are transformed together."""
    out = x.clone()
    for k, name in enumerate(OPS):
        rows = np.nonzero(ops == k)[0]
        if len(rows) and name != "identity":
            r = torch.as_tensor(rows, device=x.device)
            out[r] = _op(name, x[r], torch.as_tensor(signs[rows], device=x.device, dtype=torch.float32), m)
    return out


class Normalize:
    """uint8 -> float in [0, 1] -> (x - mean) / std, on the batch's device."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        m = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        s = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x.float().div_(255.0) - m) / s

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "scale": "uint8/255"}
