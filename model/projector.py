"""Multimodal projectors (reference docs/reference.md#projectors-and-spatial-token-concatenation-stc, upstream
`base_projector.py`).

STC (spatial-to-channel) concatenates each k x k window of vision tokens into one token of k^2 times the
width; an MLP then maps it to the LLM width. Layer indices match upstream so state-dict keys
(`layers.<idx>.weight`) load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ProjectorConfig


def space_to_channel(x: torch.Tensor, k: int, token_order: str = "row") -> torch.Tensor:
    """(N, rows, cols, C) -> (N, windows, k*k*C).

    Zero-pads bottom / right to multiples of k. Channels inside a window are row-major over positions
    ([(r,c) | (r,c+1) | (r+1,c) | (r+1,c+1)] for k=2). Windows come out row-major, or column-major for
    token_order="column" (the VILA1.5-era DownSampleBlock that lacked the final transpose).
    """
    n, rows, cols, c = x.shape
    x = F.pad(x, (0, 0, 0, (-cols) % k, 0, (-rows) % k))
    a, b = x.shape[1] // k, x.shape[2] // k
    x = x.view(n, a, k, b, k, c).permute(0, 1, 3, 2, 4, 5)  # (n, a, b, k, k, c)
    if token_order == "column":
        x = x.transpose(1, 2)
    return x.reshape(n, a * b, k * k * c)


class SpaceToChannel(nn.Module):
    """Parameter-free layer 0 of the downsampling projectors."""

    def __init__(self, k: int, token_order: str):
        super().__init__()
        self.k, self.token_order = k, token_order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return space_to_channel(x, self.k, self.token_order)

    def extra_repr(self) -> str:
        return f"k={self.k}, token_order={self.token_order}"


def projector_layers(cfg: ProjectorConfig) -> list[nn.Module]:
    c, h, k = cfg.mm_hidden_size, cfg.hidden_size, cfg.window
    stc = SpaceToChannel(k, cfg.token_order)
    if cfg.type == "mlp2x_gelu":  # uncompressed baseline: one token per patch
        return [nn.Linear(c, h), nn.GELU(), nn.Linear(h, h)]
    if k == 2:  # mlp_downsample, mlp_downsample_2x2_fix
        return [stc, nn.LayerNorm(4 * c), nn.Linear(4 * c, h), nn.GELU(), nn.Linear(h, h)]
    # mlp_downsample_3x3_fix
    return [
        stc,
        nn.LayerNorm(9 * c),
        nn.Linear(9 * c, 3 * c),
        nn.GELU(),
        nn.LayerNorm(3 * c),
        nn.Linear(3 * c, h),
        nn.GELU(),
        nn.Linear(h, h),
    ]


class MultimodalProjector(nn.Module):
    """Vision feature maps (N, rows, cols, C) -> LLM tokens (N, tokens, H)."""

    def __init__(self, cfg: ProjectorConfig):
        super().__init__()
        self.config = cfg
        self.layers = nn.Sequential(*projector_layers(cfg))

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        if self.config.window == 1:
            feature_map = feature_map.flatten(1, 2)
        return self.layers(feature_map)
