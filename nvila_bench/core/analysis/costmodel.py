"""Analytic cost model: FLOPs and minimum bytes moved per stage, pure functions of an `NVILAConfig`.

FLOPs (the same conventions everywhere in nvila-bench):
- a multiply-add is 2 FLOPs, and only matmul-like work is counted: linear layers, the patch-embedding
  convolution (a matmul over 3*patch^2 inputs per patch), attention scores (Q K^T) and attention-times-values.
  Norms, activations, softmax, rotary embeddings, residual and position-embedding adds, the S2 interpolation,
  TSP averaging and biases are not: they are elementwise, O(1/width) of the matmul work.
- `flops` are model FLOPs: attention is costed over the full N x N square (no causal halving), as eager
  attention computes it and as the training MFU (6N-style model FLOPs) counts it.
- `executed_flops` are what a causal kernel (SDPA / FlashAttention with is_causal) executes: the LLM's QK^T
  and AV count only the kept keys, n(n+1)/2 key positions summed over n new queries (about half the square
  for a long prefill), and c + 1 keys for a decode token with c cached. The vision tower's attention is
  bidirectional and every matmul runs in full, so there they equal `flops`. MFU and the roofline (time floor,
  arithmetic intensity) use executed FLOPs (FLOPS_CONVENTION); the training MFU uses model FLOPs
  (docs/reference.md#flop-conventions).
- the vision tower runs `layers_used` encoder layers: it stops at hidden_states[-2], so its last layer and
  post_layernorm never run.
- prefill runs the LM head on the last position only (logits_to_keep=1).
On the tiny presets `flops` equal torch's FlopCounterMode under eager attention exactly (tests/test_costmodel.py).

Bytes are the minimum a stage must move from memory, at `dtype` width throughout:
- the weights it runs, read once (not once per tile or batch row): the vision tower's used layers with the
  patch and position embeddings; the projector; the LLM's layers, final norm and LM head. The input
  embedding table is not counted: prefill receives inputs_embeds, and decode gathers one row per token
  (counted as that row, its input). A tied table is read in full as the LM head.
- its input and output activations once: pixels in and features out (vision), k*k*C-wide windows in and
  LLM-width tokens out (projector), embeddings in and last-position logits out (LLM).
- for the LLM, the KV cache: prefill writes every position's K and V; a decode step reads the cached
  context and writes the new token's K and V.
Activations inside a stage (between layers, attention scores) are assumed to stay on chip.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from nvila_bench.model.config import NVILAConfig
from nvila_bench.model.params import layer_norm, llm_params, projector_params, vision_params
from nvila_bench.model.presets import is_peer
from nvila_bench.model.tokens import count_visual_tokens

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "fp8": 1, "int8": 1}


FLOPS_CONVENTION = "executed (causal attention counted once per kept key)"  # what MFU / the roofline divide
MODEL_FLOPS_CONVENTION = "model (full N x N attention)"  # `flops`; also the training MFU's convention


@dataclass(frozen=True)
class Cost:
    """Model FLOPs, minimum bytes moved, and the FLOPs a causal kernel executes (default: all of them)."""

    flops: int
    bytes: int
    executed_flops: int | None = None  # None: equal to `flops` (no causal attention in the stage)

    def __post_init__(self) -> None:
        if self.executed_flops is None:
            object.__setattr__(self, "executed_flops", self.flops)

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.flops + other.flops, self.bytes + other.bytes, self.executed_flops + other.executed_flops)

    def scaled(self, k: int) -> "Cost":
        """`k` identical repetitions."""
        return Cost(self.flops * k, self.bytes * k, self.executed_flops * k)

    def to_dict(self) -> dict:
        return {"flops": self.flops, "bytes": self.bytes, "executed_flops": self.executed_flops}


def dtype_bytes(dtype: str) -> int:
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPE_BYTES)}")
    return DTYPE_BYTES[dtype]


def _check_count(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {kind}, got {value!r}")


def _check_rate(name: str, value) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


# ---- vision tower ----------------------------------------------------------------------------------------
def vision_weights(cfg: NVILAConfig) -> int:
    """Parameters the tower actually runs: everything but its unused top layers, post_layernorm and head."""
    v = cfg.vision
    ran = replace(v, num_layers=v.layers_used, select_layer=-1, use_head=False)
    return vision_params(ran) - layer_norm(v.hidden_size)


def vision_cost(cfg: NVILAConfig, tiles: int, dtype: str = "bfloat16", weights: int | None = None) -> Cost:
    """SigLIP over a batch of `tiles` tiles of image_size^2 pixels, `layers_used` layers; `weights`: bytes of
    its weights when they are not all `dtype` (quantized, see `weights_read`)."""
    _check_count("tiles", tiles)
    v, b = cfg.vision, dtype_bytes(dtype)
    p, d, f = v.grid**2, v.hidden_size, v.intermediate_size
    patch_embed = 2 * p * (3 * v.patch_size**2) * d
    layer = 2 * p * (4 * d * d + 2 * d * f) + 2 * 2 * p * p * d  # q, k, v, out + MLP; then QK^T and AV
    flops = tiles * (patch_embed + v.layers_used * layer)
    io = tiles * (3 * v.image_size**2 + p * d)  # pixels in, features out
    return Cost(flops, io * b + (vision_weights(cfg) * b if weights is None else weights))


# ---- projector -------------------------------------------------------------------------------------------
def projector_cost(cfg: NVILAConfig, tokens_out: int, dtype: str = "bfloat16") -> Cost:
    """The projector producing `tokens_out` LLM tokens, each from one k x k window of C-wide features
    (zero-padded windows included: the linear layers run on them too)."""
    _check_count("tokens_out", tokens_out)
    c, h, k = cfg.projector.mm_hidden_size, cfg.projector.hidden_size, cfg.projector.window
    if k == 3:  # 9C -> 3C -> H -> H
        macs = 9 * c * 3 * c + 3 * c * h + h * h
    else:  # k*k*C -> H -> H (mlp2x_gelu is k = 1)
        macs = k * k * c * h + h * h
    io = tokens_out * (k * k * c + h)
    return Cost(2 * tokens_out * macs, (projector_params(cfg.projector) + io) * dtype_bytes(dtype))


# ---- LLM -------------------------------------------------------------------------------------------------
def kv_cache_bytes(cfg: NVILAConfig, tokens: int, batch: int = 1, dtype: str = "bfloat16") -> int:
    """K and V of every layer for `tokens` positions of `batch` rows."""
    _check_count("tokens", tokens, minimum=0)
    _check_count("batch", batch)
    llm = cfg.llm
    return 2 * llm.num_layers * llm.num_kv_heads * llm.head_dim * tokens * batch * dtype_bytes(dtype)


def llm_weights(cfg: NVILAConfig) -> int:
    """Parameters prefill and decode read: layers, final norm and LM head, not the input embedding table
    (unless tied, when it is the LM head)."""
    llm = cfg.llm
    return llm_params(llm) - (0 if llm.tie_word_embeddings else llm.vocab_size * llm.hidden_size)


def causal_keys(new: int, keys: int) -> int:
    """Key positions a causal kernel keeps, summed over `new` queries that are the last of `keys` positions:
    each sees the keys - new cached ones plus itself and the new ones before it. Prefill (new = keys = n):
    n(n+1)/2; a decode token (new = 1, keys = c + 1): c + 1."""
    return new * (keys - new) + new * (new + 1) // 2


def _llm_flops(cfg: NVILAConfig, new: int, keys: int, causal: bool = False) -> int:
    """One batch row: `new` query positions attending to `keys` positions, then the LM head once. `causal`:
    count only the (query, key) pairs a causal kernel keeps (executed FLOPs) instead of all new x keys."""
    llm = cfg.llm
    h, q, kv = llm.hidden_size, llm.num_heads * llm.head_dim, llm.num_kv_heads * llm.head_dim
    projections = 2 * new * h * (2 * q + 2 * kv)  # q and o are q wide, k and v are kv wide (GQA)
    mlp = 2 * new * 3 * h * llm.intermediate_size  # gate, up, down
    pairs = causal_keys(new, keys) if causal else new * keys
    attention = 2 * 2 * pairs * q  # QK^T and AV over every query head
    return llm.num_layers * (projections + mlp + attention) + 2 * h * llm.vocab_size


def _llm_io(cfg: NVILAConfig, positions: int, batch: int) -> int:
    """Embeddings in for `positions` per row, logits of one position out."""
    return batch * (positions * cfg.llm.hidden_size + cfg.llm.vocab_size)


def llm_prefill_cost(
    cfg: NVILAConfig, n_tokens: int, batch: int = 1, dtype: str = "bfloat16", weights: int | None = None
) -> Cost:
    """One forward over `n_tokens` positions per row that writes their KV cache; logits of the last position.
    `weights`: bytes of the weights read when they are not all `dtype` (quantized, see `weights_read`)."""
    _check_count("n_tokens", n_tokens)
    _check_count("batch", batch)
    read = llm_weights(cfg) * dtype_bytes(dtype) if weights is None else weights
    moved = read + _llm_io(cfg, n_tokens, batch) * dtype_bytes(dtype)
    return Cost(
        batch * _llm_flops(cfg, n_tokens, n_tokens),
        moved + kv_cache_bytes(cfg, n_tokens, batch, dtype),
        batch * _llm_flops(cfg, n_tokens, n_tokens, causal=True),
    )


def decode_step_cost(
    cfg: NVILAConfig, context: int, batch: int = 1, dtype: str = "bfloat16", weights: int | None = None
) -> Cost:
    """One new token per row with `context` positions cached: it attends context + 1 keys, reads the weights
    (`weights` bytes when quantized, see `weights_read`) and the cached KV, and writes its own KV."""
    _check_count("context", context, minimum=0)
    _check_count("batch", batch)
    read = llm_weights(cfg) * dtype_bytes(dtype) if weights is None else weights
    moved = read + _llm_io(cfg, 1, batch) * dtype_bytes(dtype)
    kv = kv_cache_bytes(cfg, context, batch, dtype) + kv_cache_bytes(cfg, 1, batch, dtype)
    executed = batch * _llm_flops(cfg, 1, context + 1, causal=True)  # one query: no masked key, equal to flops
    return Cost(batch * _llm_flops(cfg, 1, context + 1), moved + kv, executed)


def weights_read(cfg: NVILAConfig, plan, device: str = "cuda") -> dict[str, int]:
    """Bytes of weights the vision tower and the LLM read per forward with the weight formats of `plan` (a
    model.quant_plan.QuantPlan): bf16 everywhere except the quantized linear layers, which take what their
    format stores (docs/reference.md: the embeddings stay bf16, the LM head too unless `plan.lm_head`). A peer
    VLM's: the LLM's only (its tower's bytes are core/peer_costs.py's; it stays bf16)."""
    from nvila_bench.model.quant_plan import int4_kernel
    from nvila_bench.model.quantize import linear_bytes, quantized_shapes

    kernel = int4_kernel(plan, device)

    def change(component: str, shapes) -> int:
        fmt = plan.format_of(component)
        return sum(linear_bytes(i, o, fmt, plan.group_size, kernel) - 2 * i * o for i, o in shapes)

    if is_peer(cfg):
        if plan.vision != "bf16":
            raise ValueError(f"{cfg.name} is a peer VLM: its vision tower stays bf16 here")
        return {"llm": 2 * llm_weights(cfg) + change("llm", quantized_shapes(cfg, plan, "llm"))}

    v = cfg.vision
    vision_shapes = (
        [(v.hidden_size, v.hidden_size)] * 4
        + [(v.hidden_size, v.intermediate_size), (v.intermediate_size, v.hidden_size)]
    ) * v.layers_used
    return {
        "vision": 2 * vision_weights(cfg) + change("vision", vision_shapes),
        "llm": 2 * llm_weights(cfg) + change("llm", quantized_shapes(cfg, plan, "llm")),
    }


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
    weights: dict[str, int] | None = None,
) -> dict[str, Cost]:
    """Cost per stage ("vision", "projector", "llm_prefill", "decode_step") of one request with `images`
    ((width, height) pairs) and/or a video, followed by `prompt_tokens` text tokens. `batch` identical rows
    share the media, as the benchmarks run them: vision and projector run once, the LLM on every row. The
    decode step is costed at `context` cached positions (default: the prefill length). `weights`: bytes the
    vision tower and the LLM read when their weights are quantized (`weights_read`)."""
    if is_peer(cfg):
        from nvila_bench.core.analysis.peer_costs import peer_request_costs

        return peer_request_costs(cfg, images, video_frames, prompt_tokens, context, batch, dtype, weights)
    _check_count("prompt_tokens", prompt_tokens, minimum=0)
    count = count_visual_tokens(cfg, list(images), video_frames, temporal_pool)
    if count.vit_tiles < 1:
        raise ValueError("a request needs at least one image or video frame")
    # TSP pools after the projector, so the projector sees every frame's tokens.
    projected = sum(im.visual_tokens for im in count.images)
    projected += count.video.frames * cfg.tokens_per_tile if count.video else 0
    n = count.total_tokens + prompt_tokens
    return {
        "vision": vision_cost(cfg, count.vit_tiles, dtype, (weights or {}).get("vision")),
        "projector": projector_cost(cfg, projected, dtype),
        "llm_prefill": llm_prefill_cost(cfg, n, batch, dtype, (weights or {}).get("llm")),
        "decode_step": decode_step_cost(
            cfg, n if context is None else context, batch, dtype, (weights or {}).get("llm")
        ),
    }


# ---- from cost to time -----------------------------------------------------------------------------------
def time_floor(cost: Cost, peak_flops: float, peak_bandwidth: float) -> float:
    """Seconds no implementation can beat on that hardware: the binding one of compute (executed FLOPs: a
    causal kernel skips the masked half of attention) and memory."""
    _check_rate("peak_flops", peak_flops)
    _check_rate("peak_bandwidth", peak_bandwidth)
    return max(cost.executed_flops / peak_flops, cost.bytes / peak_bandwidth)


def arithmetic_intensity(cost: Cost) -> float:
    """Executed FLOPs per minimum byte moved: the roofline's x axis."""
    return cost.executed_flops / cost.bytes


def mfu(flops: int, seconds: float, peak_flops: float) -> float:
    """FLOPs utilisation: `flops` per second over peak. The convention is the caller's: inference stages pass
    executed FLOPs (FLOPS_CONVENTION), the training step passes model FLOPs (MODEL_FLOPS_CONVENTION)."""
    _check_rate("seconds", seconds)
    _check_rate("peak_flops", peak_flops)
    return flops / seconds / peak_flops


def mbu(bytes_: int, seconds: float, peak_bandwidth: float) -> float:
    """Memory bandwidth utilisation: minimum bytes over the time taken, over peak bandwidth."""
    _check_rate("seconds", seconds)
    _check_rate("peak_bandwidth", peak_bandwidth)
    return bytes_ / seconds / peak_bandwidth


# ---- a training step -------------------------------------------------------------------------------------
def train_step_flops(
    cfg: NVILAConfig,
    learns: dict[str, str],
    images=(),
    video_frames: int | None = None,
    temporal_pool: bool = True,
    prompt_tokens: int = 64,
    batch: int = 1,
    checkpointing: bool = False,
) -> int:
    """FLOPs of one training step over `batch` samples (each with its own media). `learns` maps "vision",
    "projector", "llm" to "weights" (its weights learn: backward = 2x forward), "input" (frozen, but the
    gradient passes through to a part below that learns: 1x) or "none" (no backward). The LM head runs at
    every position. Gradient checkpointing recomputes the forward of the parts that backpropagate. A peer VLM's
    figure is core/peer_costs.py's (the same conventions, exact where autograd skips a gradient)."""
    if is_peer(cfg):
        from nvila_bench.core.analysis.peer_costs import peer_train_step_flops

        return peer_train_step_flops(cfg, learns, images, video_frames, prompt_tokens, batch, checkpointing)
    costs = request_costs(cfg, images, video_frames, temporal_pool, prompt_tokens, batch=1)
    count = count_visual_tokens(cfg, list(images), video_frames, temporal_pool)
    n = count.total_tokens + prompt_tokens
    forward = {
        "vision": costs["vision"].flops,
        "projector": costs["projector"].flops,
        "llm": costs["llm_prefill"].flops + 2 * (n - 1) * cfg.llm.hidden_size * cfg.llm.vocab_size,
    }
    backward = {"weights": 2, "input": 1, "none": 0}
    total = 0
    for part, flops in forward.items():
        mode = learns.get(part, "none")
        if mode not in backward:
            raise ValueError(f"learns[{part!r}] must be weights, input or none, got {mode!r}")
        recompute = 1 if checkpointing and mode != "none" and part != "projector" else 0
        total += flops * (1 + backward[mode] + recompute)
    return batch * total
