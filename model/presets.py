"""Preset registry: the published NVILA / VILA1.5 shapes, the peer VLMs (peer_config.py) and tiny CPU-sized stand-ins.

Real presets follow docs/reference.md#model-family (tags there say which dimensions are confirmed by an
official config). Tiny presets keep the real tile size, patch size, projector and token geometry, so
token counts are identical to the real model, with small widths and two layers so a forward pass takes
well under a second on CPU.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TypeAlias

from .config import LLMConfig, MediaConfig, NVILAConfig, ProjectorConfig, VisionConfig
from .peer_config import PEER_PRESETS, PeerConfig

Preset: TypeAlias = NVILAConfig | PeerConfig  # what a preset name stands for

SIGLIP_384 = VisionConfig(image_size=384)  # VILA1.5 towers: 27x27 patches

QWEN25_7B = LLMConfig()  # NVILA-8B LLM (docs/reference.md#model-family, [C])
QWEN2_15B = LLMConfig(hidden_size=1536, num_heads=12, num_kv_heads=2, intermediate_size=8960, tie_word_embeddings=True)
SHEARED_LLAMA_27B = LLMConfig(
    arch="llama",
    hidden_size=2560,
    num_layers=32,
    num_heads=20,
    num_kv_heads=20,
    intermediate_size=6912,
    vocab_size=32000,
    rope_theta=1e4,
    rms_norm_eps=1e-5,
    max_position_embeddings=4096,
    bos_token_id=1,
    eos_token_id=2,
    newline_token_id=13,
)
LLAMA3_8B = LLMConfig(
    arch="llama",
    hidden_size=4096,
    num_layers=32,
    num_heads=32,
    num_kv_heads=8,
    intermediate_size=14336,
    vocab_size=128256,
    rope_theta=5e5,
    rms_norm_eps=1e-5,
    max_position_embeddings=8192,
    bos_token_id=128000,
    eos_token_id=128009,
    newline_token_id=198,
)

S2_MEDIA = MediaConfig(image_mode="dynamic_s2")
LITE_MEDIA = MediaConfig(image_mode="dynamic", tile_newline_text=True)
VIDEO_MEDIA = MediaConfig(image_mode="resize", temporal_pool=(8, 1, 1), num_video_frames=256)
VILA15_MEDIA = MediaConfig(image_mode="resize", separator=False)


def _nvila(name, llm, vision=VisionConfig(), description="", **roles):
    return NVILAConfig(
        name=name,
        family="nvila",
        vision=vision,
        llm=llm,
        media=S2_MEDIA,
        description=description,
        projector=ProjectorConfig("mlp_downsample", 3 * vision.hidden_size, llm.hidden_size),
        **roles,
    )


def _lite(name, llm, vision=VisionConfig(), description="", **roles):
    return NVILAConfig(
        name=name,
        family="nvila-lite",
        vision=vision,
        llm=llm,
        media=LITE_MEDIA,
        description=description,
        projector=ProjectorConfig("mlp_downsample_3x3_fix", vision.hidden_size, llm.hidden_size),
        **roles,
    )


def _video(name, llm, vision=VisionConfig(), description="", **roles):
    return NVILAConfig(
        name=name,
        family="nvila-video",
        vision=vision,
        llm=llm,
        media=VIDEO_MEDIA,
        description=description,
        projector=ProjectorConfig("mlp_downsample_2x2_fix", vision.hidden_size, llm.hidden_size),
        **roles,
    )


def _vila15(name, llm, vision=SIGLIP_384, description="", **roles):
    return NVILAConfig(
        name=name,
        family="vila1.5",
        vision=vision,
        llm=llm,
        media=VILA15_MEDIA,
        description=description,
        projector=ProjectorConfig("mlp_downsample", vision.hidden_size, llm.hidden_size, token_order="column"),
        **roles,
    )


def scaled_only(cfg: NVILAConfig) -> NVILAConfig:
    """The same model with token compression removed: a 1x1 (`mlp2x_gelu`) projector keeps every ViT patch
    (1024 tokens per 448 tile) and no TSP. "Scale" without "compress" in the paper's terms (Table 1)."""
    projector = ProjectorConfig("mlp2x_gelu", cfg.projector.mm_hidden_size, cfg.projector.hidden_size)
    media = replace(cfg.media, temporal_pool=None)
    stands_in_for = f"{cfg.stands_in_for}-scaled-only" if cfg.stands_in_for else None
    return replace(
        cfg,
        name=cfg.scaled_only,
        projector=projector,
        media=media,
        scaled_only=None,
        video_model=None,
        stands_in_for=stands_in_for,
        description=f"{cfg.name} without token compression (1x1 projector, no TSP)",
    )


# Tiny stand-ins: real 448/384 px tiles and 14 px patches, 2 layers, widths of 64.
TINY_VISION = VisionConfig(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4)
TINY_VISION_384 = VisionConfig(image_size=384, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4)
TINY_QWEN2 = LLMConfig(
    hidden_size=64,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    intermediate_size=128,
    vocab_size=512,
    max_position_embeddings=131072,
    bos_token_id=None,
    eos_token_id=2,
)
TINY_LLAMA = LLMConfig(
    arch="llama",
    hidden_size=64,
    num_layers=2,
    num_heads=4,
    num_kv_heads=4,
    intermediate_size=128,
    vocab_size=512,
    rope_theta=1e4,
    rms_norm_eps=1e-5,
    max_position_embeddings=131072,
    bos_token_id=1,
    eos_token_id=2,
    newline_token_id=13,
)

# Adding a preset: one entry here (its roles name other presets; docs/architecture.md).
_NVILA_8B = _nvila(
    "nvila-8b",
    QWEN25_7B,
    description="NVILA-8B: Qwen2.5-7B, Dynamic-S2 (448/896/1344), 2x2 STC",
    baseline="vila1.5-8b",
    scaled_only="nvila-8b-scaled-only",
    video_model="nvila-8b-video",
)
_NVILA_TINY = _nvila(
    "nvila-tiny",
    TINY_QWEN2,
    TINY_VISION,
    "tiny NVILA-8B geometry for CPU tests",
    baseline="vila-tiny",
    scaled_only="nvila-tiny-scaled-only",
    video_model="nvila-video-tiny",
    stands_in_for="nvila-8b",
)
_PRESETS: dict[str, Preset] = {
    cfg.name: cfg
    for cfg in [
        _NVILA_8B,
        _lite(
            "nvila-lite-2b",
            QWEN2_15B,
            description="NVILA-Lite-2B: Qwen2-1.5B, dynamic tiling, 3x3 STC",
            baseline="vila1.5-3b",
        ),
        _lite(
            "nvila-lite-8b",
            QWEN25_7B,
            description="NVILA-Lite-8B: Qwen2.5-7B, dynamic tiling, 3x3 STC",
            baseline="vila1.5-8b",
        ),
        _video(
            "nvila-8b-video",
            QWEN25_7B,
            description="NVILA-8B-Video: 448 resize, 2x2 STC, TSP 8x over time",
            baseline="vila1.5-8b",
        ),
        _vila15("vila1.5-3b", SHEARED_LLAMA_27B, description="VILA1.5-3B: LLaMA 2.7B, 384 resize, 2x2 STC"),
        _vila15("vila1.5-8b", LLAMA3_8B, description="Llama-3-VILA1.5-8B: Llama-3-8B, 384 resize, 2x2 STC"),
        _NVILA_TINY,
        _lite(
            "nvila-lite-tiny",
            TINY_QWEN2,
            TINY_VISION,
            "tiny NVILA-Lite geometry for CPU tests",
            baseline="vila-tiny",
            stands_in_for="nvila-lite-8b",
        ),
        _video(
            "nvila-video-tiny",
            TINY_QWEN2,
            TINY_VISION,
            "tiny NVILA-8B-Video geometry for CPU tests",
            baseline="vila-tiny",
            stands_in_for="nvila-8b-video",
        ),
        _vila15(
            "vila-tiny", TINY_LLAMA, TINY_VISION_384, "tiny VILA1.5 geometry for CPU tests", stands_in_for="vila1.5-8b"
        ),
        scaled_only(_NVILA_8B),
        scaled_only(_NVILA_TINY),
        *PEER_PRESETS,
    ]
}


class UnknownPresetError(KeyError, ValueError):
    def __str__(self) -> str:
        return str(self.args[0])


def preset_names() -> list[str]:
    return list(_PRESETS)


def get_preset(name: str) -> Preset:
    """The config registered under `name`; a clear error listing the known names otherwise."""
    try:
        return _PRESETS[name]
    except KeyError:
        raise UnknownPresetError(f"unknown preset {name!r}; known: {', '.join(_PRESETS)}") from None


def is_tiny(cfg: Preset) -> bool:
    return cfg.is_tiny


def is_peer(cfg: Preset) -> bool:
    return isinstance(cfg, PeerConfig)


def nvila_only(cfg: Preset, what: str) -> NVILAConfig:
    """`cfg`, refused with one line where `what` serves NVILA and VILA1.5 presets only (not yet a peer VLM)."""
    if isinstance(cfg, PeerConfig):
        raise ValueError(f"{what} covers NVILA and VILA1.5 presets only; {cfg.name} is a peer VLM (family peer)")
    return cfg
