"""The engines section names the kernel the vision tower's attention ran with (the prefill suite's
`vision_attention`), so a slow vision stage can be told from a missing fused kernel."""

from __future__ import annotations

from test_report import engine_record

from nvila_bench.core.results import Metric
from nvila_bench.reports import sections


def test_a_prefill_row_notes_the_vision_attention_kernel():
    compiled = engine_record("prefill", "compiled", 0.1)
    compiled.metrics["vision_attention"] = Metric.measured("flash_attention", "text")
    peer = engine_record("prefill", "hf-static", 0.2)
    (row,) = sections.build([compiled, peer], ["x.jsonl"])["engines"]["rows"]
    assert row["notes"] == ["vision attention: flash_attention"]
    (row,) = sections.build([engine_record("prefill", "compiled", 0.1), peer], ["x.jsonl"])["engines"]["rows"]
    assert row["notes"] == []  # older records: nothing claimed
