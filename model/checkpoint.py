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

from .config import LLMConfig, MediaConfig, NVILAConfig, ProjectorConfig, VisionConfig
from .nvila import NVILAModel, _default_dtype, build_model, llm_hf_config
from .vision import siglip_config

VISION_PREFIX = "vision_model."
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
MAX_JSON_BYTES = 64 << 20  # a config.json or shard index; real ones are kilobytes
NEWLINE_IDS = {"qwen2": 198, "llama": 13}  # tokenizer("\n") of the Qwen2 and LLaMA-2 tokenizers


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded as asked; the message says what is wrong."""


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


@contextlib.contextmanager
def _open_weights(file: Path):
    try:
        with safe_open(str(file), framework="pt") as f:
            yield f
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{file}: not a readable safetensors file ({e})") from None


def _tensor_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for file in _weight_files(folder):
        with _open_weights(file) as f:
            shapes |= {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    return shapes


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


def _llm_class_name(cfg: LLMConfig) -> str:
    return {"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM"}[cfg.arch]


def _first(value):
    return value[0] if isinstance(value, list) and value else value


def _read_json(path: Path) -> _Json:
    try:
        text = path.read_text() if path.stat().st_size <= MAX_JSON_BYTES else None
        data = json.loads(text) if text is not None else None
    except (OSError, ValueError, RecursionError) as e:  # ValueError: not JSON, not UTF-8
        raise CheckpointError(f"cannot read {path}: {type(e).__name__}: {e}") from None
    if text is None:
        raise CheckpointError(f"{path}: over {MAX_JSON_BYTES >> 20} MiB, not a config")
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return _Json(data, path)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
