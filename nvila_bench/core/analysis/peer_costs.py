"""The analytic cost model for the peer VLMs (model/peer_config.py): FLOPs and minimum bytes per stage, with the
conventions of costmodel.py (a multiply-add is 2 FLOPs; matmul-like work only; weights read once; activations
in and out once). The LLM stages are costmodel.py's own: a peer's language model is a plain Qwen2 decoder.

    Qwen2-VL      every 14-px patch (two frames deep) runs every block; attention is full within each image
                  or each temporal step of a video; the merger maps each 2x2 group of patches to one token
    Qwen2.5-VL    the same, but only `fullatt_block_indexes` attend fully: the other blocks attend within
                  windows of `window_size` pixels (112: 8x8 patches, fewer at the edges)
    LLaVA-OV      SigLIP over every 384-px view (the base view and the anyres crops, or each video frame), then
                  the two-layer projector on every view's 729 features, before any unpadding or pooling
"""

from __future__ import annotations

from nvila_bench.core.analysis.costmodel import Cost, _check_count, decode_step_cost, dtype_bytes, llm_prefill_cost
from nvila_bench.model.params import linear, vision_params
from nvila_bench.model.peer_config import PeerConfig
from nvila_bench.model.peer_params import peer_param_counts, siglip_config
from nvila_bench.model.peer_tokens import VIDEO_FRAME, count_peer_tokens, qwen_grid


def _qwen_widths(cfg: PeerConfig) -> tuple[int, int, int]:
    """(ViT width, its MLP's matmul width per token (2 f for fc1 + fc2, 3 f gated), the LLM width)."""
    v = cfg.vision_config
    if cfg.kind == "qwen2-vl":
        d = v["embed_dim"]
        return d, 2 * int(d * v["mlp_ratio"]), v["hidden_size"]
    return v["hidden_size"], 3 * v["intermediate_size"], v["out_hidden_size"]


def _window_pairs(cols: int, rows: int, window: int) -> int:
    """Sum over Qwen2.5-VL's attention windows of (patches in it)^2: windows of `window` x `window` patches
    tile the grid from its top-left corner; the last row and column of windows may be smaller."""

    def sides(n):
        return [min(window, n - start) for start in range(0, n, window)]

    return sum((h * w) ** 2 for h in sides(rows) for w in sides(cols))


def _qwen_media(cfg: PeerConfig, grids: list[tuple[int, int, int]], dtype: str) -> tuple[Cost, Cost, dict]:
    """(vision, merger, parts) over media given as (temporal steps, cols, rows) of 14-px patches; `parts`: the
    FLOPs a training step's backward treats apart (patch_embed, vision_attention, projector_first)."""
    v, b = cfg.vision_config, dtype_bytes(dtype)
    d, mlp, h = _qwen_widths(cfg)
    depth, merge = v["depth"], v["spatial_merge_size"] ** 2
    full = set(v.get("fullatt_block_indexes", range(depth)))
    window = v.get("window_size", 0) // v["patch_size"]
    patch_in = 3 * v["temporal_patch_size"] * v["patch_size"] ** 2
    patches = sum(t * c * r for t, c, r in grids)
    full_pairs = sum(t * (c * r) ** 2 for t, c, r in grids)
    window_pairs = sum(t * _window_pairs(c, r, window) for t, c, r in grids) if window else full_pairs
    pairs = len(full) * full_pairs + (depth - len(full)) * window_pairs
    patch_embed, attention = 2 * patches * patch_in * d, 2 * 2 * pairs * d
    flops = patch_embed + 2 * patches * depth * (4 * d * d + mlp * d) + attention
    counts = peer_param_counts(cfg)
    tokens = patches // merge
    vision = Cost(flops, (counts["vision"] + patches * patch_in + patches * d) * b)
    merger = Cost(
        2 * tokens * (merge * d * merge * d + merge * d * h), (counts["projector"] + patches * d + tokens * h) * b
    )
    # The merger opens with a LayerNorm whose weights learn: its first linear computes an input gradient anyway.
    return vision, merger, {"patch_embed": patch_embed, "vision_attention": attention, "projector_first": 0}


def _llava_media(cfg: PeerConfig, views: int, dtype: str) -> tuple[Cost, Cost, dict]:
    """(vision, projector, parts as _qwen_media's) over `views` 384-px views: SigLIP in full, then the MLP on each
    view's features."""
    vc, b = siglip_config(cfg.vision_config), dtype_bytes(dtype)
    p, d, f, h = vc.grid**2, vc.hidden_size, vc.intermediate_size, cfg.llm.hidden_size
    layer = 2 * p * (4 * d * d + 2 * d * f) + 2 * 2 * p * p * d
    patch_embed, attention = views * 2 * p * (3 * vc.patch_size**2) * d, views * vc.num_layers * 2 * 2 * p * p * d
    flops = patch_embed + views * vc.num_layers * layer
    vision = Cost(flops, (vision_params(vc) + views * (3 * vc.image_size**2 + p * d)) * b)
    tokens = views * p
    projector = Cost(2 * tokens * (d * h + h * h), (linear(d, h) + linear(h, h) + tokens * (d + h)) * b)
    return (
        vision,
        projector,
        {"patch_embed": patch_embed, "vision_attention": attention, "projector_first": 2 * tokens * d * h},
    )


def _media(cfg: PeerConfig, images, video_frames: int | None, dtype: str):
    """(vision, projector, parts, token count) of one request's media."""
    count = count_peer_tokens(cfg, list(images), video_frames)
    if not count.images and count.video is None:
        raise ValueError("a request needs at least one image or video frame")
    if cfg.kind == "llava-onevision":
        return (*_llava_media(cfg, count.vit_tiles, dtype), count)
    grids = [(1, *im.grid) for im in count.images]
    if video_frames:
        steps = -(-video_frames // cfg.video_processor["temporal_patch_size"])
        grids.append((steps, *qwen_grid(cfg.video_processor, *VIDEO_FRAME)))
    return (*_qwen_media(cfg, grids, dtype), count)


def peer_request_costs(
    cfg: PeerConfig,
    images=(),
    video_frames: int | None = None,
    prompt_tokens: int = 64,
    context: int | None = None,
    batch: int = 1,
    dtype: str = "bfloat16",
    weights: dict[str, int] | None = None,
) -> dict[str, Cost]:
    """costmodel.request_costs for a peer: "vision", "projector" (the merger), "llm_prefill", "decode_step";
    `weights["llm"]`: bytes the LLM reads when its weights are quantized."""
    _check_count("prompt_tokens", prompt_tokens, minimum=0)
    vision, projector, _, count = _media(cfg, images, video_frames, dtype)
    n = count.total_tokens + prompt_tokens
    return {
        "vision": vision,
        "projector": projector,
        "llm_prefill": llm_prefill_cost(cfg, n, batch, dtype, (weights or {}).get("llm")),
        "decode_step": decode_step_cost(
            cfg, n if context is None else context, batch, dtype, (weights or {}).get("llm")
        ),
    }


# ---- a training step -------------------------------------------------------------------------------------------
def peer_train_step_flops(
    cfg: PeerConfig,
    learns: dict[str, str],
    images=(),
    video_frames: int | None = None,
    prompt_tokens: int = 64,
    batch: int = 1,
    checkpointing: bool = False,
) -> int:
    """costmodel.train_step_flops for a peer (transformers' forward with labels: the LM head at every position),
    `batch` samples each with its own media. Backward, per part, as autograd runs it (equal to FlopCounterMode on
    the tiny peers, tests/test_peer_training.py), refining costmodel's 2x / 1x / 0 where a small model shows it:
    "weights": 2x forward, less the input gradient of a first matmul whose input needs none (the patch embedding
    over the pixels; LLaVA-OV's first projector layer over a frozen tower); "input": 1x, plus 1x more for attention
    (Q, K and V all need gradients); "none": nothing. Checkpointing recomputes as costmodel's does."""
    _check_count("prompt_tokens", prompt_tokens, minimum=0)
    _check_count("batch", batch)
    vision, projector, parts, count = _media(cfg, images, video_frames, "bfloat16")
    n, llm = count.total_tokens + prompt_tokens, cfg.llm
    forward = {
        "vision": vision.flops,
        "projector": projector.flops,
        "llm": llm_prefill_cost(cfg, n).flops + 2 * (n - 1) * llm.hidden_size * llm.vocab_size,
    }
    attention = {
        "vision": parts["vision_attention"],
        "projector": 0,
        "llm": llm.num_layers * 2 * 2 * n * n * llm.num_heads * llm.head_dim,
    }
    modes = {part: learns.get(part, "none") for part in forward}
    for part, mode in modes.items():
        if mode not in ("weights", "input", "none"):
            raise ValueError(f"learns[{part!r}] must be weights, input or none, got {mode!r}")
    unneeded = {
        "vision": parts["patch_embed"],
        "llm": 0,
        "projector": parts["projector_first"] if modes["vision"] == "none" else 0,
    }
    total = 0
    for part, flops in forward.items():
        backward = {"weights": 2 * flops - unneeded[part], "input": flops + attention[part], "none": 0}[modes[part]]
        recompute = flops if checkpointing and modes[part] != "none" and part != "projector" else 0
        total += flops + backward + recompute
    return batch * total
