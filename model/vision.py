"""SigLIP vision tower (transformers `SiglipVisionModel`) and the Dynamic-S2 feature merge
(docs/reference.md#vision-encoder, docs/reference.md#dynamic-s2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import SiglipVisionConfig, SiglipVisionModel

from .config import VisionConfig
from .tiling import TileLayout


def siglip_config(cfg: VisionConfig, attn_implementation: str = "sdpa") -> SiglipVisionConfig:
    hf = SiglipVisionConfig(
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        layer_norm_eps=cfg.layer_norm_eps,
        hidden_act="gelu_pytorch_tanh",
        vision_use_head=cfg.use_head,
    )
    hf._attn_implementation = attn_implementation
    return hf


def vision_body(tower: SiglipVisionModel):
    """The module holding `embeddings` and `encoder` (transformers nests it as `vision_model` in some
    releases and not in others)."""
    return getattr(tower, "vision_model", tower)


def attention_kernel(tower: SiglipVisionModel) -> str:
    """Which kernel runs the tower's self-attention here: the SDPA backend PyTorch picks for one tile's
    (heads, patches, head dim) in the tower's dtype and device ("flash_attention", "efficient_attention",
    "cudnn_attention", "math"), or the attention implementation when it is not SDPA. SigLIP's head dim is 72
    (1152 / 16), which not every fused kernel takes."""
    from .attention import sdpa_backend

    hf = tower.config
    implementation = getattr(hf, "_attn_implementation", None) or "sdpa"
    if implementation != "sdpa":
        return implementation
    weight = vision_body(tower).embeddings.patch_embedding.weight
    heads = hf.num_attention_heads
    q = torch.empty(
        1,
        heads,
        (hf.image_size // hf.patch_size) ** 2,
        hf.hidden_size // heads,
        dtype=weight.dtype,
        device=weight.device,
    )
    return sdpa_backend(q, q, q)


def vision_features(tower: SiglipVisionModel, pixels: torch.Tensor, layers_used: int) -> torch.Tensor:
    """(T, 3, S, S) -> (T, patches, C): hidden_states[select_layer], i.e. the output of encoder layer
    `layers_used`, before post_layernorm. Later layers are never run: their output is unused
    (docs/reference.md#vision-encoder)."""
    body = vision_body(tower)
    hidden = body.embeddings(pixels)
    for layer in body.encoder.layers[:layers_used]:
        hidden = layer(hidden, None)
    return hidden


def stitch(tiles: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Row-major tiles (cols*rows, g, g, C) -> one map (g*rows, g*cols, C) ("merge_chessboard")."""
    cols, rows = grid
    n, g, _, c = tiles.shape
    assert n == cols * rows, f"{n} tiles for a {cols}x{rows} grid"
    return tiles.view(rows, cols, g, g, c).permute(0, 2, 1, 3, 4).reshape(rows * g, cols * g, c)


def merge_s2(features: torch.Tensor, layout: TileLayout) -> torch.Tensor:
    """Dynamic-S2 merge for one image: stitch each scale's tiles into a map, resize every map to the last
    scale's size with area interpolation in fp32, concatenate on channels in scale order.

    features: (vit_tiles, g*g, C) in layout order -> (1, g*rows, g*cols, C * scales).
    """
    g = round(features.shape[1] ** 0.5)
    tiles = features.view(-1, g, g, features.shape[-1])
    maps, start = [], 0
    for cols, rows in layout.scale_grids:
        maps.append(stitch(tiles[start : start + cols * rows], (cols, rows)))
        start += cols * rows
    out_hw = maps[-1].shape[:2]
    resized = [
        F.interpolate(m.permute(2, 0, 1)[None].float(), size=out_hw, mode="area").to(m.dtype)[0].permute(1, 2, 0)
        for m in maps
    ]
    return torch.cat(resized, dim=-1)[None]


class S2Merge(nn.Module):
    """`merge_s2` as a module without parameters, so an engine compiles it with the projector (eager, its
    stitching, fp32 resizing and concatenation are a dozen passes over ~60 MB maps for NVILA-8B's 1920x1080)."""

    def forward(self, features: torch.Tensor, layout: TileLayout) -> torch.Tensor:
        return merge_s2(features, layout)
