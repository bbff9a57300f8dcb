"""The ``multifamily`` space: TRADE's student space — a family choice, each family with size knobs of its own.

What: TRADE (Kim et al., ICML 2022 HAET workshop) searches students "from several state-of-the-art architectures",
where AKD's space holds only convolutional blocks. A categorical ``family`` picks the architecture and every family's
knobs are conditional dimensions ``<family>_<knob>`` (``when=("family", (family,))``), so a sampler sees only the
chosen family's knobs; ``families=(...)`` restricts the choice. Dimensions (parameters at 3x32x32, 10 classes):

==================  =================================================================  ===================
family (model)      knobs                                                              parameters
==================  =================================================================  ===================
resnet_basic        depth 1-3 blocks/stage; width 4-48 step 4 (stages w, 2w, 4w)       5.2k - 2.44M
(``resnet``)
resnet_bottleneck   depth 1-3; width 4-40 step 4 (bottlenecks w, 2w, 4w; outputs 4x)  9.0k - 1.93M
(``resnet``)
mobilenetv2         depth mult {.25, .5, .75, 1}; width mult {.1, .25, .35, .5, .75, 1};  11.6k - 2.24M
                    expansion 2-6; final conv 4x the last row (1280 at width 1)
shufflenetv2        depth 1-3 (basic units d, 2d, d); width 8-128 step 8                7.0k - 1.44M
                    (stages c, 2c, 4c, final conv 8c)
vit                 depth 3-8 blocks; dim 24-160 step 8; heads {1, 2, 4};               19.8k - 2.68M
                    mlp_ratio {2, 4}; patch {2, 4, 8}
mixer               depth 3-8 blocks; dim 24-160 step 8; mlp_ratio {2, 4};              15.9k - 2.04M
                    patch {2, 4, 8}
==================  =================================================================  ===================

Why these ranges: every family's smallest member is tiny and its largest is 1-3 M parameters (at 1x8x8 too), so
parameter budgets from 30k to 1M leave feasible choices in every family, on digits as on CIFAR
(``tests/test_multifamily.py`` checks it). Widths and depths are integer (ordinal) dimensions wherever the model
takes any value, so model-based samplers (TPE, trust-region BO) can exploit their order; the published multipliers
of MobileNetV2 and the few ViT/Mixer ratios stay categorical. ViT/Mixer depth starts at 3 so that they always expose
three stage taps, and their width at 24 so that no token network undercuts the smallest ResNet (see ``smallest``).

Input size (``Geometry``, one rule for every family; the spec carries its results — stem stride, strides, patch,
``img_size`` — so ``build_from_spec`` rebuilds the exact network):

- stem stride 1 below 64 px, 2 below 128 px, else 4 (224 px -> 56x56 after the stem, like ImageNet stems);
- at most ``min(3, ⌊log2(side / 2)⌋)`` stride-2 stages after the stem, the *earliest* ones turned to stride 1 (the
  CIFAR adaptation of MobileNetV2, generalised): an 8x8 digit is downsampled twice, to 2x2, never to 1x1;
- ViT / Mixer ``patch`` is the patch size *at 32 px*; the patch conv after the stem is
  ``max(1, round(patch · side / 32))``, so the token grids are 16/8/4 per side at 32 and 224 px (8/8/4 at 8 px).

``smallest()``: parameter counts are non-decreasing in every knob except the patch size (a larger patch shrinks the
position embedding / token-mixing MLP but grows the patch conv), so a family's minimum is its knobs' low ends, with
every patch choice tried. Those few members are built and counted at the reference input (3x32x32, 10 classes) and
the smallest wins: ``resnet_basic`` depth 1, width 4 (5.2k parameters; also the smallest at 1x8x8 and 3x224x224).
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from archkd.errors import ArchkdError
from archkd.measure.counting import count_params
from archkd.models.mobilenetv2 import make_divisible
from archkd.spaces import CategoricalDim, Dim, IntDim, SearchSpace, register_space

REFERENCE_SHAPE = (3, 32, 32)  # input on which smallest() counts parameters
REFERENCE_CLASSES = 10
MAX_DOWNSAMPLES = 3


@dataclass(frozen=True)
class Geometry:
    """How an input size shapes every family: stem stride, stride-2 stages allowed, patch scaling."""

    in_channels: int
    height: int
    width: int

    @classmethod
    def of(cls, input_shape: Sequence[int]) -> "Geometry":
        if len(input_shape) != 3 or min(int(v) for v in input_shape) < 1:
            raise ArchkdError(f"space 'multifamily' needs an input shape (C, H, W), got {tuple(input_shape)}",
                              "pass the data's input_shape, e.g. (3, 32, 32)")
        return cls(*(int(v) for v in input_shape))

    @property
    def stem_stride(self) -> int:
        side = min(self.height, self.width)
        return 1 if side < 64 else 2 if side < 128 else 4

    @property
    def side(self) -> int:
        """The shorter side after the stem."""
        return math.ceil(min(self.height, self.width) / self.stem_stride)

    def strides(self, default: Sequence[int]) -> list[int]:
        """``default`` stage strides with the earliest stride-2 entries set to 1 until at most
        ``min(3, ⌊log2(side / 2)⌋)`` remain."""
        allowed = max(0, min(MAX_DOWNSAMPLES, int(math.floor(math.log2(self.side / 2)))))
        out = list(default)
        excess = out.count(2) - allowed
        for i, s in enumerate(out):
            if excess > 0 and s == 2:
                out[i], excess = 1, excess - 1
        return out

    def patch(self, patch_at_32: int) -> int:
        """Patch conv size after the stem for a patch size given at 32 px (round half up, at least 1)."""
        return max(1, int(math.floor(patch_at_32 * self.side / 32 + 0.5)))

    def stem(self) -> dict[str, Any]:
        return {"stem_stride": self.stem_stride}

    def tokens(self, patch_at_32: int) -> dict[str, Any]:
        return {"patch": self.patch(patch_at_32), "stem_stride": self.stem_stride,
                "img_size": [self.height, self.width]}


@dataclass(frozen=True)
class Family:
    """One family: its model name, its knobs (unprefixed dims) and the map (knobs, geometry) -> model kwargs."""

    name: str
    model: str
    knobs: tuple[Dim, ...]
    kwargs: Callable[[dict[str, Any], Geometry], dict[str, Any]]


def _resnet_basic(k: dict[str, Any], g: Geometry) -> dict[str, Any]:
    w = int(k["width"])
    return {"block": "basic", "depths": [int(k["depth"])] * 3, "widths": [w, w, 2 * w, 4 * w], **g.stem()}


def _resnet_bottleneck(k: dict[str, Any], g: Geometry) -> dict[str, Any]:
    w = int(k["width"])
    return {"block": "bottleneck", "depths": [int(k["depth"])] * 3, "widths": [w, 4 * w, 8 * w, 16 * w],
            **g.stem()}


MBV2_STRIDES = (1, 1, 2, 2, 1, 2, 1)  # mobilenetv2's CIFAR row strides
MBV2_LAST_ROW = 320  # channels of its last row at width 1


def _mobilenetv2(k: dict[str, Any], g: Geometry) -> dict[str, Any]:
    width = float(k["width"])
    # Final conv 4x the last row (1280 at width 1, as published), so it shrinks with the network.
    return {"width_mult": width, "depth_mult": float(k["depth"]), "expansion": int(k["expansion"]),
            "last_channels": 4 * make_divisible(MBV2_LAST_ROW * width), "strides": g.strides(MBV2_STRIDES),
            **g.stem()}


def _shufflenetv2(k: dict[str, Any], g: Geometry) -> dict[str, Any]:
    c, d = int(k["width"]), int(k["depth"])
    return {"widths": [c, 2 * c, 4 * c, 8 * c], "repeats": [d, 2 * d, d], "strides": g.strides((2, 2, 2)),
            **g.stem()}


def _vit(k: dict[str, Any], g: Geometry) -> dict[str, Any]:
    return {"dim": int(k["dim"]), "depth": int(k["depth"]), "heads": int(k["heads"]),
            "mlp_ratio": float(k["mlp_ratio"]), **g.tokens(int(k["patch"]))}


def _mixer(k: dict[str, Any], g: Geometry) -> dict[str, Any]:
    return {"dim": int(k["dim"]), "depth": int(k["depth"]), "mlp_ratio": float(k["mlp_ratio"]),
            **g.tokens(int(k["patch"]))}


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("resnet_basic", "resnet", (IntDim("depth", 1, 3), IntDim("width", 4, 48, step=4)), _resnet_basic),
    Family("resnet_bottleneck", "resnet", (IntDim("depth", 1, 3), IntDim("width", 4, 40, step=4)),
           _resnet_bottleneck),
    Family("mobilenetv2", "mobilenetv2", (CategoricalDim("depth", (0.25, 0.5, 0.75, 1.0)),
                                          CategoricalDim("width", (0.1, 0.25, 0.35, 0.5, 0.75, 1.0)),
                                          IntDim("expansion", 2, 6)), _mobilenetv2),
    Family("shufflenetv2", "shufflenetv2", (IntDim("depth", 1, 3), IntDim("width", 8, 128, step=8)), _shufflenetv2),
    Family("vit", "vit", (IntDim("depth", 3, 8), IntDim("dim", 24, 160, step=8), CategoricalDim("heads", (1, 2, 4)),
                          CategoricalDim("mlp_ratio", (2, 4)), CategoricalDim("patch", (2, 4, 8))), _vit),
    Family("mixer", "mixer", (IntDim("depth", 3, 8), IntDim("dim", 24, 160, step=8),
                              CategoricalDim("mlp_ratio", (2, 4)), CategoricalDim("patch", (2, 4, 8))), _mixer),
)}
NON_MONOTONE = ("patch",)  # knobs whose parameter count is not monotone: smallest() tries every choice


def _low(d: Dim) -> Any:
    """The dimension's smallest value (lowest int, first of sorted choices)."""
    return d.low if isinstance(d, IntDim) else min(d.choices)


@register_space("multifamily")
class MultiFamilySpace(SearchSpace):
    """Family choice + per-family conditional knobs; see the module docstring."""

    name = "multifamily"

    def __init__(self, families: Sequence[str] | None = None) -> None:
        if families is None:
            families = tuple(FAMILIES)
        if isinstance(families, str) or not isinstance(families, (list, tuple)) or not families:
            raise ArchkdError(f"multifamily families must be a non-empty list, got {families!r}",
                              f"set search.space_kwargs.families to some of {list(FAMILIES)}")
        for f in families:
            if f not in FAMILIES:
                close = difflib.get_close_matches(str(f), FAMILIES, n=1)
                raise ArchkdError(f"unknown family '{f}' for space 'multifamily'",
                                  (f"did you mean '{close[0]}'? " if close else "") + f"use {list(FAMILIES)}")
        self.families = tuple(dict.fromkeys(families))
        self._smallest: dict | None = None

    def arch_dims(self) -> list[Dim]:
        out: list[Dim] = [CategoricalDim("family", self.families)]
        for f in self.families:
            out += [_prefixed(d, f) for d in FAMILIES[f].knobs]
        return out

    def spec(self, config: dict, input_shape: tuple[int, ...], num_classes: int) -> dict:
        family = FAMILIES[self._family(config)]
        missing = [f"{family.name}_{d.name}" for d in family.knobs if f"{family.name}_{d.name}" not in config]
        if missing:
            raise ArchkdError(f"config for space 'multifamily' lacks {missing}", "sample it from the space")
        knobs = {d.name: config[f"{family.name}_{d.name}"] for d in family.knobs}
        geometry = Geometry.of(input_shape)
        return {"name": family.model, "num_classes": int(num_classes), "in_channels": geometry.in_channels,
                "kwargs": family.kwargs(knobs, geometry)}

    def smallest(self) -> dict:
        """The fewest-parameter member at ``REFERENCE_SHAPE`` / ``REFERENCE_CLASSES`` (see the module docstring).

        The candidates are built on the meta device: no memory, no draws from the global RNG."""
        if self._smallest is None:
            candidates = [c for f in self.families for c in self._family_minima(f)]
            with torch.device("meta"):
                self._smallest = min(candidates, key=lambda c: count_params(
                    self.build(c, REFERENCE_SHAPE, REFERENCE_CLASSES)))
        return {**self._smallest, **{d.name: d.sample(0.0) for d in self.recipe_dims()}}

    def _family_minima(self, family: str) -> list[dict]:
        """The family's candidates for its minimum: every knob at its low end, each choice of a non-monotone
        (categorical) knob."""
        out = [{"family": family, **{f"{family}_{d.name}": _low(d) for d in FAMILIES[family].knobs}}]
        for d in FAMILIES[family].knobs:
            if d.name in NON_MONOTONE:
                out = [{**c, f"{family}_{d.name}": v} for c in out for v in d.choices]
        return out

    def _family(self, config: dict) -> str:
        family = config.get("family")
        if family not in self.families:
            raise ArchkdError(f"config family {family!r} is not in space 'multifamily' ({list(self.families)})",
                              "sample it from the space")
        return family


def _prefixed(d: Dim, family: str) -> Dim:
    """A family knob as a space dimension: ``<family>_<knob>``, active when ``family`` is chosen."""
    cond = ("family", (family,))
    if isinstance(d, IntDim):
        return IntDim(f"{family}_{d.name}", d.low, d.high, d.step, d.log, when=cond)
    return CategoricalDim(f"{family}_{d.name}", d.choices, when=cond)
