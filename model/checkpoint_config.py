"""What an NVILA / VILA1.5 checkpoint directory describes, read without torch or transformers: its config.json
files, checked value by value, and its safetensors headers (names and shapes, never the tensors). The loader
(checkpoint.py) builds and fills the model this describes; `nvila-bench info --checkpoint` prints it.

    <dir>/config.json                 top-level VLM config (image_aspect_ratio, s2_scales, ...)
    <dir>/llm/                        config.json + *.safetensors (sharded with an index, or not)
    <dir>/vision_tower/               config.json + model.safetensors (keys `vision_model.*`)
    <dir>/mm_projector/               config.json + model.safetensors (keys `layers.<idx>.*`)
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from .config import LLMConfig, MediaConfig, NVILAConfig, ProjectorConfig, VisionConfig

VISION_PREFIX = "vision_model."
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
MAX_JSON_BYTES = 64 << 20  # a config.json or shard index; real ones are kilobytes
NEWLINE_IDS = {"qwen2": 198, "llama": 13}  # tokenizer("\n") of the Qwen2 and LLaMA-2 tokenizers


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded as asked; the message says what is wrong."""


def config_from_checkpoint(path: str | Path, name: str | None = None) -> NVILAConfig:
    """The `NVILAConfig` a checkpoint directory describes, from its config.json files. Every value is checked
    (type, range: `config.py`'s maxima) before anything is built; a bad one is a `CheckpointError` naming its file."""
    root = _check_dir(path)
    top_file = root / "config.json"
    top = _read_json(top_file)
    llm_file, llm_json = _component_config(root, top, "llm")
    vit_file, vit_json = _component_config(root, top, "vision_tower")
    _, proj_json = _component_config(root, top, "mm_projector")

    arch = str(llm_json.get("model_type", "")).lower()
    if arch not in NEWLINE_IDS:
        raise CheckpointError(f"{llm_file}: unsupported LLM model_type {arch!r} (supported: qwen2, llama)")
    rope = llm_json.get("rope_parameters") or {}
    vocab = llm_json["vocab_size"]
    llm = _build(
        llm_file,
        LLMConfig,
        arch=arch,
        hidden_size=llm_json["hidden_size"],
        num_layers=llm_json["num_hidden_layers"],
        num_heads=llm_json["num_attention_heads"],
        num_kv_heads=llm_json.get("num_key_value_heads") or llm_json["num_attention_heads"],
        intermediate_size=llm_json["intermediate_size"],
        vocab_size=vocab,
        rope_theta=_number((rope if isinstance(rope, dict) else {}).get("rope_theta", llm_json.get("rope_theta", 1e4))),
        rms_norm_eps=llm_json.get("rms_norm_eps", 1e-6),
        tie_word_embeddings=bool(llm_json.get("tie_word_embeddings", False)),
        max_position_embeddings=llm_json.get("max_position_embeddings", 4096),
        bos_token_id=llm_json.get("bos_token_id"),
        eos_token_id=_first(llm_json.get("eos_token_id")),
        newline_token_id=198 if type(vocab) is int and vocab >= 128000 else NEWLINE_IDS[arch],  # Llama-3: 198
    )
    use_head = vit_json.get("vision_use_head")
    if use_head is None:  # transformers' default is True; let the stored tensors decide
        use_head = any(k.startswith(VISION_PREFIX + "head.") for k in _tensor_shapes(root / "vision_tower"))
    vision = _build(
        vit_file,
        VisionConfig,
        image_size=vit_json["image_size"],
        patch_size=vit_json["patch_size"],
        hidden_size=vit_json["hidden_size"],
        intermediate_size=vit_json["intermediate_size"],
        num_layers=vit_json["num_hidden_layers"],
        num_heads=vit_json["num_attention_heads"],
        layer_norm_eps=vit_json.get("layer_norm_eps", 1e-6),
        select_layer=top.get("mm_vision_select_layer", -2),
        use_head=bool(use_head),
    )
    image_mode = "dynamic_s2" if top.get("dynamic_s2") else top.get("image_aspect_ratio", "resize")
    if image_mode not in ("dynamic_s2", "dynamic", "resize"):
        raise CheckpointError(f"{top_file}: unsupported image_aspect_ratio {image_mode!r}")
    projector_type = proj_json.get("mm_projector_type")
    family = _family(image_mode, projector_type, arch)
    media = _build(
        top_file,
        MediaConfig,
        image_mode=image_mode,
        s2_scales=_scales(top.get("s2_scales", "448,896,1344"), top_file),
        min_tiles=top.get("min_tiles", 1),
        max_tiles=top.get("max_tiles", 12),
        separator=family != "vila1.5",  # VILA1.5-era code appended no "\n" after media (docs/reference.md#vila15)
        tile_newline_text=family == "nvila-lite",
        temporal_pool=_tsp_pool(top.get("video_encoder"), top_file),
        num_video_frames=top.get("num_video_frames", 8),
    )
    projector = _build(
        top_file,
        ProjectorConfig,
        type=projector_type,
        mm_hidden_size=top.get(
            "mm_hidden_size", vision.hidden_size * (len(media.s2_scales) if image_mode == "dynamic_s2" else 1)
        ),
        hidden_size=llm.hidden_size,
        token_order="column"
        if family == "vila1.5"
        # VILA1.5 was trained on the old order (docs/reference.md#projectors-and-spatial-token-concatenation-stc)
        else "row",
    )
    return _build(
        root,
        NVILAConfig,
        name=name or root.name,
        family=family,
        vision=vision,
        projector=projector,
        llm=llm,
        media=media,
        description=f"checkpoint {root}",
    )


class _Json(dict):
    """A config.json object that names its file when a required key is missing."""

    def __init__(self, data: dict, file: Path | str):
        super().__init__(data)
        self.file = file

    def __missing__(self, key):
        raise CheckpointError(f"{self.file} lacks the required key {key!r}")


def _build(file: Path | str, cls, **fields):
    """`cls(**fields)`, its validation errors as a `CheckpointError` naming the file the values came from."""
    try:
        return cls(**fields)
    except ValueError as e:
        raise CheckpointError(f"{file}: {e}") from None


def _preview(items: list[str], limit: int = 4) -> str:
    return ", ".join(items[:limit]) + (f", ... {len(items) - limit} more" if len(items) > limit else "")


def _check_dir(path: str | Path) -> Path:
    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(f"checkpoint directory {root} does not exist")
    if not (root / "config.json").is_file():
        raise CheckpointError(f"{root} has no config.json: not an NVILA / VILA checkpoint directory")
    return root


def _component_config(root: Path, top: dict, folder: str) -> tuple[Path, _Json]:
    file = root / folder / "config.json"
    if file.is_file():
        return file, _read_json(file)
    inline = top.get(f"{folder}_cfg")
    if isinstance(inline, dict) and len(inline) > 3:  # a full copy, not just a pointer
        return root / "config.json", _Json(inline, f"{root / 'config.json'} ({folder}_cfg)")
    raise CheckpointError(f"{root}: missing {folder}/config.json")


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise CheckpointError(f"{index}: weight_map must map tensor names to shard file names")
        files = [_inside(folder, name, index) for name in sorted(set(weight_map.values()))]
        absent = [f.name for f in files if not f.is_file()]
        if absent:
            raise CheckpointError(f"{folder}: shards named in the index are missing: {', '.join(absent)}")
        return files
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        pickles = sorted(f.name for f in folder.iterdir() if f.suffix in PICKLE_SUFFIXES) if folder.is_dir() else []
        if pickles:
            raise CheckpointError(
                f"{folder} holds only pickle weights ({', '.join(pickles)}); nvila-bench loads safetensors only "
                "(pickle can run code): convert them with safetensors first"
            )
        raise CheckpointError(f"{folder}: no *.safetensors weights found")
    odd = [f.name for f in files if not f.is_file()]  # a FIFO would wait for a writer for ever
    if odd:
        raise CheckpointError(f"{folder}: not regular files: {_preview(odd)}")
    return [_inside(folder, f.name, folder) for f in files]


def _inside(folder: Path, name: str, source: Path) -> Path:
    """`folder / name`, refused unless the name stays inside `folder` (no absolute path, no `..`). A symlink
    the folder itself holds is followed: the Hugging Face cache keeps each snapshot's weights as links into
    ../../blobs, and the user made that folder, not the index naming files in it."""
    file = folder / name
    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise CheckpointError(f"{source}: weight file {name!r} lies outside {folder}")
    return file


def _tensor_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from each weight file's safetensors header: an 8-byte little-endian length, then that
    much JSON (the format's whole header); nothing else of the file is read."""
    shapes = {}
    for file in _weight_files(folder):
        shapes |= _header_shapes(file)
    return shapes


def _header_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    try:
        with file.open("rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > MAX_JSON_BYTES:
                raise ValueError(f"a {size:,}-byte header")
            header = json.loads(f.read(size))
        return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    except (OSError, ValueError, struct.error, TypeError, KeyError) as e:
        raise CheckpointError(f"{file}: not a readable safetensors file ({type(e).__name__}: {e})") from None


def _family(image_mode: str, projector_type: str | None, arch: str) -> str:
    if image_mode == "dynamic_s2":
        return "nvila"
    if projector_type == "mlp_downsample_3x3_fix" or image_mode == "dynamic":
        return "nvila-lite"
    return "vila1.5" if arch == "llama" else "nvila-video"


def _tsp_pool(video_encoder, file: Path) -> tuple | None:
    try:
        spec = json.loads(video_encoder) if isinstance(video_encoder, str) else (video_encoder or {})
    except ValueError:
        spec = None
    if not isinstance(spec, dict):
        raise CheckpointError(f"{file}: video_encoder is not a JSON object")
    if "TSP" not in str(spec.get("_target_", "")):
        return None
    sizes = spec.get("pool_sizes") or []
    if not isinstance(sizes, list) or len(sizes) != 1 or not isinstance(sizes[0], list):
        raise CheckpointError(f"{file}: a TSP video encoder needs exactly one pool size [frames, rows, cols]")
    return tuple(sizes[0])  # MediaConfig checks the values


def _scales(value, file: Path) -> tuple[int, ...]:
    """s2_scales as stored upstream: "448,896,1344" (a list is accepted too)."""
    parts = value if isinstance(value, list) else str(value).split(",")
    try:
        return tuple(p if type(p) is int else int(str(p).strip()) for p in parts)
    except ValueError:
        raise CheckpointError(f"{file}: s2_scales must be comma-separated integers, got {str(value)[:40]!r}") from None


def _number(value):
    return float(value) if type(value) in (int, float) else value  # anything else: the config check refuses it


def _first(value):
    return value[0] if isinstance(value, list) and value else value


def read_json_object(path: Path, error: type[ValueError] = CheckpointError) -> dict:
    """A config file's JSON object, bounded in size; anything else raises `error` in one line."""
    try:
        text = path.read_text() if path.stat().st_size <= MAX_JSON_BYTES else None
        data = json.loads(text) if text is not None else None
    except (OSError, ValueError, RecursionError) as e:  # ValueError: not JSON, not UTF-8
        raise error(f"cannot read {path}: {type(e).__name__}: {e}") from None
    if text is None:
        raise error(f"{path}: over {MAX_JSON_BYTES >> 20} MiB, not a config")
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _read_json(path: Path) -> _Json:
    return _Json(read_json_object(path), path)
