"""Closed-form parameter counts from a config (reference docs/reference.md#model-family,
docs/reference.md#vision-encoder, docs/reference.md#projectors-and-spatial-token-concatenation-stc): no module is built.

The tests check these against the modules transformers builds, and against the reference's figures
(NVILA-8B: LLM 7,612,634,624 + ViT 413,327,088 + projector 62,425,088).
"""

from __future__ import annotations

from .config import LLMConfig, NVILAConfig, ProjectorConfig, VisionConfig
from .peer_config import PeerConfig


def linear(n_in: int, n_out: int, bias: bool = True) -> int:
    return n_in * n_out + (n_out if bias else 0)


def layer_norm(width: int) -> int:
    return 2 * width


def vision_params(cfg: VisionConfig) -> int:
    d, f = cfg.hidden_size, cfg.intermediate_size
    mlp = linear(d, f) + linear(f, d)
    embed = linear(3 * cfg.patch_size**2, d) + cfg.grid**2 * d  # conv patch embed + absolute positions
    layer = 2 * layer_norm(d) + 4 * linear(d, d) + mlp  # pre-LN attention (q, k, v, out) and MLP
    head = d + linear(d, 3 * d) + linear(d, d) + layer_norm(d) + mlp if cfg.use_head else 0  # probe + MHA + MLP
    return embed + cfg.num_layers * layer + layer_norm(d) + head


def projector_params(cfg: ProjectorConfig) -> int:
    c, h = cfg.mm_hidden_size, cfg.hidden_size
    if cfg.window == 1:
        return linear(c, h) + linear(h, h)
    if cfg.window == 2:
        return layer_norm(4 * c) + linear(4 * c, h) + linear(h, h)
    return layer_norm(9 * c) + linear(9 * c, 3 * c) + layer_norm(3 * c) + linear(3 * c, h) + linear(h, h)


def llm_params(cfg: LLMConfig) -> int:
    h, hd = cfg.hidden_size, cfg.head_dim
    qkv_bias = cfg.arch == "qwen2"  # Qwen2: q/k/v biases, no o_proj bias; Llama: no biases
    attn = (
        linear(h, cfg.num_heads * hd, qkv_bias)
        + 2 * linear(h, cfg.num_kv_heads * hd, qkv_bias)
        + linear(cfg.num_heads * hd, h, bias=False)
    )
    layer = attn + 3 * h * cfg.intermediate_size + 2 * h  # gate/up/down SiLU MLP, two RMSNorms
    embeddings = cfg.vocab_size * h * (1 if cfg.tie_word_embeddings else 2)
    return embeddings + cfg.num_layers * layer + h


def param_counts(cfg: NVILAConfig | PeerConfig) -> dict[str, int]:
    if isinstance(cfg, PeerConfig):
        from .peer_params import peer_param_counts  # it builds on this module's helpers

        return peer_param_counts(cfg)
    parts = {
        "vision": vision_params(cfg.vision),
        "projector": projector_params(cfg.projector),
        "llm": llm_params(cfg.llm),
    }
    return parts | {"total": sum(parts.values())}
