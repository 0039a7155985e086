"""A peer VLM's parameter counts in closed form, from its config.json alone: no module is built.

The parts are those of `model/params.py`: the vision tower, the projector (Qwen2-VL's patch merger, though
transformers keeps it inside the `visual` module; LLaVA-OneVision's MLP and its learned image newline) and the
LLM. tests/test_peer_params.py holds each part equal to transformers' models built on the meta device.
"""

from __future__ import annotations

from .config import VisionConfig
from .params import layer_norm, linear, llm_params, vision_params
from .peer_config import PeerConfig


def _patch_embed(v: dict, width: int) -> int:
    """Qwen's 3D convolution over (temporal, 14, 14) patches, without a bias."""
    channels = v.get("in_chans", v.get("in_channels", 3))
    return channels * v["temporal_patch_size"] * v["patch_size"] ** 2 * width


def qwen2_vl_vision(v: dict) -> int:
    """Qwen2-VL's ViT: pre-LayerNorm blocks, fused qkv, a GELU MLP `mlp_ratio` wide; no final norm."""
    d = v["embed_dim"]
    f = int(d * v["mlp_ratio"])
    block = 2 * layer_norm(d) + linear(d, 3 * d) + linear(d, d) + linear(d, f) + linear(f, d)
    return _patch_embed(v, d) + v["depth"] * block


def qwen25_vl_vision(v: dict) -> int:
    """Qwen2.5-VL's ViT: RMSNorm (weight only), fused qkv, a gated SiLU MLP with biases."""
    d, f = v["hidden_size"], v["intermediate_size"]
    block = 2 * d + linear(d, 3 * d) + linear(d, d) + 2 * linear(d, f) + linear(f, d)
    return _patch_embed(v, d) + v["depth"] * block


def qwen_merger(v: dict, kind: str) -> int:
    """The patch merger: a norm, then an MLP over each 2x2 group of patches concatenated, to the LLM width."""
    d = v["embed_dim"] if kind == "qwen2-vl" else v["hidden_size"]
    out = v["hidden_size"] if kind == "qwen2-vl" else v["out_hidden_size"]
    grouped = d * v["spatial_merge_size"] ** 2
    norm = layer_norm(d) if kind == "qwen2-vl" else d  # LayerNorm; Qwen2.5-VL's RMSNorm has no bias
    return norm + linear(grouped, grouped) + linear(grouped, out)


def siglip_config(v: dict) -> VisionConfig:
    """LLaVA-OneVision's SigLIP tower as `model/params.py` counts it (transformers builds every layer)."""
    return VisionConfig(
        image_size=v["image_size"],
        patch_size=v["patch_size"],
        hidden_size=v["hidden_size"],
        intermediate_size=v["intermediate_size"],
        num_layers=v["num_hidden_layers"],
        num_heads=v["num_attention_heads"],
        use_head=bool(v.get("vision_use_head", True)),  # transformers' default: a pooling head
    )


def llava_projector(cfg: PeerConfig) -> int:
    """Two linears (vision width, times the feature layers taken, to the LLM width) and the image newline."""
    layer = cfg.hf_config.get("vision_feature_layer", -1)
    layers = 1 if isinstance(layer, int) else len(layer)
    bias = cfg.hf_config.get("multimodal_projector_bias", True)
    h = cfg.llm.hidden_size
    return linear(cfg.vision_config["hidden_size"] * layers, h, bias) + linear(h, h, bias) + h


def peer_param_counts(cfg: PeerConfig) -> dict[str, int]:
    v = cfg.vision_config
    if cfg.kind == "llava-onevision":
        vision, projector = vision_params(siglip_config(v)), llava_projector(cfg)
    else:
        vision = qwen2_vl_vision(v) if cfg.kind == "qwen2-vl" else qwen25_vl_vision(v)
        projector = qwen_merger(v, cfg.kind)
    parts = {"vision": vision, "projector": projector, "llm": llm_params(cfg.llm)}
    return parts | {"total": sum(parts.values())}
