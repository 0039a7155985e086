"""Reference NVILA / VILA1.5 model: configs, presets, preprocessing, token counts, the model itself and
its checkpoint loader. Installed as `nvila_bench.model`.

Exports load lazily so that pure functions (presets, token counts) answer without importing torch and
transformers.
"""

from importlib import import_module

_EXPORTS = {
    "LLMConfig": "config",
    "MediaConfig": "config",
    "NVILAConfig": "config",
    "ProjectorConfig": "config",
    "VisionConfig": "config",
    "get_preset": "presets",
    "preset_names": "presets",
    "TokenCount": "tokens",
    "count_visual_tokens": "tokens",
    "NVILAModel": "nvila",
    "PrefillOutput": "nvila",
    "build_model": "nvila",
    "MediaInputs": "preprocess",
    "preprocess_media": "preprocess",
    "synthetic_image": "preprocess",
    "synthetic_video": "preprocess",
    "synthetic_prompt": "prompt",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "CheckpointError": "checkpoint_config",
    "param_counts": "params",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
