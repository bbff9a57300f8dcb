"""MLP-Mixer (Tolstikhin et al. 2021) with the ViT's convolutional stem: no attention, no convolutions after the stem.

What: ``ConvPatchEmbed`` (conv stem + patch conv, shared with ``vit``) -> ``depth`` Mixer blocks — a token-mixing
MLP across the ``T`` tokens (hidden ``dim / 2``, the D_S = C/2 of Mixer-S/B/L) and a channel-mixing MLP (hidden
``mlp_ratio · dim``), each pre-LayerNorm with a residual — -> final LayerNorm -> token average pooling -> linear.

Why it is built like ``vit``: the blocks are grouped into up to three ``TokenStage``s whose outputs are maps
``(N, dim, gh, gw)`` (the token -> map adapter), so feature losses and DistPro pathways tap a Mixer like any CNN.

Input size: the token-mixing MLP has one weight per token position, so a Mixer is built for one token grid — that of
``img_size`` (carried in its spec). No position embedding is needed (token mixing is position-aware); an input of
another size is a one-line ``ArchkdError`` rather than a silently resampled network.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from archkd.errors import ArchkdError
from archkd.models.blocks import ClassifierHead, init_weights
from archkd.models.registry import register_model
from archkd.models.vit import ConvPatchEmbed, Mlp, image_hw, token_args, token_grid, token_stages


class MixerBlock(nn.Module):
    """``x + token_mlp(LN(x)ᵀ)ᵀ`` (mixing across tokens), then ``x + channel_mlp(LN(x))``, on ``(N, T, C)``."""

    def __init__(self, dim: int, tokens: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mlp = Mlp(tokens, max(1, dim // 2))
        self.norm2 = nn.LayerNorm(dim)
        self.channel_mlp = Mlp(dim, max(1, round(mlp_ratio * dim)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class MlpMixer(nn.Module):
    """Conv patch embedding -> Mixer token stages (map taps) -> pooled linear head, for one ``img_size``."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, dim: int = 64, depth: int = 6,
                 mlp_ratio: float = 4.0, patch: int = 4, stem_stride: int = 1,
                 img_size: int | Sequence[int] = 32) -> None:
        super().__init__()
        dim, depth, patch, mlp_ratio = token_args("Mixer", dim, depth, patch, mlp_ratio)
        self.embed = ConvPatchEmbed(in_channels, dim, patch, stem_stride)
        self.img_size = image_hw(img_size)
        self.grid = token_grid(img_size, stem_stride, patch)
        tokens = self.grid[0] * self.grid[1]
        self.stages = token_stages(depth, dim, lambda: MixerBlock(dim, tokens, float(mlp_ratio)))
        self.head = ClassifierHead(dim, num_classes)
        self.stage_names = [f"stages.{i}" for i in range(len(self.stages))]
        self.feature_channels = [dim] * len(self.stages)
        self.stem_name, self.stem_channels = "embed.stem", self.embed.stem_channels  # the conv stem, before patchify
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        if not torch.jit.is_tracing() and tuple(x.shape[-2:]) != self.grid:  # a trace records no Python check
            h, w = self.img_size
            raise ArchkdError(f"this MLP-Mixer was built for {h}x{w} inputs (a {self.grid[0]}x{self.grid[1]} token "
                              f"grid); got a {x.shape[-2]}x{x.shape[-1]} grid", "rebuild it with img_size of the data")
        return self.head(self.stages(x))


@register_model("mixer")
def mixer(num_classes: int = 10, in_channels: int = 3, dim: int = 64, depth: int = 6, mlp_ratio: float = 4.0,
          patch: int = 4, stem_stride: int = 1, img_size: int | list[int] = 32) -> nn.Module:
    """Conv-stem MLP-Mixer: ``depth`` blocks of width ``dim`` in up to 3 map-tapped stages, for ``img_size`` inputs."""
    return MlpMixer(num_classes, in_channels, dim, depth, mlp_ratio, patch, stem_stride, img_size)
