"""Peer VLMs: the 8B-class models the paper measures NVILA against, driven through transformers' own classes.

A `PeerConfig` holds a checkpoint's published `config.json` and its processors' settings, verbatim
(docs/reference.md#peer-vlms cites each value). transformers' config class takes them as they are;
nothing here rebuilds the models. Importing this module loads neither torch nor transformers.

| preset | transformers class | vision | LLM |
|---|---|---|---|
| `qwen2-vl-7b` | `Qwen2VLForConditionalGeneration` | 675M ViT, native resolution, 2x2 merge | Qwen2-7B, M-RoPE |
| `qwen2.5-vl-7b` | `Qwen2_5_VLForConditionalGeneration` | 670M ViT, windowed attention, 2x2 merge | Qwen2.5-7B, M-RoPE
|
| `llava-onevision-7b` | `LlavaOnevisionForConditionalGeneration` | SigLIP 384, anyres_max_9 tiles | Qwen2-7B |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .config import LLMConfig

PeerKind = Literal["qwen2-vl", "qwen2.5-vl", "llava-onevision"]
PEER_KINDS = ("qwen2-vl", "qwen2.5-vl", "llava-onevision")
# transformers' model_type of each kind (config.json's "model_type"), to recognise a checkpoint.
MODEL_TYPES = {"qwen2_vl": "qwen2-vl", "qwen2_5_vl": "qwen2.5-vl", "llava_onevision": "llava-onevision"}


@dataclass(frozen=True)
class PeerConfig:
    """A peer VLM: what `build_peer` builds and what a preset names (family "peer")."""

    name: str
    kind: PeerKind
    hf_config: dict  # the checkpoint's config.json
    image_processor: dict  # preprocessor_config.json: the settings that decide the image's tokens
    video_processor: dict = field(default_factory=dict)  # the video processor's (frames' tokens)
    description: str = ""
    stands_in_for: str | None = None  # a tiny CPU-sized stand-in: the real preset whose geometry it keeps
    family: str = "peer"
    # NVILA's roles (presets.py) do not apply to a peer.
    baseline: str | None = None
    scaled_only: str | None = None
    video_model: str | None = None

    def __post_init__(self):
        if self.kind not in PEER_KINDS:
            raise ValueError(f"unknown peer kind {self.kind!r}; known: {', '.join(PEER_KINDS)}")

    @property
    def is_tiny(self) -> bool:
        return self.stands_in_for is not None

    @property
    def is_nvila(self) -> bool:
        return False

    @property
    def text_config(self) -> dict:
        """The LLM's settings: LLaVA-OneVision nests them; Qwen2-VL's published config.json has them at the top
        level, and transformers 5 saves them nested too (`text_config`)."""
        nested = self.hf_config.get("text_config")
        return nested if isinstance(nested, dict) else self.hf_config

    @property
    def vision_config(self) -> dict:
        return self.hf_config["vision_config"]

    @property
    def llm(self) -> LLMConfig:
        """The language model as the cost model and the KV cache see it (a plain Qwen2 decoder)."""
        t = self.text_config
        rope = t.get("rope_parameters") if isinstance(t.get("rope_parameters"), dict) else {}
        tied = self.hf_config.get("tie_word_embeddings")
        eos = t.get("eos_token_id", 151645)
        return LLMConfig(
            arch="qwen2",
            hidden_size=t["hidden_size"],
            num_layers=t["num_hidden_layers"],
            num_heads=t["num_attention_heads"],
            num_kv_heads=t.get("num_key_value_heads", t["num_attention_heads"]),
            intermediate_size=t["intermediate_size"],
            vocab_size=t["vocab_size"],
            rope_theta=t.get("rope_theta", rope.get("rope_theta", 10000.0)),  # transformers 5 nests it
            rms_norm_eps=t.get("rms_norm_eps", 1e-6),
            tie_word_embeddings=bool(t.get("tie_word_embeddings") if tied is None else tied),
            max_position_embeddings=t.get("max_position_embeddings", 32768),
            bos_token_id=t.get("bos_token_id"),
            eos_token_id=eos[0] if isinstance(eos, list) and eos else eos,
        )

    @property
    def image_token_id(self) -> int:
        return self.hf_config.get("image_token_id", self.hf_config.get("image_token_index"))

    @property
    def video_token_id(self) -> int:
        return self.hf_config.get("video_token_id", self.hf_config.get("video_token_index"))


# --- Published values -------------------------------------------------------------------------------------------
# Qwen/Qwen2-VL-7B-Instruct, config.json (docs/reference.md#peer-vlms).
QWEN2_VL_7B = {
    "model_type": "qwen2_vl",
    "architectures": ["Qwen2VLForConditionalGeneration"],
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "use_sliding_window": False,
    "sliding_window": 32768,
    "max_window_layers": 28,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "vision_token_id": 151654,
    "image_token_id": 151655,
    "video_token_id": 151656,
    "vision_config": {
        "depth": 32,
        "embed_dim": 1280,
        "mlp_ratio": 4,
        "num_heads": 16,
        "in_chans": 3,
        "hidden_size": 3584,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    },
}
# Qwen/Qwen2.5-VL-7B-Instruct, config.json.
QWEN25_VL_7B = QWEN2_VL_7B | {
    "model_type": "qwen2_5_vl",
    "architectures": ["Qwen2_5_VLForConditionalGeneration"],
    "max_position_embeddings": 128000,
    "vision_config": {
        "depth": 32,
        "hidden_act": "silu",
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "in_chans": 3,
        "out_hidden_size": 3584,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "spatial_patch_size": 14,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "tokens_per_second": 2,
        "temporal_patch_size": 2,
    },
}
# Both Qwen checkpoints' preprocessor_config.json.
QWEN_IMAGE_PROCESSOR = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
}
# Neither checkpoint ships a video processor config: transformers' Qwen2VLVideoProcessor defaults apply.
QWEN_VIDEO_PROCESSOR = {
    "min_pixels": 128 * 28 * 28,
    "max_pixels": 768 * 28 * 28,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
}

# llava-hf/llava-onevision-qwen2-7b-ov-hf, config.json: lmms-lab's LLaVA-OneVision-Qwen2-7B-OV as transformers'
# conversion script writes it (SigLIP without its last layer, Qwen2-7B-Instruct with the vocabulary padded to 64).
LLAVA_OV_PINPOINTS = [[384 * r, 384 * c] for r in range(1, 7) for c in range(1, 7)]
LLAVA_OV_7B = {
    "model_type": "llava_onevision",
    "architectures": ["LlavaOnevisionForConditionalGeneration"],
    "image_token_index": 151646,
    "video_token_index": 151647,
    "projector_hidden_act": "gelu",
    "vision_feature_layer": -1,
    "vision_feature_select_strategy": "full",
    "vision_aspect_ratio": "anyres_max_9",
    "use_image_newline_parameter": True,
    "tie_word_embeddings": False,
    "image_grid_pinpoints": LLAVA_OV_PINPOINTS,
    "text_config": {
        "model_type": "qwen2",
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152128,
        "max_position_embeddings": 32768,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "use_sliding_window": False,
    },
    "vision_config": {
        "model_type": "siglip_vision_model",
        "hidden_size": 1152,
        "image_size": 384,
        "intermediate_size": 4304,
        "num_attention_heads": 16,
        "num_hidden_layers": 26,
        "patch_size": 14,
        "vision_use_head": False,
    },
}
# preprocessor_config.json: 384-px crops on the anyres grid; the processor puts 729 tokens per crop.
LLAVA_OV_IMAGE_PROCESSOR = {
    "size": {"height": 384, "width": 384},
    "image_grid_pinpoints": LLAVA_OV_PINPOINTS,
    "num_image_tokens": 729,
    "vision_aspect_ratio": "anyres_max_9",
}
LLAVA_OV_VIDEO_PROCESSOR = {"size": {"height": 384, "width": 384}}

# --- Tiny CPU stand-ins: the real patch, merge, window and tile geometry, widths of 64, two layers --------------
# Special ids move inside the 512-id vocabulary (transformers embeds every prompt id before placing the media).
_TINY_TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 512,
    "max_position_embeddings": 131072,
    "bos_token_id": None,
    "eos_token_id": 2,
}
_TINY_QWEN_IDS = {
    "vision_start_token_id": 504,
    "vision_end_token_id": 505,
    "vision_token_id": 506,
    "image_token_id": 507,
    "video_token_id": 508,
    "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
}
QWEN2_VL_TINY = (
    QWEN2_VL_7B
    | _TINY_TEXT
    | _TINY_QWEN_IDS
    | {
        "vision_config": QWEN2_VL_7B["vision_config"]
        | {"depth": 2, "embed_dim": 64, "mlp_ratio": 2, "num_heads": 4, "hidden_size": 64},
    }
)
QWEN25_VL_TINY = (
    QWEN25_VL_7B
    | _TINY_TEXT
    | _TINY_QWEN_IDS
    | {
        "vision_config": QWEN25_VL_7B["vision_config"]
        | {
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 4,
            "out_hidden_size": 64,
            "fullatt_block_indexes": [1],
        },
    }
)
LLAVA_OV_TINY = LLAVA_OV_7B | {
    "image_token_index": 507,
    "video_token_index": 508,
    "text_config": LLAVA_OV_7B["text_config"] | _TINY_TEXT,
    "vision_config": LLAVA_OV_7B["vision_config"]
    | {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 2},
}

PEER_PRESETS = [
    PeerConfig(
        "qwen2-vl-7b",
        "qwen2-vl",
        QWEN2_VL_7B,
        QWEN_IMAGE_PROCESSOR,
        QWEN_VIDEO_PROCESSOR,
        "Qwen2-VL-7B-Instruct: native-resolution ViT, 2x2 merge, M-RoPE (peer)",
    ),
    PeerConfig(
        "qwen2.5-vl-7b",
        "qwen2.5-vl",
        QWEN25_VL_7B,
        QWEN_IMAGE_PROCESSOR,
        QWEN_VIDEO_PROCESSOR,
        "Qwen2.5-VL-7B-Instruct: windowed-attention ViT, 2x2 merge, M-RoPE (peer)",
    ),
    PeerConfig(
        "llava-onevision-7b",
        "llava-onevision",
        LLAVA_OV_7B,
        LLAVA_OV_IMAGE_PROCESSOR,
        LLAVA_OV_VIDEO_PROCESSOR,
        "LLaVA-OneVision-Qwen2-7B-OV: SigLIP 384, anyres_max_9 tiles, Qwen2-7B (peer)",
    ),
    PeerConfig(
        "qwen2-vl-tiny",
        "qwen2-vl",
        QWEN2_VL_TINY,
        QWEN_IMAGE_PROCESSOR,
        QWEN_VIDEO_PROCESSOR,
        "tiny Qwen2-VL geometry for CPU tests",
        stands_in_for="qwen2-vl-7b",
    ),
    PeerConfig(
        "qwen2.5-vl-tiny",
        "qwen2.5-vl",
        QWEN25_VL_TINY,
        QWEN_IMAGE_PROCESSOR,
        QWEN_VIDEO_PROCESSOR,
        "tiny Qwen2.5-VL geometry for CPU tests",
        stands_in_for="qwen2.5-vl-7b",
    ),
    PeerConfig(
        "llava-onevision-tiny",
        "llava-onevision",
        LLAVA_OV_TINY,
        LLAVA_OV_IMAGE_PROCESSOR,
        LLAVA_OV_VIDEO_PROCESSOR,
        "tiny LLaVA-OneVision geometry for CPU tests",
        stands_in_for="llava-onevision-7b",
    ),
]
