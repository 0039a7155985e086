"""The engines section names the kernels the vision tower's and the compiled LLM prefill's attention ran with
(the prefill suite's `vision_attention`, `llm_prefill_attention`), so a slow stage can be told from a missing
fused kernel."""

from __future__ import annotations

from test_report import engine_record

from nvila_bench.core.results import Metric
from nvila_bench.reports import sections


def test_a_prefill_row_notes_the_vision_and_llm_prefill_attention_kernels():
    compiled = engine_record("prefill", "compiled", 0.1)
    compiled.metrics["vision_attention"] = Metric.measured("flash_attention", "text")
    compiled.metrics["llm_prefill_attention"] = Metric.measured("math", "text")
    peer = engine_record("prefill", "hf-static", 0.2)
    (row,) = sections.build([compiled, peer], ["x.jsonl"])["engines"]["rows"]
    assert row["notes"] == ["vision attention: flash_attention", "LLM prefill attention: math"]
    (row,) = sections.build([engine_record("prefill", "compiled", 0.1), peer], ["x.jsonl"])["engines"]["rows"]
    assert row["notes"] == []  # older records: nothing claimed


def test_headline_and_roofline_state_each_figure_over_the_transformers_peers():
    from nvila_bench.reports.render import render_report

    records = [engine_record(suite, engine, seconds) for suite in ("prefill", "decode")
               for engine, seconds in (("compiled", 0.1), ("hf-static", 0.25), ("eager", 0.3))]  # fmt: skip
    for r in records:  # the cost model's figures the roofline places each stage by
        for stage in ("llm_prefill", "decode_step"):
            r.metrics |= {f"{stage}_flops": Metric.analytic(1e12, "FLOP"), f"{stage}_bytes": Metric.analytic(1e10, "bytes")}
    built = sections.build(records, ["x.jsonl"])
    (group,) = built["headline"]["groups"].values()
    rows = {r["engine"]: r for r in group}
    assert [(p["engine"], round(p["ratio"], 3), p["same_run"]) for p in rows["compiled"]["ttft_vs_peers"]] == [("hf-static", 2.5, True)]
    assert [(p["engine"], round(p["ratio"], 3)) for p in rows["eager"]["decode_vs_peers"]] == [("hf-static", 0.833)]
    assert rows["hf-static"]["ttft_vs_peers"] == []  # a peer states no ratio over itself
    stated = [(r["suite"], r["engine"], r["stage"]) for r in built["roofline"]["rows"] if r["vs_peers"]]
    assert ("decode", "compiled", "decode_step") in stated and all(stage != "llm_prefill" or suite == "prefill" for suite, _, stage in stated)
    assert "<strong>2.50x</strong> TTFT vs hf-static" in render_report(records, ["x.jsonl"])


def test_a_compiled_decode_records_prefill_is_named_as_the_eager_one_it_is():
    decode = engine_record("decode", "compiled", 0.1)
    decode.metrics["prefill_engine"] = Metric.measured("eager, into the static cache", "text")
    for stage in ("llm_prefill", "decode_step"):
        decode.metrics |= {f"{stage}_flops": Metric.analytic(1e12, "FLOP"), f"{stage}_bytes": Metric.analytic(1e10, "bytes")}
    built = sections.build([decode, engine_record("decode", "hf-static", 0.2)], ["x.jsonl"])
    engines = {r["stage"]: r["engine"] for r in built["roofline"]["rows"] if r["suite"] == "decode"}
    assert engines == {"llm_prefill": "eager, into the static cache", "decode_step": "compiled"}
    (row,) = built["engines"]["rows"]
    assert "compiled's prefill here: eager, into the static cache" in row["notes"]


def test_the_setup_column_tells_the_graph_captures_apart_where_recorded():
    from nvila_bench.reports.render import render_report

    compiled = engine_record("decode", "compiled", 0.1)
    compiled.metrics |= {"setup_seconds": Metric.measured(30.5, "s", "lower"), "graph_capture_seconds": Metric.measured(0.25, "s", "lower")}
    peer = engine_record("decode", "hf-static", 0.2)
    (row,) = sections.build([compiled, peer], ["x.jsonl"])["engines"]["rows"]
    assert (row["reference_setup"], row["reference_capture"]) == (30.5, 0.25)
    assert "of which graph capture 0.25 s" in render_report([compiled, peer], ["x.jsonl"])
    (row,) = sections.build([engine_record("decode", "compiled", 0.1), peer], ["x.jsonl"])["engines"]["rows"]
    assert row["reference_capture"] is None  # no graph (a CPU, or an older record): nothing claimed
