"""Checkpoints in the official NVILA / VILA1.5 directory layout (reference docs/reference.md#checkpoint-layout),
safetensors only.

    <dir>/config.json                 top-level VLM config (image_aspect_ratio, s2_scales, ...)
    <dir>/llm/                        config.json + *.safetensors (sharded with an index, or not)
    <dir>/vision_tower/               config.json + model.safetensors (keys `vision_model.*`)
    <dir>/mm_projector/               config.json + model.safetensors (keys `layers.<idx>.*`)

Loading is strict: every tensor must be present, expected and of the right shape, or a `CheckpointError`
names the offenders. Pickle files (`*.bin`, `*.pt`) are never opened.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from transformers.initialization import no_init_weights

from .checkpoint_config import (
    VISION_PREFIX,
    CheckpointError,
    _check_dir,
    _preview,
    _tensor_shapes,
    _weight_files,
    config_from_checkpoint,
)
from .config import LLMConfig, NVILAConfig
from .nvila import NVILAModel, _default_dtype, build_model, llm_hf_config
from .vision import siglip_config


# ---- writing ---------------------------------------------------------------------------------------------
def top_level_config(cfg: NVILAConfig) -> dict:
    media, vision = cfg.media, cfg.vision
    pool = media.temporal_pool
    video_encoder = (
        {"_target_": "llava.model.encoders.TSPVideoEncoder", "pool_sizes": [list(pool)]}
        if pool
        else {"_target_": "llava.model.encoders.BasicVideoEncoder"}
    )
    return {
        "architectures": ["LlavaLlamaModel"],
        "model_type": "llava_llama",
        "hidden_size": cfg.llm.hidden_size,
        "mm_hidden_size": cfg.projector.mm_hidden_size,
        "image_aspect_ratio": media.image_mode,
        "dynamic_s2": media.image_mode == "dynamic_s2",
        "s2_scales": ",".join(map(str, media.s2_scales)),
        "s2_resize_output_to_scale_idx": -1,
        "min_tiles": media.min_tiles,
        "max_tiles": media.max_tiles,
        "num_video_frames": media.num_video_frames,
        "mm_vision_select_layer": vision.select_layer,
        "mm_vision_select_feature": "cls_patch",
        "video_encoder": json.dumps(video_encoder),
        "llm_cfg": {"architectures": [_llm_class_name(cfg.llm)], "model_type": cfg.llm.arch},
        "vision_tower_cfg": {"architectures": ["SiglipVisionModel"], "model_type": "siglip_vision_model"},
        "mm_projector_cfg": {"mm_projector_type": cfg.projector.type, "model_type": "v2l_projector"},
    }


def save_checkpoint(model: NVILAModel, path: str | Path) -> Path:
    """Write `model` in the official layout (configs + safetensors); returns the directory."""
    root = Path(path)
    cfg = model.config
    llm_state = model.llm.state_dict()
    if cfg.llm.tie_word_embeddings:
        llm_state.pop("lm_head.weight", None)  # tied: stored once, as the embedding
    vision_state = {_with_vision_prefix(k): v for k, v in model.vision_tower.state_dict().items()}
    parts = {
        "llm": (llm_hf_config(cfg.llm).to_dict() | {"architectures": [_llm_class_name(cfg.llm)]}, llm_state),
        "vision_tower": (siglip_config(cfg.vision).to_dict() | {"architectures": ["SiglipVisionModel"]}, vision_state),
        "mm_projector": (
            {"mm_projector_type": cfg.projector.type, "model_type": "v2l_projector"},
            model.mm_projector.state_dict(),
        ),
    }
    for folder, (config, state) in parts.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        _write_json(root / folder / "config.json", config)
        tensors = {k: _own(v.detach().contiguous().cpu()) for k, v in state.items()}
        save_file(tensors, str(root / folder / "model.safetensors"), metadata={"format": "pt"})
    _write_json(root / "config.json", top_level_config(cfg))
    return root


def _own(t: torch.Tensor) -> torch.Tensor:
    """`t` in storage of its own: a slice of a fused weight (model/fast_llm.py) is copied, as older
    safetensors refuse tensors that share memory."""
    return t.clone() if t.untyped_storage().nbytes() != t.numel() * t.element_size() else t


# ---- reading ---------------------------------------------------------------------------------------------
def load_checkpoint(
    path: str | Path,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device = "cpu",
    attn_implementation: str = "sdpa",
    config: NVILAConfig | None = None,
) -> NVILAModel:
    """Build the model a checkpoint describes (or `config`) and load its weights strictly. Names and shapes
    are checked against the safetensors headers on a meta-device model first: nothing is allocated for a
    checkpoint that cannot load."""
    root = _check_dir(path)
    cfg = config or config_from_checkpoint(root)
    shapes = _expected_shapes(build_model(cfg, device="meta", attn_implementation=attn_implementation, seed=None))
    problems = [
        p for folder, expected in shapes.items() for p in _compare(folder, expected, _tensor_shapes(root / folder))
    ]
    if problems:
        raise CheckpointError(f"{root}: weights do not match {cfg.name}: " + "; ".join(problems))
    with no_init_weights(), torch.device(device), _default_dtype(dtype):  # weights are overwritten below
        model = NVILAModel(cfg, attn_implementation)
    with torch.no_grad():
        for folder, (module, to_file_key) in _components(model).items():  # one component in host memory at a time
            params = {to_file_key(k): v for k, v in module.state_dict().items()}
            for key, value in _read_tensors(root / folder).items():
                params[key].copy_(value)
    if cfg.llm.tie_word_embeddings:
        model.llm.tie_weights()
    return model.eval()


# ---- helpers ---------------------------------------------------------------------------------------------
def _components(model: NVILAModel) -> dict:
    return {
        "llm": (model.llm, lambda k: k),
        "vision_tower": (model.vision_tower, _with_vision_prefix),
        "mm_projector": (model.mm_projector, lambda k: k),
    }


def _expected_shapes(model: NVILAModel) -> dict[str, dict[str, tuple[int, ...]]]:
    """Per component folder, the tensors the checkpoint must hold (file key -> shape)."""
    expected = {
        folder: {to_file_key(k): tuple(v.shape) for k, v in module.state_dict().items()}
        for folder, (module, to_file_key) in _components(model).items()
    }
    if model.config.llm.tie_word_embeddings:
        expected["llm"].pop("lm_head.weight", None)  # tied: stored once, as the embedding
    return expected


def _compare(folder: str, expected: dict[str, tuple], stored: dict[str, tuple]) -> list[str]:
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    shapes = sorted(
        f"{k} {stored[k]} != {expected[k]}" for k in set(expected) & set(stored) if stored[k] != expected[k]
    )
    return [
        f"{folder}: {label} {len(items)} ({_preview(items)})"
        for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes))
        if items
    ]


@contextlib.contextmanager
def _open_weights(file: Path):
    try:
        with safe_open(str(file), framework="pt") as f:
            yield f
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{file}: not a readable safetensors file ({e})") from None


def _read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for file in _weight_files(folder):
        with _open_weights(file) as f:
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    return tensors


def _with_vision_prefix(key: str) -> str:
    """SiglipVisionModel keys as stored upstream (`vision_model.` prefix), whatever this transformers
    release calls them internally."""
    return key if key.startswith(VISION_PREFIX) else VISION_PREFIX + key


def _llm_class_name(cfg: LLMConfig) -> str:
    return {"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM"}[cfg.arch]


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
