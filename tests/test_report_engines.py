"""The engines section names the kernels the vision tower's and the compiled LLM prefill's attention ran with
(the prefill suite's `vision_attention`, `llm_prefill_attention`), so a slow stage can be told from a missing
fused kernel; and it compares two decode engines by their last step's logits where their ids cannot tell them
apart."""

from __future__ import annotations

import pytest
from fake_records import html_section, report_data
from test_report import engine_record

from nvila_bench.core.measuring.results import Metric


def test_a_prefill_row_notes_the_vision_and_llm_prefill_attention_kernels():
    compiled = engine_record("prefill", "compiled", 0.1)
    compiled.metrics["vision_attention"] = Metric.measured("flash_attention", "text")
    compiled.metrics["llm_prefill_attention"] = Metric.measured("math", "text")
    peer = engine_record("prefill", "hf-static", 0.2)
    (row,) = report_data([compiled, peer])["engines"]["rows"]
    assert row["notes"] == ["vision attention: flash_attention", "LLM prefill attention: math"]
    (row,) = report_data([engine_record("prefill", "compiled", 0.1), peer])["engines"]["rows"]
    assert row["notes"] == []  # older records: nothing claimed


def test_headline_and_roofline_state_each_figure_over_the_transformers_peers():
    from fake_records import report_html

    records = [
        engine_record(suite, engine, seconds)
        for suite in ("prefill", "decode")
        for engine, seconds in (("compiled", 0.1), ("hf-static", 0.25), ("eager", 0.3))
    ]
    for r in records:  # the cost model's figures the roofline places each stage by
        for stage in ("llm_prefill", "decode_step"):
            r.metrics |= {
                f"{stage}_flops": Metric.analytic(1e12, "FLOP"),
                f"{stage}_bytes": Metric.analytic(1e10, "bytes"),
            }
    built = report_data(records)
    (group,) = built["headline"]["groups"].values()
    rows = {r["engine"]: r for r in group}
    assert [(p["engine"], round(p["ratio"], 3), p["same_run"]) for p in rows["compiled"]["ttft_vs_peers"]] == [
        ("hf-static", 2.5, True)
    ]
    assert [(p["engine"], round(p["ratio"], 3)) for p in rows["eager"]["decode_vs_peers"]] == [("hf-static", 0.833)]
    assert rows["hf-static"]["ttft_vs_peers"] == []  # a peer states no ratio over itself
    stated = [(r["suite"], r["engine"], r["stage"]) for r in built["roofline"]["rows"] if r["vs_peers"]]
    assert ("decode", "compiled", "decode_step") in stated and all(
        stage != "llm_prefill" or suite == "prefill" for suite, _, stage in stated
    )
    assert "<strong>2.50x</strong> TTFT vs hf-static" in report_html(records, ["x.jsonl"])


def test_a_compiled_decode_records_prefill_is_named_as_the_eager_one_it_is():
    decode = engine_record("decode", "compiled", 0.1)
    decode.metrics["prefill_engine"] = Metric.measured("eager, into the static cache", "text")
    for stage in ("llm_prefill", "decode_step"):
        decode.metrics |= {
            f"{stage}_flops": Metric.analytic(1e12, "FLOP"),
            f"{stage}_bytes": Metric.analytic(1e10, "bytes"),
        }
    built = report_data([decode, engine_record("decode", "hf-static", 0.2)])
    engines = {r["stage"]: r["engine"] for r in built["roofline"]["rows"] if r["suite"] == "decode"}
    assert engines == {"llm_prefill": "eager, into the static cache", "decode_step": "compiled"}
    (row,) = built["engines"]["rows"]
    assert "compiled's prefill here: eager, into the static cache" in row["notes"]


def test_the_setup_column_tells_the_graph_captures_apart_where_recorded():
    from fake_records import report_html

    compiled = engine_record("decode", "compiled", 0.1)
    compiled.metrics |= {
        "setup_seconds": Metric.measured(30.5, "s", "lower"),
        "graph_capture_seconds": Metric.measured(0.25, "s", "lower"),
    }
    peer = engine_record("decode", "hf-static", 0.2)
    (row,) = report_data([compiled, peer])["engines"]["rows"]
    assert (row["reference_setup"], row["reference_capture"]) == (30.5, 0.25)
    assert "of which graph capture 0.25 s" in report_html([compiled, peer], ["x.jsonl"])
    (row,) = report_data([engine_record("decode", "compiled", 0.1), peer])["engines"]["rows"]
    assert row["reference_capture"] is None  # no graph (a CPU, or an older record): nothing claimed


def _with_logits(record, digest: str, logits: list) -> object:
    record.metrics |= {
        "output_ids_digest": Metric.measured(digest, "sha256"),
        "last_step_logits": Metric.measured(logits, "logits"),
    }
    return record


def test_decode_engines_are_compared_by_their_last_step_logits_where_one_repeated_id_says_nothing():
    """NVILA-8B with random weights decodes one id 128 times on every engine (results/h100-sxm-2026-11-28): "agree"
    alone would pass an engine that computed anything else. The logits the last id came from do tell."""
    from fake_records import report_html

    same = [117939] * 20
    logits = [1.0, -2.0, None, 0.5] * 64  # None: a token transformers' min_new_tokens masked
    compiled = _with_logits(engine_record("decode", "compiled", 0.006, ids=same), "d1", logits)
    near = _with_logits(
        engine_record("decode", "hf-static", 0.0094, ids=same), "d1", [None if x is None else x * 1.003 for x in logits]
    )
    far = _with_logits(
        engine_record("decode", "eager", 0.02, ids=same), "d1", [None if x is None else -x for x in logits]
    )
    rows = {r["engine"]: r["tokens"] for r in report_data([compiled, near, far])["engines"]["rows"]}
    assert rows["hf-static"]["agree"] and rows["hf-static"]["distinct"] == 1 and rows["hf-static"]["same_sequence"]
    assert rows["hf-static"]["logits_difference"] == pytest.approx(0.003) and rows["hf-static"]["logits_close"]
    assert (
        rows["eager"]["agree"]
        and rows["eager"]["logits_difference"] == pytest.approx(2.0)
        and not rows["eager"]["logits_close"]
    )
    html = report_html([compiled, near, far], ["x.jsonl"])
    engines = html_section(html, "engines")
    assert "within 3.0e-03" in engines and '<span class="regression nowrap">2.0e+00 apart</span>' in engines
    assert "(one id repeated: no check)" not in engines  # the logits did check them
    # whole sequences that part after the kept ids: their last steps saw other contexts, nothing is compared
    parted = _with_logits(engine_record("decode", "hf-static", 0.0094, ids=same), "d2", logits)
    (row,) = report_data([compiled, parted])["engines"]["rows"]
    assert row["tokens"]["same_sequence"] is False and row["tokens"]["logits_difference"] is None
    assert "the sequences part later: logits not compared" in report_html([compiled, parted], ["x.jsonl"])
    # records without logits (before 2026-12-06) and one id repeated: the ids checked nothing, and the row says so
    old = [engine_record("decode", engine, 0.006, ids=same) for engine in ("compiled", "hf-static")]
    assert '<td>agree <span class="muted">(one id repeated: no check)</span>' in report_html(old, ["x.jsonl"])
    # an engine whose logits hold NaN: not close, whatever its ids
    broken = _with_logits(engine_record("decode", "hf-static", 0.0094, ids=same), "d1", logits)
    broken.metrics["last_step_logits_nan"] = Metric.measured(7, "count")
    (row,) = report_data([compiled, broken])["engines"]["rows"]
    assert row["tokens"]["logits_close"] is False and "NaN in the logits (7)" in report_html(
        [compiled, broken], ["x.jsonl"]
    )


def test_relative_difference_skips_masked_entries_and_refuses_what_cannot_be_compared():
    from nvila_bench.reports.engines import relative_difference

    assert relative_difference([3.0, None, 4.0], [3.0, 7.0, 0.0]) == pytest.approx(4.0 / 3.0)
    assert relative_difference([1.0], [1.0, 2.0]) is None  # another vocabulary
    assert relative_difference([None, 1.0], [1.0, None]) is None and relative_difference([1.0], [0.0]) is None
