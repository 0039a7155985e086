"""The deployment ladder section keeps engines, weight scales and int4 kernels apart: `--engine compiled --engine
hf-static` gives one ladder per engine (no rung of one engine hides the other's), a rung measured with and without
activation-aware scales shows both, the scaled one standing for the rung in the speed-ups, and a W4A16 rung
measured with gemlite and tinygemm shows both, named by kernel."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_report import LADDER, deployment_record

from nvila_bench.reports import deployment


def _with(record, engine=None, scales=None, int4_kernel=None):
    config = dict(record.config)
    if engine:
        config["engine"] = engine
    if scales:
        config["extra"] = dict(config["extra"]) | {"scales": scales}
    if int4_kernel:
        config["extra"] = dict(config["extra"]) | {"int4_kernel": int4_kernel}
    return replace(record, config=config)


def test_one_ladder_per_engine():
    bf16, w4 = deployment_record(*LADDER[1]), deployment_record(*LADDER[2])
    records = [_with(r, engine) for engine in ("compiled", "hf-static") for r in (bf16, w4)]
    groups = deployment.ladder(records)["groups"]
    assert [(g["engine"], [r["rung"] for r in g["rows"]]) for g in groups] == [
        ("compiled", ["bf16", "w4a16-llm"]), ("hf-static", ["bf16", "w4a16-llm"])]


def test_a_rung_with_and_without_scales_shows_both_and_the_scaled_one_counts():
    bf16 = deployment_record(*LADDER[1])
    plain = deployment_record(*LADDER[2])
    scaled = _with(deployment_record(LADDER[2][0], LADDER[2][1], LADDER[2][2], LADDER[2][3], 2 * LADDER[2][4],
                                     *LADDER[2][5:]), scales="activation-aware")  # fmt: skip
    rows = deployment.ladder([scaled, bf16, plain])["groups"][0]["rows"]
    assert [(r["rung"], r["scales"]) for r in rows] == [("bf16", "none"), ("w4a16-llm", "none"), ("w4a16-llm", "activation-aware")]
    assert rows[1]["formats_text"] == "LLM w4a16, round to nearest"
    assert rows[2]["formats_text"] == "LLM w4a16, AWQ / SmoothQuant scales"
    assert rows[2]["decode_vs_previous"] == pytest.approx(2 * rows[1]["decode_vs_previous"])


def test_a_rung_shows_each_stages_mfu_and_the_peak_it_is_of():
    from nvila_bench.core.results import Metric
    from nvila_bench.reports.render import render_report

    record = deployment_record(*LADDER[3])
    record.metrics |= {"vision_mfu": Metric.utilisation(0.31, "vision"), "vision_mfu_dtype": Metric.analytic("int8", "text"),
                       "llm_prefill_mfu": Metric.utilisation(0.42, "llm_prefill"),
                       "llm_prefill_mfu_dtype": Metric.analytic("bfloat16", "text")}  # fmt: skip
    row = deployment.ladder([record])["groups"][0]["rows"][0]
    assert (row["vision_mfu"], row["vision_mfu_dtype"], row["llm_prefill_mfu"]) == (0.31, "int8", 0.42)
    html = render_report([record], ["x.jsonl"])
    assert "MFU 31% (int8 peak) / 42% (bfloat16)" in html


def test_two_int4_kernels_are_two_rows_named_by_kernel_with_their_setup_times():
    from nvila_bench.core.results import Metric
    from nvila_bench.reports.render import render_report

    bf16 = deployment_record(*LADDER[1])
    tinygemm, gemlite = (_with(deployment_record(*LADDER[2]), int4_kernel=k) for k in ("tinygemm", "gemlite"))
    gemlite.metrics |= {"quantize_seconds": Metric.measured(12.5, "s"), "setup_seconds": Metric.measured(48.0, "s")}
    rows = deployment.ladder([gemlite, bf16, tinygemm])["groups"][0]["rows"]
    assert [(r["rung"], r["int4_kernel"]) for r in rows] == [("bf16", None), ("w4a16-llm", "gemlite"), ("w4a16-llm", "tinygemm")]
    assert rows[1]["formats_text"] == "LLM w4a16 (gemlite), round to nearest"
    assert deployment.formats_text({"llm": "w4a16"}, "activation-aware", "gemlite", lm_head=True) == (
        "LLM w4a16 (gemlite) + LM head, AWQ / SmoothQuant scales")
    assert (rows[1]["quantize_seconds"], rows[1]["setup_seconds"], rows[2]["quantize_seconds"]) == (12.5, 48.0, None)
    assert "quantize 12.5 s, compile + capture 48.0 s" in render_report([gemlite, bf16, tinygemm], ["x.jsonl"])


def test_our_ladder_rows_state_their_speed_up_over_the_transformers_peer_of_the_same_rung():
    from nvila_bench.reports.render import render_report

    ours = [_with(deployment_record(*LADDER[1]), "compiled"),
            _with(deployment_record(LADDER[2][0], LADDER[2][1], LADDER[2][2], LADDER[2][3], 3 * LADDER[2][4], *LADDER[2][5:]),
                  "compiled", int4_kernel="gemlite")]  # fmt: skip
    peer = [_with(deployment_record(*LADDER[1]), "hf-static"), _with(deployment_record(*LADDER[2]), "hf-static", int4_kernel="tinygemm")]
    groups = {g["engine"]: g for g in deployment.ladder(ours + peer)["groups"]}
    w4 = groups["compiled"]["rows"][1]
    assert [(p["engine"], p["int4_kernel"], p["decode"]) for p in w4["vs_peers"]] == [("hf-static", "tinygemm", pytest.approx(3.0))]
    assert groups["compiled"]["rows"][0]["vs_peers"][0]["decode"] == pytest.approx(1.0)
    assert "vs_peers" not in groups["hf-static"]["rows"][0]  # the peer's own ladder states no ratio over itself
    assert "3.00x</strong> hf-static (tinygemm)" in render_report(ours + peer, ["x.jsonl"])
