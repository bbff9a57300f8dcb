"""A small Vision Transformer with a convolutional stem (``vit``), and the token-network parts it shares with
``mixer``: the conv patch embedding, stages that see token sequences but take and return feature *maps*, and their
grouping.

What: conv stem (``stem_conv``: 3x3 at stride 1, a (2s-1)x(2s-1) kernel at stride s) -> BN -> ReLU to
``max(8, dim / patch)`` channels, a ``patch`` x ``patch`` stride-``patch`` conv to ``dim`` (the patch embedding), a
learned position embedding, ``depth`` pre-norm transformer blocks (multi-head self-attention, GELU MLP of
``mlp_ratio · dim``), a final LayerNorm, average pooling of the tokens and a linear classifier.

Why these choices:

- **Conv stem** (Xiao et al. 2021, "Early convolutions help transformers see better"): a ViT trains far more stably
  on small data with a few convolutions before patchifying, and the stem stride is how large images keep the token
  count manageable (the ``multifamily`` space picks ``stem_stride`` and ``patch`` from the input size).
- **Token -> map adapter.** archkd's feature losses and DistPro pathways tap *stage outputs* with forward hooks and
  expect maps ``(N, C, H, W)``. So a ``TokenStage`` takes a map, flattens it to the token sequence ``(N, H·W, C)``,
  runs its blocks, and ends in ``TokensToMap``, whose output is the sequence reshaped back to ``(N, C, H, W)``. The
  stages are chained map -> map; every hook sees a map; no loss needs a transformer special case.
- **No class token**: the head averages the tokens (global average pooling of the last map), so every token is a
  spatial position and the reshape needs no special token to drop.
- **Stage grouping**: the ``depth`` blocks are split evenly, in order, into ``S = min(3, depth)`` stages (block
  ``i`` goes to stage ``⌊S·i/depth⌋``), so a transformer exposes three taps like the CNNs. The final LayerNorm
  belongs to the last stage, so the last tap is the map the pooling sees (the model contract).
- **Position embedding** is a learned ``(1, dim, gh, gw)`` map for the token grid of ``img_size`` (so the spec
  carries the input size); it is bilinearly resized to the input's grid on every forward — an exact identity at
  ``img_size``, and another input size works as when fine-tuning ViTs at a new resolution.
- Attention is ``F.scaled_dot_product_attention`` (exports to ONNX opset 17 as plain MatMul/Softmax). Weights use
  archkd's ``init_weights`` (Kaiming convs, N(0, 0.01) linears) and the position embedding N(0, 0.02), all from the
  global RNG.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from archkd.errors import ArchkdError
from archkd.models.blocks import ClassifierHead, init_weights
from archkd.models.registry import register_model
from archkd.models.resnet import stem_conv

MAX_STAGES = 3


def positive_int(value: object, what: str, example: str) -> int:
    """``value`` as an int >= 1, or a one-line ``ArchkdError`` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ArchkdError(f"{what} must be an int >= 1, got {value!r}.", f"Use e.g. {example}.")
    return int(value)


def positive_number(value: object, what: str, example: str) -> float:
    """``value`` as a number > 0, or a one-line ``ArchkdError`` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ArchkdError(f"{what} must be a number > 0, got {value!r}.", f"Use e.g. {example}.")
    return float(value)


def token_args(kind: str, dim: object, depth: object, patch: object,
               mlp_ratio: object) -> tuple[int, int, int, float]:
    """The size arguments every token model (ViT, Mixer) takes, checked: ``(dim, depth, patch, mlp_ratio)``."""
    return (positive_int(dim, f"{kind} dim", "64"), positive_int(depth, f"{kind} depth", "6"),
            positive_int(patch, f"{kind} patch", "4"), positive_number(mlp_ratio, f"{kind} mlp_ratio", "2 or 4"))


def image_hw(img_size: int | Sequence[int]) -> tuple[int, int]:
    """``img_size`` (an int or ``[H, W]``) as ``(H, W)``."""
    hw = [img_size, img_size] if isinstance(img_size, int) and not isinstance(img_size, bool) else img_size
    if not isinstance(hw, (list, tuple)) or len(hw) != 2:
        raise ArchkdError(f"img_size must be an int or [H, W], got {img_size!r}.", "Use e.g. img_size=32.")
    h, w = (positive_int(v, "img_size", "32") for v in hw)
    return h, w


def token_grid(img_size: int | Sequence[int], stem_stride: int, patch: int) -> tuple[int, int]:
    """Token grid ``(gh, gw)`` of ``ConvPatchEmbed`` for an image: ``⌊⌈H / stem_stride⌉ / patch⌋`` per axis."""
    h, w = image_hw(img_size)
    gh, gw = (math.ceil(v / stem_stride) // patch for v in (h, w))
    if gh < 1 or gw < 1:
        raise ArchkdError(f"patch {patch} at stem stride {stem_stride} leaves no tokens for a {h}x{w} image.",
                          "Use a smaller patch or stem_stride.")
    return gh, gw


class ConvPatchEmbed(nn.Module):
    """Conv stem (conv-BN-ReLU to ``max(8, dim / patch)`` channels, stride ``stem_stride``) then a
    ``patch`` x ``patch`` stride-``patch`` conv to ``dim``: image -> token map ``(N, dim, gh, gw)``.

    Why the stem narrows as the patch grows: the patch conv then has about ``patch · dim²`` weights — linear, not
    quadratic, in the patch — and the full-resolution stem costs less where the patches are coarse."""

    def __init__(self, in_channels: int, dim: int, patch: int, stem_stride: int) -> None:
        super().__init__()
        stem = self.stem_channels = max(8, dim // patch)
        self.stem = stem_conv(in_channels, stem, stem_stride)
        self.proj = nn.Conv2d(stem, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.stem(x))


class TokensToMap(nn.Module):
    """The token -> map adapter: ``(N, H·W, C)`` tokens and the grid ``(H, W)`` -> the map ``(N, C, H, W)``.

    Its output is what stage hooks see."""

    def forward(self, tokens: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], grid[0], grid[1])


class TokenStage(nn.Module):
    """Map in, map out: flatten to tokens, run ``blocks`` (each ``(N, T, C) -> (N, T, C)``), optional ``norm``,
    reshape back (``to_map``)."""

    def __init__(self, blocks: Sequence[nn.Module], norm: nn.Module | None = None) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*blocks)
        self.norm = norm if norm is not None else nn.Identity()
        self.to_map = TokensToMap()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.norm(self.blocks(x.flatten(2).transpose(1, 2)))
        return self.to_map(tokens, x.shape[-2:])


def token_stages(depth: int, dim: int, make_block: Callable[[], nn.Module]) -> nn.Sequential:
    """``depth`` blocks split evenly, in order, into ``min(3, depth)`` ``TokenStage``s (block ``i`` -> stage
    ``⌊S·i/depth⌋``); the last stage ends with the final LayerNorm."""
    n_stages = min(MAX_STAGES, depth)
    groups: list[list[nn.Module]] = [[] for _ in range(n_stages)]
    for i in range(depth):
        groups[n_stages * i // depth].append(make_block())
    return nn.Sequential(*[TokenStage(g, nn.LayerNorm(dim) if s == n_stages - 1 else None)
                           for s, g in enumerate(groups)])


class Mlp(nn.Module):
    """Linear -> GELU -> Linear (hidden width ``hidden``), over the last dimension."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention over ``(N, T, C)`` tokens."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, t, c))


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + attn(LN(x))``, then ``x + mlp(LN(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, max(1, round(mlp_ratio * dim)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """Conv patch embedding + position embedding -> token stages (map taps) -> pooled linear head."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, dim: int = 64, depth: int = 6, heads: int = 4,
                 mlp_ratio: float = 2.0, patch: int = 4, stem_stride: int = 1,
                 img_size: int | Sequence[int] = 32) -> None:
        super().__init__()
        dim, depth, patch, mlp_ratio = token_args("ViT", dim, depth, patch, mlp_ratio)
        heads = positive_int(heads, "ViT heads", "4")
        if dim % heads:
            raise ArchkdError(f"ViT dim {dim} is not divisible by heads {heads}.",
                              "Use a dim that is a multiple of heads.")
        self.embed = ConvPatchEmbed(in_channels, dim, patch, stem_stride)
        self.pos_embed = nn.Parameter(torch.zeros(1, dim, *token_grid(img_size, stem_stride, patch)))
        self.stages = token_stages(depth, dim, lambda: TransformerBlock(dim, heads, mlp_ratio))
        self.head = ClassifierHead(dim, num_classes)
        self.stage_names = [f"stages.{i}" for i in range(len(self.stages))]
        self.feature_channels = [dim] * len(self.stages)
        self.stem_name, self.stem_channels = "embed.stem", self.embed.stem_channels  # the conv stem, before patchify
        init_weights(self)
        nn.init.normal_(self.pos_embed, 0.0, 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        # Resized to the input's token grid: exact identity at img_size (no data-dependent branch, so a trace or an
        # ONNX export stays valid at any input size).
        pos = F.interpolate(self.pos_embed, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(self.stages(x + pos))


@register_model("vit")
def vit(num_classes: int = 10, in_channels: int = 3, dim: int = 64, depth: int = 6, heads: int = 4,
        mlp_ratio: float = 2.0, patch: int = 4, stem_stride: int = 1, img_size: int | list[int] = 32) -> nn.Module:
    """Small conv-stem ViT: ``depth`` blocks of width ``dim`` in up to 3 map-tapped stages; tokens on a
    ``⌈H / stem_stride⌉ / patch`` grid of ``img_size``."""
    return VisionTransformer(num_classes, in_channels, dim, depth, heads, mlp_ratio, patch, stem_stride, img_size)
