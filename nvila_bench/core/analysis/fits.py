"""Whether a point fits its model and this machine, checked before anything is measured.

A point's LLM positions (media tokens + prompt + the tokens it generates) must fit the preset's context
(`max_position_embeddings`): past it a model computes, but what it computes is no request the model serves.
And what the point must hold at once (weights, KV cache, the LLM's input embeddings, the pixels) must fit the
device's memory: a count no machine can hold would otherwise run until killed. Both are lower bounds, so a
point refused here could never run; one that fits may still run out of memory, and is then recorded as `oom`.
"""

from __future__ import annotations

import os
from functools import cache

from nvila_bench.core.analysis.costmodel import dtype_bytes, kv_cache_bytes
from nvila_bench.core.measuring.point import BenchPoint
from nvila_bench.model import count_visual_tokens, get_preset
from nvila_bench.model.params import param_counts
from nvila_bench.model.presets import is_peer

PIXEL_BYTES = 4  # a tile's pixels are float32 before the vision tower casts them


def positions(point: BenchPoint, decodes: bool) -> tuple[int, str]:
    """(LLM positions of the point's request, what they are made of, in words)."""
    media = count_visual_tokens(
        get_preset(point.preset), point.images, point.video_frames, point.temporal_pool
    ).total_tokens
    new = point.new_tokens if decodes else 0
    parts = f"{media:,} media + {point.prompt_tokens:,} prompt" + (f" + {new:,} new tokens" if decodes else " tokens")
    return media + point.prompt_tokens + new, parts


def context_problem(point: BenchPoint, decodes: bool) -> str | None:
    """Why the point's request does not fit its preset's context, or None."""
    limit = get_preset(point.preset).llm.max_position_embeddings
    total, parts = positions(point, decodes)
    if total > limit:
        return f"{point.preset}: {total:,} positions ({parts}) exceed its {limit:,}-position context"
    return None


def least_bytes(point: BenchPoint, decodes: bool) -> int:
    """What the point holds at once, at the least: weights, the KV cache of every position, the LLM's input
    embeddings and the tiles' pixels, for every row of the batch."""
    cfg = get_preset(point.preset)
    total, _ = positions(point, decodes)
    element = dtype_bytes(point.dtype)
    count = count_visual_tokens(cfg, point.images, point.video_frames, point.temporal_pool)
    rows = point.batch_size
    return (
        param_counts(cfg)["total"] * element
        + kv_cache_bytes(cfg, total, rows, point.dtype)
        + rows * total * cfg.llm.hidden_size * element
        + rows * pixel_values(cfg, count) * PIXEL_BYTES
    )


def pixel_values(cfg, count) -> int:
    """Values of the vision tower's input: NVILA's tiles and frames; a Qwen peer's images as 14-px patches (a
    video's at least one frame deep each, here not counted); LLaVA-OneVision's 384-px views."""
    if not is_peer(cfg):
        return count.vit_tiles * 3 * cfg.vision.image_size**2
    if cfg.kind == "llava-onevision":
        return count.vit_tiles * 3 * cfg.vision_config["image_size"] ** 2
    v = cfg.vision_config
    return sum(im.grid[0] * im.grid[1] for im in count.images) * 3 * v["temporal_patch_size"] * v["patch_size"] ** 2


@cache
def device_memory(device: str) -> int | None:
    """Bytes of memory on `device` (a CUDA device's total, or the host's RAM for cpu); None when unknown."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            return None
        return torch.cuda.get_device_properties(int(device.partition(":")[2] or 0)).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows), or the name is unknown
        return None


def memory_problem(point: BenchPoint, decodes: bool) -> str | None:
    """Why the point cannot fit in its device's memory, or None."""
    have = device_memory(point.device)
    need = least_bytes(point, decodes)
    if have is not None and need > have:
        return (
            f"{point.preset} batch {point.batch_size:,}: needs at least {need / 2**30:,.1f} GiB (weights, KV cache, "
            f"embeddings, pixels) and {point.device} has {have / 2**30:,.1f} GiB"
        )
    return None


def fit_problem(point: BenchPoint, decodes: bool) -> str | None:
    """The first reason the point cannot run as asked (context, then memory), or None."""
    return context_problem(point, decodes) or memory_problem(point, decodes)
