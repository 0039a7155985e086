import functools

import pytest
import torch
from nvila_bench.model import build_model, get_preset

TINY = ["nvila-tiny", "nvila-lite-tiny", "nvila-video-tiny", "vila-tiny"]
REAL = ["nvila-8b", "nvila-lite-2b", "nvila-lite-8b", "nvila-8b-video", "vila1.5-3b", "vila1.5-8b"]
PEERS = [
    "qwen2-vl-7b",
    "qwen2.5-vl-7b",
    "llava-onevision-7b",
    "qwen2-vl-tiny",
    "qwen2.5-vl-tiny",
    "llava-onevision-tiny",
]


@functools.cache
def tiny_model(name: str):
    """One fp32 random-weight model per tiny preset, shared by the tests (read-only use)."""
    return build_model(get_preset(name), dtype=torch.float32, attn_implementation="eager")


@pytest.fixture(params=TINY)
def tiny(request):
    return tiny_model(request.param)


def read_dicts(path) -> list[dict]:
    """The records of a results file as the JSON objects the file holds (version 2, with every field)."""
    from nvila_bench.core.measuring.result_files import read_results

    return [r.to_dict() for r in read_results(path)]


@pytest.fixture
def declared_suites(monkeypatch):
    """`nvila-bench report / gate / dashboard` read every suite's declarations: here `fake_records.declared()`,
    where a suite that declares no gated metric yet gates the gate's former defaults."""
    from fake_records import declared
    from nvila_bench.suites import registry

    outputs = declared()
    monkeypatch.setattr(registry, "declared_outputs", lambda: outputs)
    return outputs
