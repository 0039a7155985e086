"""A peer VLM's checkpoint in transformers' own layout (`save_pretrained`), safetensors only:

    <dir>/config.json                       the model's config (its model_type names the peer)
    <dir>/model.safetensors                 the weights, as transformers writes them (sharded with an index, or not)
    <dir>/preprocessor_config.json          the image processor's settings
    <dir>/video_preprocessor_config.json    the video processor's, where the peer has one

Loading is strict: a config that is not a peer's, a missing, unexpected or mis-shaped tensor, or pickle weights
are refused with one `CheckpointError` line (a ValueError). A missing processor file means the kind's published
settings (model/peer_config.py).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import CheckpointError, _own, _preview, _read_json, _weight_files, _write_json
from .nvila import check_attn_implementation
from .peer_config import (
    LLAVA_OV_IMAGE_PROCESSOR,
    LLAVA_OV_VIDEO_PROCESSOR,
    MODEL_TYPES,
    QWEN_IMAGE_PROCESSOR,
    QWEN_VIDEO_PROCESSOR,
    PeerConfig,
)
from .peer_model import HF_CLASSES, PeerModel, _transformers, hf_config

PUBLISHED_PROCESSORS = {
    "qwen2-vl": (QWEN_IMAGE_PROCESSOR, QWEN_VIDEO_PROCESSOR),
    "qwen2.5-vl": (QWEN_IMAGE_PROCESSOR, QWEN_VIDEO_PROCESSOR),
    "llava-onevision": (LLAVA_OV_IMAGE_PROCESSOR, LLAVA_OV_VIDEO_PROCESSOR),
}
_BOOKKEEPING = ("image_processor_type", "video_processor_type", "processor_class", "transformers_version")


def save_peer_checkpoint(model: PeerModel, path: str | Path) -> Path:
    """Write `model` with transformers' save_pretrained, and its processors' settings; returns the directory."""
    root = Path(path)
    cfg = model.config
    # Own storage per tensor: the compiled engine fuses q/k/v into slices of one tensor, which safetensors refuses.
    model.hf.save_pretrained(root, state_dict={k: _own(v.detach()) for k, v in model.hf.state_dict().items()})
    names = HF_CLASSES[cfg.kind]
    _write_json(root / "preprocessor_config.json", cfg.image_processor | {"image_processor_type": names[3]})
    if cfg.video_processor:
        _write_json(root / "video_preprocessor_config.json", cfg.video_processor | {"video_processor_type": names[4]})
    return root


def peer_config_from_checkpoint(path: str | Path, name: str | None = None) -> PeerConfig:
    """The `PeerConfig` a checkpoint directory describes: its config.json in the published layout, its processors'."""
    root = Path(path)
    if not (root / "config.json").is_file():
        raise CheckpointError(f"{root} has no config.json: not a transformers checkpoint directory")
    data = dict(_read_json(root / "config.json"))
    kind = MODEL_TYPES.get(data.get("model_type"))
    if kind is None:
        raise CheckpointError(
            f"{root / 'config.json'}: model_type {data.get('model_type')!r} is not a peer VLM "
            f"(known: {', '.join(MODEL_TYPES)})"
        )
    image = _processor(root / "preprocessor_config.json", PUBLISHED_PROCESSORS[kind][0])
    video = _processor(root / "video_preprocessor_config.json", PUBLISHED_PROCESSORS[kind][1])
    return PeerConfig(name or root.name, kind, _published(data, kind), image, video, f"checkpoint {root}")


def load_peer_checkpoint(
    path: str | Path,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device = "cpu",
    attn_implementation: str = "sdpa",
) -> PeerModel:
    """The peer a checkpoint holds, loaded by transformers' from_pretrained (safetensors only), every tensor checked."""
    check_attn_implementation(attn_implementation)
    cfg = peer_config_from_checkpoint(path)
    root = Path(path)
    _weight_files(root)  # refuses a folder of pickle weights, or none
    hf, info = _transformers(HF_CLASSES[cfg.kind][1]).from_pretrained(
        root,
        config=hf_config(cfg, attn_implementation),
        dtype=dtype,
        device_map=str(device),
        use_safetensors=True,
        ignore_mismatched_sizes=True,
        output_loading_info=True,
    )
    problems = [
        f"{label} {len(items)} ({_preview(sorted(map(str, items)))})"
        for label, items in (
            ("missing", info.get("missing_keys")),
            ("unexpected", info.get("unexpected_keys")),
            ("mis-shaped", info.get("mismatched_keys")),
        )
        if items
    ]
    if problems:
        raise CheckpointError(f"{root}: weights do not match its config.json: " + "; ".join(problems))
    return PeerModel(cfg, hf.eval()).eval()


def _published(data: dict, kind: str) -> dict:
    """config.json as the published checkpoints write it (peer_config.py): transformers 5 nests a Qwen2-VL's text
    settings in `text_config` and keeps rope_theta inside `rope_parameters`; the cost model reads them flat."""
    data = {k: v for k, v in data.items() if k not in ("transformers_version", "dtype", "torch_dtype")}
    text = dict(data.pop("text_config", {}) if kind != "llava-onevision" else data.get("text_config", {}))
    rope = text.get("rope_parameters") or data.get("rope_parameters") or {}
    text.setdefault("rope_theta", rope.get("rope_theta", data.get("rope_theta")))
    if kind == "llava-onevision":
        return data | {"text_config": text}
    text = {k: v for k, v in text.items() if k not in ("model_type", "architectures")}
    if "mrope_section" in rope:
        text.setdefault("rope_scaling", {"type": "mrope", "mrope_section": rope["mrope_section"]})
    return text | data


def _processor(file: Path, published: dict) -> dict:
    if not file.is_file():
        return dict(published)
    settings = {k: v for k, v in _read_json(file).items() if k not in _BOOKKEEPING}
    size = settings.get("size") or {}
    if "max_pixels" in published and "shortest_edge" in size:  # transformers 5 writes Qwen's pixel bounds as `size`
        settings.setdefault("min_pixels", size["shortest_edge"])
        settings.setdefault("max_pixels", size["longest_edge"])
    return settings
