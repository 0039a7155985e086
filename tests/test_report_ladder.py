"""The deployment ladder section keeps engines, weight scales and int4 kernels apart: `--engine compiled --engine
hf-static` gives one ladder per engine (no rung of one engine hides the other's), a rung measured with and without
activation-aware scales shows both, the scaled one standing for the rung in the speed-ups, and a W4A16 rung
measured with gemlite and tinygemm shows both, named by kernel; of several rows of a rung, the one closest to the
paper's deployment stands for it, whatever the order."""

from __future__ import annotations

from dataclasses import replace

import pytest
from nvila_bench.reports.records import formats_text
from nvila_bench.reports.views import deployment
from test_report import LADDER, deployment_record


def _with(record, engine=None, scales=None, int4_kernel=None, lm_head=None):
    config = dict(record.config)
    if lm_head:
        config["extra"] = dict(config["extra"]) | {"lm_head": lm_head}
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
        ("compiled", ["bf16", "w4a16-llm"]),
        ("hf-static", ["bf16", "w4a16-llm"]),
    ]


def test_a_rung_with_and_without_scales_shows_both_and_the_scaled_one_counts():
    bf16 = deployment_record(*LADDER[1])
    plain = deployment_record(*LADDER[2])
    scaled = _with(
        deployment_record(LADDER[2][0], LADDER[2][1], LADDER[2][2], LADDER[2][3], 2 * LADDER[2][4], *LADDER[2][5:]),
        scales="activation-aware",
    )
    rows = deployment.ladder([scaled, bf16, plain])["groups"][0]["rows"]
    assert [(r["rung"], r["scales"]) for r in rows] == [
        ("bf16", "none"),
        ("w4a16-llm", "none"),
        ("w4a16-llm", "activation-aware"),
    ]
    assert rows[1]["formats_text"] == "LLM w4a16, round to nearest"
    assert rows[2]["formats_text"] == "LLM w4a16, AWQ / SmoothQuant scales"
    assert rows[2]["decode_vs_previous"] == pytest.approx(2 * rows[1]["decode_vs_previous"])


def test_a_rung_shows_each_stages_mfu_and_the_peak_it_is_of():
    from fake_records import report_html

    from nvila_bench.core.measuring.results import Metric

    record = deployment_record(*LADDER[3])
    record.metrics |= {
        "vision_mfu": Metric.utilisation(0.31, "vision"),
        "vision_mfu_dtype": Metric.analytic("int8", "text"),
        "llm_prefill_mfu": Metric.utilisation(0.42, "llm_prefill"),
        "llm_prefill_mfu_dtype": Metric.analytic("bfloat16", "text"),
    }
    row = deployment.ladder([record])["groups"][0]["rows"][0]
    assert (row["vision_mfu"], row["vision_mfu_dtype"], row["llm_prefill_mfu"]) == (0.31, "int8", 0.42)
    html = report_html([record], ["x.jsonl"])
    assert "MFU 31% (int8 peak) / 42% (bfloat16)" in html
    record.metrics |= {
        "vision_peak_source": Metric.analytic("table:h100-sxm", "text"),
        "llm_prefill_peak_source": Metric.analytic("measured:ceilings.json", "text"),
    }
    assert "MFU 31% (int8 peak, datasheet) / 42% (bfloat16)" in report_html([record], ["x.jsonl"])  # a mix, said


def test_two_int4_kernels_are_two_rows_named_by_kernel_with_their_setup_times():
    from fake_records import report_html

    from nvila_bench.core.measuring.results import Metric

    bf16 = deployment_record(*LADDER[1])
    tinygemm, gemlite = (_with(deployment_record(*LADDER[2]), int4_kernel=k) for k in ("tinygemm", "gemlite"))
    gemlite.metrics |= {"quantize_seconds": Metric.measured(12.5, "s"), "setup_seconds": Metric.measured(48.0, "s")}
    rows = deployment.ladder([gemlite, bf16, tinygemm])["groups"][0]["rows"]
    assert [(r["rung"], r["int4_kernel"]) for r in rows] == [
        ("bf16", None),
        ("w4a16-llm", "gemlite"),
        ("w4a16-llm", "tinygemm"),
    ]
    assert rows[1]["formats_text"] == "LLM w4a16 (gemlite), round to nearest"
    prefill = replace(
        gemlite,
        config=gemlite.config | {"extra": gemlite.extra | {"int4_prefill": "dequantize + cuBLAS from 256 tokens"}},
    )
    assert deployment.ladder([prefill])["groups"][0]["rows"][0]["formats_text"] == (
        "LLM w4a16 (gemlite), round to nearest; int4 prefill: dequantize + cuBLAS from 256 tokens"
    )
    assert formats_text({"llm": "w4a16"}, "activation-aware", "gemlite", lm_head=True) == (
        "LLM w4a16 (gemlite) + LM head, AWQ / SmoothQuant scales"
    )
    assert (rows[1]["quantize_seconds"], rows[1]["setup_seconds"], rows[2]["quantize_seconds"]) == (12.5, 48.0, None)
    assert "quantize 12.5 s, compile + capture 48.0 s" in report_html([gemlite, bf16, tinygemm], ["x.jsonl"])


def test_our_ladder_rows_state_their_speed_up_over_the_transformers_peer_of_the_same_rung():
    from fake_records import report_html

    ours = [
        _with(deployment_record(*LADDER[1]), "compiled"),
        _with(
            deployment_record(LADDER[2][0], LADDER[2][1], LADDER[2][2], LADDER[2][3], 3 * LADDER[2][4], *LADDER[2][5:]),
            "compiled",
            int4_kernel="gemlite",
        ),
    ]
    peer = [
        _with(deployment_record(*LADDER[1]), "hf-static"),
        _with(deployment_record(*LADDER[2]), "hf-static", int4_kernel="tinygemm"),
    ]
    groups = {g["engine"]: g for g in deployment.ladder(ours + peer)["groups"]}
    w4 = groups["compiled"]["rows"][1]
    assert [(p["engine"], p["int4_kernel"], p["decode"]) for p in w4["vs_peers"]] == [
        ("hf-static", "tinygemm", pytest.approx(3.0))
    ]
    assert groups["compiled"]["rows"][0]["vs_peers"][0]["decode"] == pytest.approx(1.0)
    assert "vs_peers" not in groups["hf-static"]["rows"][0]  # the peer's own ladder states no ratio over itself
    assert "3.00x</strong> hf-static (tinygemm)" in report_html(ours + peer, ["x.jsonl"])


def _rate(row: tuple, factor: float) -> tuple:
    return (*row[:4], factor * row[4], *row[5:])


def test_the_row_closest_to_the_papers_deployment_stands_for_its_rung_in_speed_ups_and_peer_ratios():
    from fake_records import report_html

    bf16 = _with(deployment_record(*LADDER[1]), "compiled")
    w4 = {
        (kernel, head): _with(
            deployment_record(*_rate(LADDER[2], factor)), "compiled", "activation-aware", kernel, head
        )
        for kernel, head, factor in (("gemlite", None, 2.0), ("tinygemm", None, 3.0), ("gemlite", "quantized", 4.0))
    }
    rtn = _with(deployment_record(*_rate(LADDER[2], 5.0)), "compiled", None, "gemlite")  # round to nearest
    vit = _with(deployment_record(*LADDER[3]), "compiled", "activation-aware", "gemlite")
    peer = [
        _with(deployment_record(*_rate(LADDER[2], factor)), "hf-static", "activation-aware", kernel)
        for kernel, factor in (("gemlite", 1.0), ("tinygemm", 0.5))
    ]
    for records in ([bf16, *w4.values(), rtn, vit], [vit, rtn, *reversed(w4.values()), bf16]):
        group = {g["engine"]: g for g in deployment.ladder(records + peer)["groups"]}["compiled"]
        rows = {(r["rung"], r["int4_kernel"], r["lm_head"], r["scales"]): r for r in group["rows"]}
        stands = rows[("w4a16-llm", "gemlite", False, "activation-aware")]
        assert not stands["variant"] and sum(not r["variant"] for r in group["rows"] if r["rung"] == "w4a16-llm") == 1
        assert rows[("w4a16-llm", "tinygemm", False, "activation-aware")]["variant"]
        assert (
            rows[("w4a16-llm", "gemlite", True, "activation-aware")]["variant"]
            and rows[("w4a16-llm", "gemlite", False, "none")]["variant"]
        )
        later = rows[("w8a8-vit-int8", "gemlite", False, "activation-aware")]
        assert later["previous"] == "w4a16-llm"
        assert later["decode_vs_previous"] == pytest.approx(
            LADDER[3][4] / (2.0 * LADDER[2][4])
        )  # over the standing row
        assert [(p["int4_kernel"], p["decode"]) for p in stands["vs_peers"]] == [("gemlite", pytest.approx(2.0))]
        variant = rows[("w4a16-llm", "tinygemm", False, "activation-aware")]  # over the peer's row of its own kernel
        assert [(p["int4_kernel"], p["decode"]) for p in variant["vs_peers"]] == [("tinygemm", pytest.approx(6.0))]
    assert "variant: not in later rungs" in report_html(records + peer, ["x.jsonl"])


def test_a_deployment_records_label_names_its_rung():
    from nvila_bench.reports.records import point_label

    labels = [point_label(deployment_record(*rung)) for rung in LADDER[:3]]
    assert [label.rsplit(" ", 2)[-2:] for label in labels[1:]] == [["bf16", "eager"], ["w4a16-llm", "eager"]], labels
    assert len(set(labels)) == 3
    kernels = {
        point_label(_with(deployment_record(*LADDER[2]), "compiled", int4_kernel=k)) for k in ("gemlite", "tinygemm")
    }
    assert len(kernels) == 2 and all("compiled" in label for label in kernels)  # two kernels' rows: two labels


def test_the_reports_components_are_the_models_and_the_reports_import_no_torch():
    """The report names the quantized components itself (model/quantize.py imports torch): the same ones, in the
    same order; and the report, the dashboard, the gate and every view import neither torch nor transformers."""
    import subprocess
    import sys

    from nvila_bench.model.quant_plan import COMPONENTS
    from nvila_bench.reports import records

    assert records.COMPONENTS == COMPONENTS and list(records.COMPONENT_NAMES) == list(COMPONENTS)
    code = (
        "import sys, nvila_bench.reports.render, nvila_bench.reports.dashboard, nvila_bench.core.comparison.gate\n"
        "from nvila_bench.reports import views\n"
        "for name in ('deployment', 'scale_then_compress', 'training', 'accuracy', 'profile'): views.find(name)\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
