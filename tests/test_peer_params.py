"""A peer VLM's parameter counts: the closed form (model/peer_params.py) equals transformers' own model built on the
meta device, part by part and in total, for every peer preset (docs/reference.md#peer-vlms)."""

import pytest
import torch
from nvila_bench.model.params import param_counts
from nvila_bench.model.peer_config import PEER_PRESETS
from nvila_bench.model.peer_params import peer_param_counts

# Module prefixes of transformers' models -> parts. Qwen2-VL's merger lives inside `visual` but is the projector.
PARTS = [
    ("model.visual.merger.", "projector"),
    ("model.multi_modal_projector.", "projector"),
    ("model.image_newline", "projector"),
    ("model.visual.", "vision"),
    ("model.vision_tower.", "vision"),
    ("model.language_model.", "llm"),
    ("lm_head.", "llm"),
]


def built_counts(cfg) -> dict[str, int]:
    import transformers

    classes = {
        "qwen2-vl": ("Qwen2VLConfig", "Qwen2VLForConditionalGeneration"),
        "qwen2.5-vl": ("Qwen2_5_VLConfig", "Qwen2_5_VLForConditionalGeneration"),
        "llava-onevision": ("LlavaOnevisionConfig", "LlavaOnevisionForConditionalGeneration"),
    }
    config_class, model_class = (getattr(transformers, n) for n in classes[cfg.kind])
    with torch.device("meta"):
        model = model_class(config_class(**cfg.hf_config))
    counts = dict.fromkeys(("vision", "projector", "llm"), 0)
    for name, p in model.named_parameters():  # a tied tensor is listed once
        part = next((part for prefix, part in PARTS if name.startswith(prefix)), None)
        assert part is not None, f"{name}: no part"
        counts[part] += p.numel()
    return counts | {"total": sum(counts.values())}


@pytest.mark.parametrize("cfg", PEER_PRESETS, ids=lambda c: c.name)
def test_closed_form_equals_transformers_model(cfg):
    assert peer_param_counts(cfg) == built_counts(cfg)
    assert param_counts(cfg) == peer_param_counts(cfg)


def test_published_sizes():
    """The 7B models' sizes as their model cards round them: Qwen2-VL 8.29B, Qwen2.5-VL 8.29B, LLaVA-OV 8.03B."""
    totals = {c.name: peer_param_counts(c)["total"] for c in PEER_PRESETS if not c.is_tiny}
    assert {n: round(t / 1e9, 2) for n, t in totals.items()} == {
        "qwen2-vl-7b": 8.29,
        "qwen2.5-vl-7b": 8.29,
        "llava-onevision-7b": 8.03,
    }
