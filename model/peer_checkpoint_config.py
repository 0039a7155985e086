"""The `PeerConfig` a transformers-saved peer checkpoint describes, read without torch or transformers.

    <dir>/config.json                    model_type qwen2_vl, qwen2_5_vl or llava_onevision (LLM keys at the top
                                         level as published, or nested in text_config as transformers 5 saves them)
    <dir>/preprocessor_config.json       the image processor: min/max pixels (Qwen), crop size and grid (LLaVA-OV)
    <dir>/video_preprocessor_config.json the video processor (Qwen): min/max pixels per frame
    <dir>/processor_config.json          LLaVA-OV's num_image_tokens and vision_aspect_ratio

A missing processor file means the published checkpoint's settings (peer_config.py), as the description says.
Every value that decides a count is checked (type, range: config.py's maxima) before anything is built; a bad
one is a one-line `PeerCheckpointError` naming its file.
"""

from __future__ import annotations

from pathlib import Path

from .checkpoint_config import read_json_object
from .config import MAX_LAYERS, MAX_PIXELS, MAX_VOCAB, MAX_WIDTH
from .peer_config import MODEL_TYPES, PEER_PRESETS, PeerConfig

MAX_PINPOINTS = 1024
PUBLISHED = {cfg.kind: cfg for cfg in PEER_PRESETS if not cfg.is_tiny}


class PeerCheckpointError(ValueError):
    """A peer checkpoint directory that cannot be described; the message names the file and the value."""


def peer_model_type(path: str | Path) -> str | None:
    """The peer kind of the checkpoint in `path` (by config.json's model_type), or None for any other directory."""
    file = Path(path) / "config.json"
    if not file.is_file():
        return None
    return MODEL_TYPES.get(str(_read_json(file).get("model_type")))


def peer_config_from_checkpoint(path: str | Path, name: str | None = None) -> PeerConfig:
    root = Path(path)
    if not root.is_dir():
        raise PeerCheckpointError(f"checkpoint directory {root} does not exist")
    file = root / "config.json"
    if not file.is_file():
        raise PeerCheckpointError(f"{root} has no config.json")
    hf = _read_json(file)
    kind = MODEL_TYPES.get(str(hf.get("model_type")))
    if kind is None:
        raise PeerCheckpointError(
            f"{file}: model_type {str(hf.get('model_type'))[:40]!r} is not a peer VLM ({', '.join(MODEL_TYPES)})"
        )
    published = PUBLISHED[kind]
    sources = []
    image = _optional(root / "preprocessor_config.json", sources)
    video = _optional(root / "video_preprocessor_config.json", sources)
    if kind == "llava-onevision":
        processor = _optional(root / "processor_config.json", sources)
        image_processor, video_processor = _llava_processors(file, hf, image, video, processor, published, root)
    else:
        image_processor = _qwen_processor(root / "preprocessor_config.json", image, published.image_processor)
        video_processor = _qwen_processor(root / "video_preprocessor_config.json", video, published.video_processor)
    described = f"checkpoint {root} ({kind}; processor files: {', '.join(sources) or 'none'}, else {published.name}'s)"
    cfg = PeerConfig(name or root.name, kind, hf, image_processor, video_processor, described)
    _check(file, cfg)
    return cfg


# ---- checks ----------------------------------------------------------------------------------------------
def _check(file: Path, cfg: PeerConfig) -> None:
    """The values the token and parameter counts read, each a true int in range; the widths consistent."""
    _dict(file, cfg.hf_config, "text_config", cfg.text_config)
    try:
        llm = cfg.llm  # LLMConfig checks the LLM's sizes
    except (ValueError, TypeError) as e:
        raise PeerCheckpointError(f"{file}: {e}") from None
    except KeyError as e:
        raise PeerCheckpointError(f"{file}: the LLM's settings lack {e}") from None
    v = _dict(file, cfg.hf_config, "vision_config")
    if cfg.kind == "llava-onevision":
        _ints(
            file,
            "vision_config",
            v,
            hidden_size=MAX_WIDTH,
            intermediate_size=4 * MAX_WIDTH,
            image_size=MAX_PIXELS,
            patch_size=MAX_PIXELS,
            num_hidden_layers=MAX_LAYERS,
            num_attention_heads=MAX_WIDTH,
        )
        layer = cfg.hf_config.get("vision_feature_layer", -1)
        layers = [layer] if isinstance(layer, int) else layer
        if not isinstance(layers, list) or not 1 <= len(layers) <= 64 or any(type(n) is not int for n in layers):
            raise PeerCheckpointError(f"{file}: vision_feature_layer must be an integer or a list of integers")
        out = llm.hidden_size  # the projector maps to the LLM width itself
    else:
        width = "embed_dim" if cfg.kind == "qwen2-vl" else "hidden_size"
        limits = {
            width: MAX_WIDTH,
            "depth": MAX_LAYERS,
            "num_heads": MAX_WIDTH,
            "patch_size": MAX_PIXELS,
            "spatial_merge_size": 64,
            "temporal_patch_size": 64,
        }
        limits |= (
            {"hidden_size": MAX_WIDTH}
            if cfg.kind == "qwen2-vl"
            else {"intermediate_size": 4 * MAX_WIDTH, "out_hidden_size": MAX_WIDTH}
        )
        _ints(file, "vision_config", v, **limits)
        if "in_chans" in v:
            _ints(file, "vision_config", v, in_chans=16)
        ratio = v.get("mlp_ratio") if cfg.kind == "qwen2-vl" else 1
        if type(ratio) not in (int, float) or not 0 < ratio <= 64:
            raise PeerCheckpointError(f"{file}: vision_config mlp_ratio must be a number in (0, 64], got {ratio!r:.40}")
        if v[width] % v["num_heads"]:
            raise PeerCheckpointError(f"{file}: vision width {v[width]} is not divisible by {v['num_heads']} heads")
        out = v["hidden_size" if cfg.kind == "qwen2-vl" else "out_hidden_size"]
        p = cfg.image_processor
        if (v["patch_size"], v["spatial_merge_size"]) != (p["patch_size"], p["merge_size"]):
            raise PeerCheckpointError(f"{file}: the vision tower's patch and merge sizes differ from its processor's")
    if out != llm.hidden_size:
        raise PeerCheckpointError(f"{file}: the vision side outputs width {out}, the LLM takes {llm.hidden_size}")
    for key in ("image_token_id", "image_token_index", "video_token_id", "video_token_index"):
        if key in cfg.hf_config:
            _ints(file, "", cfg.hf_config, **{key: (0, MAX_VOCAB)})


def _qwen_processor(file: Path, data: dict | None, published: dict) -> dict:
    """min/max pixels as published (`min_pixels`, `max_pixels`) or as transformers 5 saves them (`size`)."""
    if data is None:
        return dict(published)
    size = data.get("size") if isinstance(data.get("size"), dict) else {}
    given = lambda *values: next((v for v in values if v is not None), None)  # noqa: E731 (null: unset)
    out = {
        "min_pixels": given(data.get("min_pixels"), size.get("shortest_edge"), published["min_pixels"]),
        "max_pixels": given(data.get("max_pixels"), size.get("longest_edge"), published["max_pixels"]),
    } | {k: given(data.get(k), published[k]) for k in ("patch_size", "temporal_patch_size", "merge_size")}
    _ints(
        file,
        "",
        out,
        min_pixels=MAX_PIXELS**2,
        max_pixels=MAX_PIXELS**2,
        patch_size=MAX_PIXELS,
        temporal_patch_size=64,
        merge_size=64,
    )
    if out["min_pixels"] > out["max_pixels"]:
        raise PeerCheckpointError(f"{file}: min_pixels {out['min_pixels']} exceeds max_pixels {out['max_pixels']}")
    return out


def _llava_processors(file, hf, image, video, processor, published, root) -> tuple[dict, dict]:
    """The crop size and grid (preprocessor_config.json, else config.json), the tokens per view and the
    anyres limit (processor_config.json, else the vision tower's patch grid and config.json)."""
    image, video, processor, ours = image or {}, video or {}, processor or {}, published.image_processor
    vision = _dict(file, hf, "vision_config")
    crop = _size(root / "preprocessor_config.json", image.get("size"), ours["size"])
    pinpoints = image.get("image_grid_pinpoints", hf.get("image_grid_pinpoints", ours["image_grid_pinpoints"]))
    if not (isinstance(pinpoints, list) and 1 <= len(pinpoints) <= MAX_PINPOINTS and all(map(_pair, pinpoints))):
        raise PeerCheckpointError(f"{file}: image_grid_pinpoints must be a list of [height, width] integer pairs")
    if crop["height"] != crop["width"] or any(side % crop["height"] for p in pinpoints for side in p):
        raise PeerCheckpointError(f"{file}: every pinpoint must be a multiple of the square {crop['height']}-px crop")
    _ints(file, "vision_config", vision, image_size=MAX_PIXELS, patch_size=MAX_PIXELS)
    tokens = processor.get("num_image_tokens", (vision["image_size"] // vision["patch_size"]) ** 2)
    aspect = processor.get("vision_aspect_ratio", hf.get("vision_aspect_ratio", "anyres_max_9"))
    limit = aspect.removeprefix("anyres_max_") if isinstance(aspect, str) and aspect.startswith("anyres_max_") else ""
    if not (limit.isdigit() and 1 <= int(limit) <= 1024):
        raise PeerCheckpointError(
            f"{file}: vision_aspect_ratio must be anyres_max_N, N in 1..1024, got {str(aspect)[:40]!r}"
        )
    out = {"size": crop, "image_grid_pinpoints": pinpoints, "num_image_tokens": tokens, "vision_aspect_ratio": aspect}
    _ints(file, "", out, num_image_tokens=MAX_PIXELS**2)
    return out, {
        "size": _size(root / "video_preprocessor_config.json", video.get("size"), published.video_processor["size"])
    }


def _pair(p) -> bool:
    return isinstance(p, list) and len(p) == 2 and all(type(x) is int and 1 <= x <= 16 * MAX_PIXELS for x in p)


def _size(file: Path, size, default: dict) -> dict:
    """{"height", "width"} of a crop, from either of transformers' spellings (height/width or shortest_edge)."""
    if size is None:
        return dict(default)
    if isinstance(size, dict) and "shortest_edge" in size and "height" not in size:
        size = {"height": size["shortest_edge"], "width": size["shortest_edge"]}
    if not isinstance(size, dict):
        raise PeerCheckpointError(f"{file}: size must be an object with height and width")
    out = {"height": size.get("height"), "width": size.get("width")}
    _ints(file, "size", out, height=MAX_PIXELS, width=MAX_PIXELS)
    return out


def _ints(file: Path, label: str, data: dict, **limits: int | tuple[int, int]) -> None:
    for key, limit in limits.items():
        lo, hi = limit if isinstance(limit, tuple) else (1, limit)
        if key not in data:
            raise PeerCheckpointError(f"{file} lacks the required key {key!r}" + (f" in {label}" if label else ""))
        value = data[key]
        if type(value) is not int or not lo <= value <= hi:
            name = f"{label} {key}" if label else key
            raise PeerCheckpointError(f"{file}: {name} must be an integer in {lo}..{hi}, got {value!r:.40}")


def _dict(file: Path, data: dict, key: str, value=None) -> dict:
    value = data.get(key) if value is None else value
    if not isinstance(value, dict):
        raise PeerCheckpointError(f"{file}: {key} must be a JSON object")
    return value


# ---- reading ---------------------------------------------------------------------------------------------
def _optional(file: Path, sources: list) -> dict | None:
    if not file.is_file():
        return None
    sources.append(file.name)
    return _read_json(file)


def _read_json(path: Path) -> dict:
    return read_json_object(path, PeerCheckpointError)
