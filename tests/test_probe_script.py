"""benchmarks/decode_variants.py (the GPU probe of the notes file) runs end to end on CPU with the tiny presets.

The probe runs only on a lent GPU, with minutes of device time: an engine API change that broke one of its
variants would cost a GPU session. Here every variant family runs once, the prefill and vision kernel tables
included (the decode one profiles a CUDA graph's replays: GPU only)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from nvila_bench.core.measuring.timing import MeasureConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def probe(monkeypatch):
    spec = importlib.util.spec_from_file_location("decode_variants", ROOT / "benchmarks" / "decode_variants.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, value in {
        "DEVICE": torch.device("cpu"),
        "BIG": "nvila-tiny",
        "IMAGE": (448, 448),
        "PROMPT": 16,
        "NEW": 6,
        "TIMING": MeasureConfig(warmup=0, repeats=1, min_seconds=0),
    }.items():
        monkeypatch.setattr(module, name, value)
    return module


def rows(out: Path) -> dict[str, dict]:
    lines = [json.loads(line) for line in (out / "variants.jsonl").read_text().splitlines()]
    return {row["variant"]: row for row in lines}


def test_every_variant_family_runs_and_is_recorded(probe, tmp_path):
    parts = [
        "prefill:nvila-lite-tiny:eager,fast,fast-nograph",
        "vision:layers,fast-noepilogue,fast+flash",
        "decode:sdpa,hf-static",
    ]
    probe.main(tmp_path, [*parts, "kernels"])
    got = rows(tmp_path)
    errors = {k: v["error"] for k, v in got.items() if "error" in v}
    assert not errors
    assert got["device"]["name"] == "cpu"
    for name in ("eager", "fast", "fast-nograph"):
        row = got[f"prefill nvila-lite-tiny {name}"]
        assert row["llm_prefill"] > 0 and row["vision"] > 0 and len(row["token"]) == 1
        assert row["media_note"] is None  # the media stages compiled, once for all the variants
        assert got[f"prefill kernels nvila-lite-tiny {name}"]["rows"]  # the profiler saw operators
    # The compiled engine's prefill is model/fast_llm.py's and names its SDPA backend; transformers' eager one none.
    assert (
        got["prefill nvila-lite-tiny fast"]["attention"] and got["prefill nvila-lite-tiny eager"]["attention"] is None
    )
    for name in ("layers", "fast-noepilogue", "fast+flash"):  # +flash: the tower's SDPA pinned (CPU has a flash kernel)
        assert got[f"vision {name}"]["vision"] > 0 and got[f"vision kernels {name}"]["rows"]
    for name in ("sdpa", "hf-static"):
        assert got[f"decode {name}"]["tpot_ms"] > 0 and len(got[f"decode {name}"]["ids16"]) == 6


def test_an_unknown_vision_variant_is_recorded_as_an_error(probe, tmp_path):
    probe.main(tmp_path, ["vision:fast-typo"])
    assert "unknown vision variant 'fast-typo'" in rows(tmp_path)["vision fast-typo"]["error"]
