"""Analytic cost model: FLOPs and minimum bytes moved per stage, pure functions of an `NVILAConfig`.

Conventions (the same everywhere in nvila-bench):
- a multiply-add is 2 FLOPs; only matmul-like work is counted: linear layers, the patch-embedding
  convolution, attention scores (Q K^T) and attention-times-values. Norms, activations, softmax, residual
  adds, the S2 interpolation and TSP averaging are not (together well under 1% of the total).
- attention is costed over the full N x N square (no causal halving), as eager attention computes it.
- the vision tower runs `layers_used` encoder layers (it stops at hidden_states[-2]).
- prefill runs the LM head on the last position only (logits_to_keep=1).
- `batch` identical requests share one encoded media: vision and projector run once, the LLM on all rows.

Bytes are the minimum a stage must move from memory: its weights once, its input and output activations
once, and for the LLM the KV cache it writes (prefill) or reads and writes (decode). The input embedding
table is only gathered (one row per token), so it counts as rows, not as the whole table.
"""

from __future__ import annotations

from dataclasses import dataclass

from nvila_bench.model.config import NVILAConfig
from nvila_bench.model.params import layer_norm, linear, projector_params
from nvila_bench.model.tokens import count_visual_tokens

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "fp8": 1, "int8": 1}


@dataclass(frozen=True)
class Cost:
    flops: int
    bytes: int

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.flops + other.flops, self.bytes + other.bytes)

    def scaled(self, k: int) -> "Cost":
        return Cost(self.flops * k, self.bytes * k)

    def to_dict(self) -> dict:
        return {"flops": self.flops, "bytes": self.bytes}


def dtype_bytes(dtype: str) -> int:
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPE_BYTES)}")
    return DTYPE_BYTES[dtype]


def _positive(**values: int) -> None:
    for name, v in values.items():
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


# ---- vision tower ----------------------------------------------------------------------------------------
def vision_cost(cfg: NVILAConfig, tiles: int, dtype: str = "bfloat16") -> Cost:
    """SigLIP over `tiles` tiles of image_size^2 pixels, `layers_used` layers."""
    _positive(tiles=tiles)
    v, b = cfg.vision, dtype_bytes(dtype)
    p, d, f = v.grid**2, v.hidden_size, v.intermediate_size
    patch_in = 3 * v.patch_size**2
    per_layer = 2 * p * (4 * d * d + 2 * d * f) + 2 * 2 * p * p * d  # q,k,v,out + MLP; QK^T and AV
    flops = tiles * (2 * p * patch_in * d + v.layers_used * per_layer)
    layer_params = 2 * layer_norm(d) + 4 * linear(d, d) + linear(d, f) + linear(f, d)
    weights = linear(patch_in, d) + p * d + v.layers_used * layer_params
    activations = tiles * (3 * v.image_size**2 + p * d)  # pixels in, features out
    return Cost(flops, (weights + activations) * b)


# ---- projector -------------------------------------------------------------------------------------------
def projector_cost(cfg: NVILAConfig, tokens_out: int, dtype: str = "bfloat16") -> Cost:
    """The projector producing `tokens_out` LLM tokens, each from a k x k window of C-wide features."""
    _positive(tokens_out=tokens_out)
    c, h, k = cfg.projector.mm_hidden_size, cfg.projector.hidden_size, cfg.projector.window
    if k == 3:
        macs = 9 * c * 3 * c + 3 * c * h + h * h
    else:  # k = 1 (mlp2x_gelu) or 2
        macs = k * k * c * h + h * h
    activations = tokens_out * (k * k * c + h)
    return Cost(2 * tokens_out * macs, (projector_params(cfg.projector) + activations) * dtype_bytes(dtype))


# ---- LLM -------------------------------------------------------------------------------------------------
def kv_cache_bytes(cfg: NVILAConfig, tokens: int, batch: int = 1, dtype: str = "bfloat16") -> int:
    """K and V of every layer for `tokens` positions of `batch` rows."""
    llm = cfg.llm
    return 2 * llm.num_layers * llm.num_kv_heads * llm.head_dim * tokens * batch * dtype_bytes(dtype)


def _layer_weights(cfg: NVILAConfig) -> int:
    llm = cfg.llm
    h, hd, qkv_bias = llm.hidden_size, llm.head_dim, llm.arch == "qwen2"
    attn = linear(h, llm.num_heads * hd, qkv_bias) + 2 * linear(h, llm.num_kv_heads * hd, qkv_bias)
    attn += linear(llm.num_heads * hd, h, bias=False)
    return llm.num_layers * (attn + 3 * h * llm.intermediate_size + 2 * h) + h  # + final norm


def _llm_flops(cfg: NVILAConfig, new: int, keys: int) -> int:
    """FLOPs of `new` query positions attending to `keys` positions, per batch row, + LM head once."""
    llm = cfg.llm
    h, hd = llm.hidden_size, llm.head_dim
    proj = 2 * new * h * (2 * llm.num_heads * hd + 2 * llm.num_kv_heads * hd)  # q, o and k, v
    mlp = 2 * new * 3 * h * llm.intermediate_size
    attention = 2 * 2 * new * keys * llm.num_heads * hd  # QK^T and AV
    return llm.num_layers * (proj + mlp + attention) + 2 * h * llm.vocab_size


def llm_prefill_cost(cfg: NVILAConfig, n_tokens: int, batch: int = 1, dtype: str = "bfloat16") -> Cost:
    """One forward over `n_tokens` positions per row, writing their KV cache; logits of the last position."""
    _positive(n_tokens=n_tokens, batch=batch)
    llm, b = cfg.llm, dtype_bytes(dtype)
    weights = _layer_weights(cfg) + llm.vocab_size * llm.hidden_size  # layers + LM head
    activations = batch * (n_tokens * llm.hidden_size + llm.vocab_size)  # embeddings in, logits out
    bytes_ = (weights + activations) * b + kv_cache_bytes(cfg, n_tokens, batch, dtype)
    return Cost(batch * _llm_flops(cfg, n_tokens, n_tokens), bytes_)


def decode_step_cost(cfg: NVILAConfig, context: int, batch: int = 1, dtype: str = "bfloat16") -> Cost:
    """One new token per row with `context` positions cached: attends context + 1 keys, reads every LLM
    weight (not the embedding table: one row is gathered) and the cached KV, writes one token's KV."""
    if not isinstance(context, int) or context < 0:
        raise ValueError(f"context must be an integer >= 0, got {context!r}")
    _positive(batch=batch)
    llm, b = cfg.llm, dtype_bytes(dtype)
    weights = _layer_weights(cfg) + llm.vocab_size * llm.hidden_size
    activations = batch * (llm.hidden_size + llm.vocab_size)
    kv = kv_cache_bytes(cfg, context, batch, dtype) + kv_cache_bytes(cfg, 1, batch, dtype)
    return Cost(batch * _llm_flops(cfg, 1, context + 1), (weights + activations) * b + kv)


# ---- a whole request -------------------------------------------------------------------------------------
def request_costs(
    cfg: NVILAConfig,
    images=(),
    video_frames: int | None = None,
    temporal_pool: bool = True,
    prompt_tokens: int = 64,
    context: int | None = None,
    batch: int = 1,
    dtype: str = "bfloat16",
) -> dict[str, Cost]:
    """Per stage ("vision", "projector", "llm_prefill", "decode_step") for one request; the decode step
    at `context` cached positions (default: the prefill length)."""
    count = count_visual_tokens(cfg, list(images), video_frames, temporal_pool)
    if count.vit_tiles < 1:
        raise ValueError("a request needs at least one image or video frame")
    projected = sum(im.visual_tokens for im in count.images)  # TSP pools after the projector:
    projected += (count.video.frames * cfg.tokens_per_tile) if count.video else 0  # project every frame
    n = count.total_tokens + prompt_tokens
    return {
        "vision": vision_cost(cfg, count.vit_tiles, dtype),
        "projector": projector_cost(cfg, projected, dtype),
        "llm_prefill": llm_prefill_cost(cfg, n, batch, dtype),
        "decode_step": decode_step_cost(cfg, n if context is None else context, batch, dtype),
    }


# ---- from cost to time -----------------------------------------------------------------------------------
def time_floor(cost: Cost, peak_flops: float, peak_bandwidth: float) -> float:
    """Seconds no implementation can beat on that hardware: the binding one of compute and memory."""
    return max(cost.flops / peak_flops, cost.bytes / peak_bandwidth)


def mfu(flops: int, seconds: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: achieved FLOP/s over peak."""
    return flops / seconds / peak_flops


def mbu(bytes_: int, seconds: float, peak_bandwidth: float) -> float:
    """Memory bandwidth utilisation: minimum bytes / time over peak bandwidth."""
    return bytes_ / seconds / peak_bandwidth
