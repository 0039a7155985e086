"""Analytic memory of one training step: weights + gradients + optimizer state + activations, per recipe.

Pure functions of the config, the recipe and the token geometry (no module is built), so they answer "does
it fit?" before a GPU is rented. The suites measure the same four parts (byte counts of parameters,
gradients and AdamW state; the bytes autograd saves during the forward pass) and record both.

Activations follow what PyTorch's autograd saves for backward (no gradient checkpointing, SDPA attention,
so no L x L matrix is kept):
- a Linear saves its input only when its weight learns; a LoRA adapter saves its dropout mask and output
  and the rank-r intermediate; a frozen Linear saves nothing (its input gradient needs only the weight);
- LayerNorm saves input, mean and rstd; HF's RMSNorm saves the fp32 input and rstd, plus the normalised
  tensor when its weight learns;
- GELU / SiLU save their input, the SwiGLU product both factors; SDPA saves q, k, v, output and the
  log-sum-exp; rotary embedding the cos / sin tables once;
- the loss keeps fp32 log-probabilities over the vocabulary at every position;
- nothing is saved below the lowest learning parameter (no gradient flows there).
Exact for weights, gradients and optimizer state; the tests hold activations to within 20% of measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

from nvila_bench.core.analysis.costmodel import dtype_bytes
from nvila_bench.model import count_visual_tokens
from nvila_bench.model.config import NVILAConfig
from nvila_bench.model.params import layer_norm, linear, param_counts, projector_params
from nvila_bench.model.recipes import Recipe

FP32 = 4


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    gradients: int
    optimizer: int
    activations: int
    trainable: int  # parameters
    trainable_tensors: int

    @property
    def total(self) -> int:
        """Upper bound of the step's peak: all four held at once (gradients arrive as activations go)."""
        return self.weights + self.gradients + self.optimizer + self.activations

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("weights", "gradients", "optimizer", "activations", "total", "trainable")}


# ---- parameters: which learn --------------------------------------------------------------------------
def _lora(n_in: int, n_out: int, rank: int) -> int:
    return rank * (n_in + n_out)


def _vit_linears(cfg: NVILAConfig) -> dict[str, tuple[int, int]]:
    d, f = cfg.vision.hidden_size, cfg.vision.intermediate_size
    return {"q_proj": (d, d), "k_proj": (d, d), "v_proj": (d, d), "out_proj": (d, d), "fc1": (d, f), "fc2": (f, d)}


def _llm_linears(cfg: NVILAConfig) -> dict[str, tuple[int, int]]:
    llm = cfg.llm
    h, q, kv, i = llm.hidden_size, llm.num_heads * llm.head_dim, llm.num_kv_heads * llm.head_dim, llm.intermediate_size
    return {
        "q_proj": (h, q),
        "k_proj": (h, kv),
        "v_proj": (h, kv),
        "o_proj": (q, h),
        "gate_proj": (h, i),
        "up_proj": (h, i),
        "down_proj": (i, h),
    }


def lora_parameters(cfg: NVILAConfig, recipe: Recipe) -> dict[str, tuple[int, int]]:
    """(parameters, tensors) of the LoRA adapters the recipe adds to the vision tower and the LLM."""
    r = recipe.lora.rank
    out = {"vision": (0, 0), "llm": (0, 0)}
    if recipe.vision == "lora":
        shapes = [s for name, s in _vit_linears(cfg).items() if name in recipe.lora.vision_targets]
        out["vision"] = (
            cfg.vision.layers_used * sum(_lora(a, b, r) for a, b in shapes),
            cfg.vision.layers_used * 2 * len(shapes),
        )
    if recipe.llm in ("lora", "qlora"):
        shapes = [s for name, s in _llm_linears(cfg).items() if name in recipe.lora.llm_targets]
        out["llm"] = (cfg.llm.num_layers * sum(_lora(a, b, r) for a, b in shapes), cfg.llm.num_layers * 2 * len(shapes))
    return out


def _vit_used_params(cfg: NVILAConfig) -> tuple[int, int]:
    """(parameters, tensors) of the ViT parts that run: embeddings and the first `layers_used` layers."""
    v = cfg.vision
    d, f = v.hidden_size, v.intermediate_size
    layer = 2 * layer_norm(d) + 4 * linear(d, d) + linear(d, f) + linear(f, d)
    embed = linear(3 * v.patch_size**2, d) + v.grid**2 * d
    return embed + v.layers_used * layer, 3 + v.layers_used * 16


def trainable_parameters(cfg: NVILAConfig, recipe: Recipe) -> dict[str, tuple[int, int]]:
    """(parameters, tensors) that learn, per part."""
    lora = lora_parameters(cfg, recipe)
    v, llm = cfg.vision, cfg.llm
    vision = {
        "frozen": (0, 0),
        "full": _vit_used_params(cfg),
        "ln": (v.layers_used * 2 * layer_norm(v.hidden_size), v.layers_used * 4),
        "lora": lora["vision"],
    }[recipe.vision]
    proj_tensors = {1: 4, 2: 6, 3: 10}[cfg.projector.window]
    bias = 3 if llm.arch == "qwen2" else 0
    llm_tensors = (1 if llm.tie_word_embeddings else 2) + llm.num_layers * (9 + bias) + 1
    language = {
        "frozen": (0, 0),
        "full": (param_counts(cfg)["llm"], llm_tensors),
        "lora": lora["llm"],
        "qlora": lora["llm"],
    }[recipe.llm]
    return {"vision": vision, "projector": (projector_params(cfg.projector), proj_tensors), "llm": language}


def weight_bytes(cfg: NVILAConfig, recipe: Recipe, dtype: str) -> int:
    """Every parameter in the run dtype (QLoRA: the LLM decoder's linear weights at 4 bits plus one fp32
    absmax per 64-weight block), LoRA adapters included."""
    b = dtype_bytes(dtype)
    counts = param_counts(cfg)
    lora = lora_parameters(cfg, recipe)
    total = (counts["total"] + lora["vision"][0] + lora["llm"][0]) * b
    if recipe.llm == "qlora":
        linear_weights = cfg.llm.num_layers * sum(a * o for a, o in _llm_linears(cfg).values())
        total -= linear_weights * b
        total += linear_weights // 2 + (linear_weights // 64) * FP32
    return total


# ---- activations -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Geometry:
    """Token counts of one sample (row); `batch` rows, each with its own media."""

    vit_tokens: int  # every tile / frame's patches
    s2_extra: int  # Dynamic-S2: tokens copied when the scales are stitched (saved only if the ViT learns)
    projector_tokens: int  # STC output tokens before TSP
    sequence: int  # LLM positions per row
    batch: int = 1


def geometry(cfg: NVILAConfig, images=(), video_frames=None, temporal_pool=True, prompt_tokens=64, batch=1) -> Geometry:
    count = count_visual_tokens(cfg, list(images), video_frames, temporal_pool)
    patches = cfg.vision.grid**2
    projected = sum(im.visual_tokens for im in count.images) + (
        count.video.frames * cfg.tokens_per_tile if count.video else 0
    )
    s2 = (
        sum(im.vit_tiles * patches - patches for im in count.images)
        if cfg.media.image_mode == "dynamic_s2" and len(count.images) == 1
        else 0
    )
    return Geometry(count.vit_tiles * patches, s2, projected, count.total_tokens + prompt_tokens, batch)


def _linear_saved(n_in: int, n_out: int, mode: str, rank: int, dropout: bool) -> int:
    """Elements a Linear saves per token: its input when the weight learns; LoRA: mask + dropout output
    (or just the input without dropout) and the rank-r intermediate."""
    if mode == "full":
        return n_in
    if mode == "lora":
        return (2 * n_in if dropout else n_in) + rank
    return 0


def vision_activations(cfg: NVILAConfig, recipe: Recipe, g: Geometry, dtype: str) -> int:
    if recipe.vision == "frozen":
        return 0
    v = cfg.vision
    b, d, f = dtype_bytes(dtype), v.hidden_size, v.intermediate_size
    mode = {"full": "full", "lora": "lora"}.get(recipe.vision, "frozen")

    def lin(name):
        return _linear_saved(
            *_vit_linears(cfg)[name],
            mode if name in recipe.lora.vision_targets or mode == "full" else "frozen",
            recipe.lora.rank,
            recipe.lora.dropout > 0,
        )

    per_token = (
        2 * (d * b + 2 * FP32)  # two LayerNorms: input, mean, rstd
        + (4 * d + v.num_heads) * b  # SDPA q, k, v, out, log-sum-exp
        + f * b  # GELU input
        + (lin("q_proj") + lin("k_proj") + lin("v_proj") + lin("out_proj") + lin("fc1") + lin("fc2")) * b
    )
    if mode == "full":  # q, k and v share one input: saved once
        per_token -= 2 * d * b
    total = v.layers_used * per_token * g.vit_tokens * g.batch
    if recipe.vision == "full":
        total += (
            g.batch * g.vit_tokens // v.grid**2 * 3 * v.image_size**2 * b
        )  # pixels, for the patch embedding's gradient
    if g.s2_extra:
        total += g.batch * (g.vit_tokens + g.s2_extra) * d * b  # S2 stitch copies
    return total


def projector_activations(cfg: NVILAConfig, g: Geometry, dtype: str) -> int:
    """The projector always learns: LayerNorm (input, mean, rstd), every Linear's input, GELU inputs."""
    b, c, h, m = dtype_bytes(dtype), cfg.projector.mm_hidden_size, cfg.projector.hidden_size, g.projector_tokens

    def ln(w):
        return w * b + 2 * FP32

    if cfg.projector.window == 1:
        per = c * b + 2 * h * b
    elif cfg.projector.window == 2:
        per = ln(4 * c) + 4 * c * b + 2 * h * b
    else:
        per = ln(9 * c) + 9 * c * b + 3 * c * b + ln(3 * c) + 3 * c * b + 2 * h * b
    return g.batch * m * per


def llm_activations(cfg: NVILAConfig, recipe: Recipe, g: Geometry, dtype: str) -> int:
    """Gradients always flow through the LLM to the projector, so even a frozen LLM keeps what its input
    gradient needs."""
    llm = cfg.llm
    b, h, i = dtype_bytes(dtype), llm.hidden_size, llm.intermediate_size
    q, kv = llm.num_heads * llm.head_dim, llm.num_kv_heads * llm.head_dim
    mode = {"full": "full", "lora": "lora", "qlora": "lora"}.get(recipe.llm, "frozen")
    norm = h * FP32 + FP32 + (h * b if mode == "full" else 0)  # RMSNorm: fp32 input, rstd (+ normalised)
    lin = (
        sum(
            _linear_saved(
                *shape,
                mode if (mode == "full" or name in recipe.lora.llm_targets) else "frozen",
                recipe.lora.rank,
                recipe.lora.dropout > 0,
            )
            for name, shape in _llm_linears(cfg).items()
        )
        * b
    )
    if mode == "full":  # q, k and v share one input, as do gate and up: each saved once
        lin -= 3 * h * b
    per_token = (
        2 * norm + (2 * q + 2 * kv + llm.num_heads) * b + 3 * i * b + lin
    )  # SDPA; SiLU input, both SwiGLU factors
    rows = g.batch * g.sequence
    head = (
        norm + (h * b if mode == "full" else 0) + llm.vocab_size * FP32 + 8
    )  # final norm, LM head input, log-probs, target
    return rows * (llm.num_layers * per_token + head) + 2 * g.sequence * llm.head_dim * b  # + rotary cos / sin


def estimate(cfg: NVILAConfig, recipe: Recipe, g: Geometry, dtype: str = "bfloat16") -> MemoryEstimate:
    """Weights, gradients (trainable parameters in the run dtype), AdamW state (exp_avg and exp_avg_sq in
    the parameter dtype, one fp32 step per tensor) and activations of one micro-batch."""
    b = dtype_bytes(dtype)
    trainable = trainable_parameters(cfg, recipe)
    n = sum(p for p, _ in trainable.values())
    tensors = sum(t for _, t in trainable.values())
    activations = (
        vision_activations(cfg, recipe, g, dtype)
        + projector_activations(cfg, g, dtype)
        + llm_activations(cfg, recipe, g, dtype)
    )
    return MemoryEstimate(weight_bytes(cfg, recipe, dtype), n * b, 2 * n * b + tensors * FP32, activations, n, tensors)
