"""A peer VLM's checkpoint in transformers' own layout (`save_pretrained`), safetensors only:

    <dir>/config.json                       the model's config (its model_type names the peer)
    <dir>/model.safetensors                 the weights, as transformers writes them (sharded with an index, or not)
    <dir>/preprocessor_config.json          the image processor's settings
    <dir>/video_preprocessor_config.json    the video processor's, where the peer has one
    <dir>/processor_config.json             LLaVA-OV's processor: tokens per view, feature strategy, anyres limit
    <dir>/tokenizer.json, tokenizer_config.json, chat_template.jinja   given a tokenizer (model/peer_tokenizer.py)

With a tokenizer the directory is what transformers' AutoProcessor / AutoTokenizer and lmms-eval's adapters load.

Loading is strict: a config that is not a peer's, a missing, unexpected or mis-shaped tensor, or pickle weights
are refused with one `CheckpointError` line (a ValueError). A missing processor file means the kind's published
settings (model/peer_config.py).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import _own, _write_json
from .checkpoint_config import CheckpointError, _preview, _weight_files
from .nvila import check_attn_implementation
from .peer_checkpoint_config import peer_config_from_checkpoint
from .peer_model import HF_CLASSES, PeerModel, _transformers, hf_config


def save_peer_checkpoint(model: PeerModel, path: str | Path, tokenizer=None) -> Path:
    """Write `model` with transformers' save_pretrained, its processors' settings and, given one, `tokenizer` (with
    its chat template); returns the directory."""
    root = Path(path)
    cfg = model.config
    # Own storage per tensor: the compiled engine fuses q/k/v into slices of one tensor, which safetensors refuses.
    model.hf.save_pretrained(root, state_dict={k: _own(v.detach()) for k, v in model.hf.state_dict().items()})
    names = HF_CLASSES[cfg.kind]
    _write_json(root / "preprocessor_config.json", cfg.image_processor | {"image_processor_type": names[3]})
    if cfg.video_processor:
        _write_json(root / "video_preprocessor_config.json", cfg.video_processor | {"video_processor_type": names[4]})
    if cfg.kind == "llava-onevision":  # LlavaOnevisionProcessor's own settings, as the published checkpoint has them
        processor = {
            "processor_class": "LlavaOnevisionProcessor",
            "num_image_tokens": cfg.image_processor["num_image_tokens"],
            "vision_feature_select_strategy": cfg.hf_config.get("vision_feature_select_strategy", "full"),
            "vision_aspect_ratio": cfg.image_processor["vision_aspect_ratio"],
        }
        _write_json(root / "processor_config.json", processor)
    if tokenizer is not None:
        tokenizer.save_pretrained(root)
    return root


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
