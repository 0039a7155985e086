"""The HTML report and the dashboard: sections, provenance, missing data, escaping, self-containment."""

import re
from dataclasses import replace
from pathlib import Path

import pytest
import tomllib
from fake_records import (
    CPU_ENV,
    GATED,
    GPU_ENV,
    decode_record,
    html_section,
    prefill_record,
    report_data,
    report_html,
    train_record,
)
from nvila_bench.model.stages import PREFILL_STAGES
from nvila_bench.reports import deployment_paper, sections
from nvila_bench.reports import records as report_records
from nvila_bench.reports.claims import claims_table
from nvila_bench.reports.views import deployment

from nvila_bench.cli import main
from nvila_bench.core.analysis import paper
from nvila_bench.core.analysis.training_cost import fp8_speedup
from nvila_bench.core.comparison.gate import gate
from nvila_bench.core.measuring.result_files import ResultWriter, load_results, read_results
from nvila_bench.core.measuring.results import Metric, Record

SECTIONS = (
    "headline",
    "claims",
    "stages",
    "stc",
    "roofline",
    "distributions",
    "training",
    "accuracy",
    "failures",
    "environment",
)
TEMPLATES = Path(__file__).parent.parent / "reports" / "templates"
MEASUREMENTS = Path(__file__).resolve().parents[2] / "shared" / "measurements" / "h100-2026-11-27"
HOSTILE = '<script>alert("x")</script>'

pytestmark = pytest.mark.usefixtures("declared_suites")  # `nvila-bench report / gate / dashboard` read them


def write(path, records):
    writer = ResultWriter(path)
    for r in records:
        writer.write(r)
    return path


def test_report_has_every_section_and_marks_provenance():
    records = [prefill_record("nvila-tiny", 0.2), prefill_record("vila-tiny", 0.05), decode_record("nvila-tiny")]
    html = report_html(records, ["x.jsonl"])
    for section in SECTIONS:
        assert f'<section id="{section}">' in html
    for provenance in ("measured", "analytic", "paper"):
        assert f'<span class="prov {provenance}">' in html
    assert "0.25x" in html  # nvila-tiny TTFT vs vila-tiny: 0.05 / 0.2, shown honestly
    assert html.count("<svg") >= 3  # stage bars, distributions (ttft, tpot), roofline needs cost metrics


def test_missing_data_says_not_measured_with_the_command_never_zero():
    html = report_html([prefill_record("nvila-tiny", 0.2)], ["x.jsonl"])
    assert "not measured" in html
    assert "nvila-bench run decode --preset nvila-8b --preset vila1.5-8b" in html
    assert (
        "nvila-bench run finetune-memory" in html and "suite is not in this version yet" not in html
    )  # every suite exists now
    headline = html_section(html, "headline")
    request, preset = re.findall(r"<tr><td>nvila-tiny</td>.*?</tr>", headline, re.S)
    assert request.count("not measured") == 2  # vs VILA1.5, decode
    assert preset.count("not measured") == 3  # train, fine-tune memory, accuracy
    assert ">0<" not in headline and ">0.0<" not in headline


def test_hostile_strings_are_escaped_everywhere(tmp_path):
    env = CPU_ENV | {"platform": HOSTILE, "cpu_model": HOSTILE}
    ok = prefill_record(HOSTILE, 0.1, env=env, extra={"variant": HOSTILE})
    bad = Record("prefill", ok.config | {"seed": 1}, {}, HOSTILE, environment=env, status="error", error=HOSTILE)
    out = tmp_path / "r.html"
    assert main(["report", str(write(tmp_path / "res", [ok, bad])), "--out", str(out)]) == 0
    html = out.read_text()
    assert "<script" not in html  # neither in the tables nor inside the SVG charts' labels
    assert "&lt;script&gt;alert(" in html or "&lt;script&gt;alert(&#34;x&#34;)" in html


def test_report_is_self_contained():
    html = report_html([prefill_record(), decode_record()], ["x.jsonl"])
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<link" not in html and "@import" not in html
    assert not re.search(r"url\((?!#)", html)  # only the SVGs' own clip paths, url(#id)


def test_paper_numbers_live_in_the_data_file_not_the_templates():
    data = tomllib.loads(
        (Path(__file__).parent.parent / "nvila_bench" / "core" / "analysis" / "paper.toml").read_text()
    )
    templates = "".join(p.read_text() for p in TEMPLATES.glob("*.j2"))
    numbers = {str(c["paper_low"]) for c in data["claims"]} | {"63.5", "19.2", "92.3", "82.1", "995", "268"}
    for n in numbers:
        assert not re.search(rf"(?<![\d.]){re.escape(n)}(?![\d.])", templates), n
    html = report_html([prefill_record()], ["x.jsonl"])
    assert "92.3" in html and "82.1" in html  # ... yet the report shows them, from the data file


def test_claims_verdicts():
    rows = {r["id"]: r for r in claims_table([prefill_record("nvila-tiny", 0.2), prefill_record("vila-tiny", 0.05)])}
    assert rows["video-tokens-tsp"]["verdict"] == "holds" and rows["video-tokens-tsp"]["ours"].value == 8192
    speed = rows["prefill-speedup"]
    assert speed["verdict"] == "not comparable" and speed["ours"].text == "0.25x" and "tiny" in speed["ours"].note
    assert rows["finetune-memory"]["verdict"] == "not measured" and rows["finetune-memory"]["ours"] is None
    assert len(rows) == len(paper.claims())


def test_report_from_real_suite_output(tmp_path):
    """The suites' own records (prefill, decode, scale-then-compress analytic) render, with a roofline when
    peaks are known (measured CPU ceilings)."""
    out = tmp_path / "res"
    assert (
        main(
            [
                "ceilings",
                "--device",
                "cpu",
                "--dtype",
                "float32",
                "--size",
                "256",
                "--seconds",
                "0.2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    common = ["--warmup", "1", "--repeats", "2", "--min-seconds", "0", "--quiet", "--out", str(out)]
    assert (
        main(["run", "prefill", "--preset", "nvila-tiny", "--preset", "vila-tiny", "--image", "640x480"] + common) == 0
    )
    assert main(["run", "decode", "--preset", "nvila-tiny", "--image", "640x480", "--new-tokens", "4"] + common) == 0
    assert main(["run", "scale-then-compress", "--quiet", "--out", str(out)]) == 0
    page = tmp_path / "report.html"
    assert main(["report", str(out), "--out", str(page)]) == 0
    html = page.read_text()
    assert "measured:" in html and "ceilings.json" in html  # peaks source of the roofline
    roofline = html_section(html, "roofline")
    assert "<svg" in roofline and "%" in roofline
    stc = html_section(html, "stc")
    assert "nvila-8b-scaled-only" in stc and "h100-sxm (analytic)" in stc


def test_dashboard_marks_a_regression_and_links_each_run(tmp_path):
    results = tmp_path / "history"
    write(results / "2026-11-01", [prefill_record(ttft=0.1, seed=1, run_id="r1")])
    later = prefill_record(ttft=0.1, seed=2, run_id="r2")
    slower = prefill_record(ttft=0.12, seed=3, run_id="r3")
    later.timestamp, slower.timestamp = "2099-01-01T00:00:00Z", "2099-01-02T00:00:00Z"
    write(results / "2026-11-02", [later])
    write(results / "2026-11-03", [slower])
    site = tmp_path / "site"
    assert main(["dashboard", str(results), "--out", str(site)]) == 0
    index = (site / "index.html").read_text()
    flags = html_section(index, "flags")
    (ttft,) = re.findall(r"<tr><td><a[^>]*>2026-11-03_results</a>.*?<td>ttft</td>.*?</tr>", flags, re.S)
    assert "+20." in ttft and 'class="regression"' in ttft  # the slower run's TTFT (its stages may be flagged too)
    assert "2026-11-02_results</a>" not in flags and "improvement" not in flags
    for name in ("2026-11-01_results", "2026-11-02_results", "2026-11-03_results"):
        assert f'href="runs/{name}.html"' in index and (site / "runs" / f"{name}.html").is_file()
    assert "<svg" in index


def test_dashboard_bad_input_exits_2(tmp_path, capsys):
    assert main(["dashboard", str(tmp_path / "none"), "--out", str(tmp_path / "site")]) == 2
    assert "not a directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["dashboard", str(tmp_path / "empty"), "--out", str(tmp_path / "site")]) == 2
    assert "no *.jsonl" in capsys.readouterr().err


def test_preset_roles_come_from_the_registry():
    """Baselines, tiny stand-ins and NVILA-ness are the presets' own fields; a preset the registry does not
    know (a checkpoint directory's name) has no role and crashes nothing."""
    assert not hasattr(report_records, "BASELINES") and not hasattr(report_records, "TINY_PRESETS")
    assert (
        report_records.baseline_of("nvila-8b") == "vila1.5-8b"
        and report_records.baseline_of("nvila-tiny") == "vila-tiny"
    )
    assert report_records.baseline_of("vila1.5-8b") is None and report_records.baseline_of("NVILA-8B-ckpt") is None
    assert report_records.is_tiny("nvila-video-tiny") and not report_records.is_tiny("nvila-8b")
    assert not report_records.is_tiny("NVILA-8B-ckpt") and not report_records.is_tiny(None)
    assert report_records.is_nvila("nvila-lite-2b") and not report_records.is_nvila("vila-tiny")
    assert report_records.is_nvila("NVILA-8B-ckpt")
    vila_ckpt = prefill_record("Llama-3-VILA1.5-8B", 0.05, extra={"family": "vila1.5"})
    assert not report_records.is_nvila(vila_ckpt) and report_records.is_nvila(prefill_record("NVILA-8B-ckpt"))
    records = [
        prefill_record("NVILA-8B-ckpt", 0.2),
        vila_ckpt,
        prefill_record("nvila-tiny", 0.2),
        prefill_record("vila-tiny", 0.05),
    ]
    html = report_html(records, ["x.jsonl"])
    headline = html_section(html, "headline")

    def row(preset):
        return re.search(rf"<tr><td>{re.escape(preset)}</td>.*?</tr>", headline, re.S).group(0)

    assert "baseline" in row("vila-tiny") and "baseline" in row("Llama-3-VILA1.5-8B")
    assert "0.25x" in row("nvila-tiny") and "not measured" in row("NVILA-8B-ckpt")
    rows = {r["id"]: r for r in claims_table(records)}
    assert rows["prefill-speedup"]["ours"].note.startswith("1 pair(s): nvila-tiny vs vila-tiny")


def test_the_stage_breakdown_uses_the_model_stages():
    assert sections.stage_breakdown([prefill_record()])["stages"] == tuple(PREFILL_STAGES)
    assert not hasattr(sections, "PREFILL_STAGES") or sections.PREFILL_STAGES is PREFILL_STAGES


def test_fp8_speedup_from_train_records():
    bf16 = train_record("nvila-tiny", step_time=0.2, seed=1)
    fp8 = train_record("nvila-tiny", step_time=0.1, seed=2, extra={"fp8": True})
    ratio, preset, hardware = fp8_speedup([bf16, fp8])
    assert ratio == pytest.approx(2.0, rel=0.05) and preset == "nvila-tiny" and hardware.startswith("CPU Test CPU")
    assert fp8_speedup([bf16]) is None
    rows = {r["id"]: r for r in claims_table([bf16, fp8])}
    assert rows["fp8-training"]["ours"].text == f"{ratio:.2f}x"


def test_version_1_measurements_report_and_gate():
    """The first H100 run's files (schema version 1, written by revision c358d87) still render and gate: every
    file reads (upgraded), the report shows them, and the A/A pair's TTFT is not a regression at 5%."""
    if not MEASUREMENTS.is_dir():
        pytest.skip(f"{MEASUREMENTS} is absent")
    files = sorted(MEASUREMENTS.glob("*.jsonl"))
    assert files
    records = load_results(files)
    assert all(isinstance(r, Record) and r.schema_version == 2 for r in records)
    html = report_html(records, [str(f) for f in files])
    for section in SECTIONS:
        assert f'<section id="{section}">' in html
    assert "NVIDIA H100 80GB HBM3" in html and "nvila-lite-2b" in html
    result = gate(
        read_results(MEASUREMENTS / "aa-run-a.jsonl"), read_results(MEASUREMENTS / "aa-run-b.jsonl"), 0.05, gated=GATED
    )
    assert result.comparisons
    (ttft,) = [c for c in result.comparisons if c.metric == "ttft"]
    assert ttft.verdict in ("pass", "improvement")


# ---- FLOP conventions: executed FLOPs in the roofline, model FLOPs in training MFU ------------------------
def _prefill_with_costs(preset="nvila-tiny", executed=True):
    """A GPU prefill record carrying the cost model's metrics (as the prefill suite writes them), or, with
    `executed=False`, only the model-FLOP metrics an older record holds."""
    from fake_records import GPU_ENV

    from nvila_bench.core.analysis.analytic import analytic_metrics
    from nvila_bench.core.analysis.hardware import Peaks
    from nvila_bench.core.measuring.point import BenchPoint

    record = prefill_record(preset, ttft=0.1, env=GPU_ENV)
    point = BenchPoint(preset, device="cuda", images=((448, 448),), prompt_tokens=64)
    timed = {s: s for s in ("vision", "projector", "llm_prefill")}
    extra = analytic_metrics(point, record.metrics, timed, Peaks(1e12, 1e11, "table:test"))
    if not executed:
        extra = {k: v for k, v in extra.items() if "executed" not in k and k != "flops_convention"}
    record.metrics.update(extra)
    return record


def test_the_roofline_uses_executed_flops_and_says_so():
    record = _prefill_with_costs()
    data = sections.roofline([record])
    llm = next(r for r in data["rows"] if r["stage"] == "llm_prefill")
    assert llm["convention"] == "executed" and not data["model_flops_rows"]
    executed, flops = record.value("llm_prefill_executed_flops"), record.value("llm_prefill_flops")
    assert executed < flops
    assert llm["mfu"] == pytest.approx(executed / record.value("llm_prefill") / 1e12)
    html = report_html([record], ["x.jsonl"])
    roofline = html_section(html, "roofline")
    assert "<th>MFU (executed FLOPs)</th>" in roofline and "executed FLOPs</strong>" in roofline
    assert "counted once per kept key" in roofline and "model FLOPs</span>" not in roofline


def test_older_records_without_executed_flops_are_marked_model_flops():
    record = _prefill_with_costs(executed=False)
    data = sections.roofline([record])
    conventions = {r["stage"]: r["convention"] for r in data["rows"]}  # only the causal LLM prefill differs
    assert conventions == {"vision": "executed", "projector": "executed", "llm_prefill": "model"}
    assert data["model_flops_rows"]
    html = report_html([record], ["x.jsonl"])
    roofline = html_section(html, "roofline")
    assert '<span class="muted">model FLOPs</span>' in roofline and "written before executed FLOPs" in roofline


def test_training_mfu_is_labelled_model_flops():
    html = report_html([train_record()], ["x.jsonl"])
    training = html_section(html, "training")
    assert "<th>MFU (model FLOPs)</th>" in training and "6N" in training and "model FLOPs</strong>" in training


def engine_record(suite, engine, seconds, preprocess="gpu", preset="nvila-8b", ids=None, setup=1.0, run_id="run-e"):
    """A decode (TPOT) or prefill (TTFT, LLM prefill) record of one engine, as the engine-aware suites write."""
    from nvila_bench.core.measuring.results import Metric

    make = decode_record if suite == "decode" else prefill_record
    base = make(preset, seconds, run_id=run_id)
    cache = "dynamic" if engine == "eager" else "static"
    config = base.config | {"engine": engine, "preprocess": preprocess, "cache": cache}
    metrics = dict(base.metrics) | {"setup_seconds": Metric.measured(setup, "s", "lower")}
    if ids is not None:
        metrics["output_ids"] = Metric.measured(list(ids), "token ids")
    return Record(suite, config, metrics, run_id, environment=base.environment)


def test_engines_side_by_side_gives_the_compiled_speedup_over_each_peer():
    ids = list(range(20))
    records = [
        engine_record("decode", "compiled", 0.00767, ids=ids, setup=40.0),
        engine_record("decode", "hf-static", 0.00954, ids=ids, setup=44.0),
        engine_record("decode", "eager", 0.0205, ids=ids[:5] + [99] + ids[6:], setup=0.0),
        engine_record("prefill", "compiled", 0.132),
        engine_record("prefill", "hf-static", 0.147),
        engine_record("prefill", "eager", 0.3, preprocess="cpu"),
    ]
    rows = report_data(records)["engines"]["rows"]
    decode = {r["engine"]: r for r in rows if r["suite"] == "decode"}
    assert set(decode) == {"hf-static", "eager"} and {r["reference"] for r in rows} == {"compiled"}
    assert decode["hf-static"]["ratio"] == pytest.approx(1.24, abs=0.005)
    assert decode["hf-static"]["text"] == "compiled is 1.24x faster than hf-static"
    assert decode["hf-static"]["tokens"]["agree"] and decode["hf-static"]["setup"] == 44.0
    assert decode["eager"]["tokens"] == {
        "agree": False,
        "compared": 16,
        "first_difference": 5,
        "distinct": 16,
        "same_sequence": None,
        "logits_nan": 0,
        "logits_difference": None,
        "logits_close": None,
    }
    prefill = [r for r in rows if r["suite"] == "prefill"]
    assert [r["engine"] for r in prefill] == ["hf-static"]  # the eager prefill preprocessed on the CPU: another point
    assert prefill[0]["ratio"] == pytest.approx(0.147 / 0.132, rel=0.05) and prefill[0]["second_ratio"] is not None
    html = report_html(records, ["x.jsonl"])
    engines = html_section(html, "engines")
    assert "compiled is 1.24x faster than hf-static" in engines
    assert "same run on the same weights and context" in engines
    assert "differ from id 5" in engines
    assert "nvila-8b 448x448 [compiled, gpu preprocess]" in html  # point names carry the engine


def test_request_key_separates_engines_and_preprocessing_and_old_records_default():
    old = prefill_record("nvila-tiny", 0.1)  # no engine key: eager, CPU preprocessing
    eager = engine_record("prefill", "eager", 0.1, preprocess="cpu", preset="nvila-tiny")
    compiled = engine_record("prefill", "compiled", 0.1, preprocess="cpu", preset="nvila-tiny")
    gpu = engine_record("prefill", "eager", 0.1, preprocess="gpu", preset="nvila-tiny")
    key = report_records.request_key
    assert key(old) == key(eager) and key(eager) != key(compiled) and key(eager) != key(gpu)
    assert report_records.engine_of(old) == "eager" and report_records.preprocess_of(old) == "cpu"
    assert report_records.point_name(old) == "nvila-tiny 448x448"
    assert "compiled gpu-preprocess" in report_records.point_label(engine_record("prefill", "compiled", 0.1))
    assert "[compiled]" in report_records.point_name(engine_record("decode", "compiled", 0.01))


def test_old_records_without_engine_still_render_and_claims_prefer_compiled():
    html = report_html(
        [prefill_record("nvila-tiny", 0.2), prefill_record("vila-tiny", 0.05), decode_record("nvila-tiny")], ["x.jsonl"]
    )
    assert '<section id="engines">' in html and "0.25x" in html
    assert report_data([prefill_record("nvila-tiny", 0.2)])["engines"]["rows"] == []
    pairs = [
        engine_record("prefill", e, t, preset=p)
        for e, t in (("eager", 0.4), ("compiled", 0.2))
        for p in ("nvila-tiny", "vila-tiny")
    ]
    chosen = report_records.baseline_pairs(pairs, "prefill")
    assert [report_records.engine_of(n) for n, _ in chosen] == ["compiled"]
    headline = sections.headline(pairs)["groups"]
    assert {row["engine"] for rows in headline.values() for row in rows} == {"eager", "compiled"}


# ---- the deployment ladder (suites/deployment.py records; values from a CPU run of the nvila-tiny ladder) ----
QUANTIZED_FORMATS = {"llm_weights": "w4a16", "vision_weights": "w8a8-int8"}
FP8_REASON = "w8a8-fp8 needs a CUDA GPU with FP8 (compute capability 8.9+: Ada / Hopper)"
LADDER = (  # rung, preset, formats, TTFT s, decode tokens/s, (vision, projector, LLM) weights bytes, top-1, KL
    ("scaled-only bf16", "nvila-tiny-scaled-only", {}, 3.367, 102.0, (340608, 33024, 279680), 1.0, 0.0),
    ("bf16", "nvila-tiny", {}, 2.571, 6.108, (340608, 109824, 279680), 1.0, 0.0),
    ("w4a16-llm", "nvila-tiny", {"llm_weights": "w4a16"}, 1.873, 34.56, (340608, 109824, 209408), 0.84375, 1.32e-4),
    ("w8a8-vit-int8", "nvila-tiny", QUANTIZED_FORMATS, 3.164, 6.056, (279552, 109824, 209408), 0.84375, 1.33e-4),
    ("baseline bf16", "vila-tiny", {}, 0.480, 116.8, (302848, 42240, 295552), 1.0, 0.0),
    ("baseline quantized", "vila-tiny", QUANTIZED_FORMATS, 1.178, 7.129, (241792, 42240, 217472), 0.859375, 9.2e-5),
)


def deployment_record(
    rung,
    preset,
    formats,
    ttft=0,
    tps=0,
    weights=(),
    top1=0,
    kl=0,
    media="image",
    env=CPU_ENV,
    predicted=None,
    status="ok",
    error=None,
):
    from nvila_bench.core.measuring.results import Metric

    cfg = prefill_record(preset, env=env).config | {"dtype": "bfloat16", "new_tokens": 8, "engine": "eager"}
    cfg |= {"extra": {"rung": rung, "media": media, "quality_prompts": 4} | formats}
    cfg |= {"images": [], "video_frames": 8} if media == "video" else {}
    ok = {
        "ttft": Metric.timing([ttft, ttft * 1.01]),
        "vision": Metric.timing([ttft * 0.6] * 2),
        "llm_prefill": Metric.timing([ttft * 0.3] * 2),
        "decode_tokens_per_s": Metric.measured(tps, "tokens/s"),
        "top1_agreement": Metric.measured(top1, "fraction"),
        "logits_kl": Metric.measured(kl, "nats"),
        "peak_rss": Metric.measured(5 * 2**20, "bytes"),
        "media_tokens": Metric.measured(257, "tokens"),
    }
    for c, m, p in zip(("vision", "projector", "llm"), weights, predicted or weights):
        ok |= {
            f"{c}_weights_bytes": Metric.measured(m, "bytes"),
            f"{c}_weights_bytes_predicted": Metric.analytic(p, "bytes"),
        }
    return Record("deployment", cfg, ok if status == "ok" else {}, "run-d", environment=env, status=status, error=error)


def ladder_records(media="image"):
    fp8 = {
        "w8a8-vit-fp8": {"llm_weights": "w4a16", "vision_weights": "w8a8-fp8"},
        "w8a8-fp8-llm": {"llm_weights": "w8a8-fp8"},
    }
    skipped = [
        deployment_record(k, "nvila-tiny", f, media=media, status="skipped", error=FP8_REASON) for k, f in fp8.items()
    ]
    return [deployment_record(*row, media=media) for row in LADDER][::-1] + skipped  # out of order: the section sorts


def test_deployment_ladder_rows_in_rung_order_with_skips_bytes_and_agreement():
    from nvila_bench.reports.views import deployment
    from nvila_bench.suites.deployment import RUNGS

    (section,) = [
        v["data"]
        for v in report_data(ladder_records() + ladder_records("video"))["suites"]
        if v["anchor"] == "deployment"
    ]
    assert [(g["media"], g["family"]) for g in section["groups"]] == [("image", "nvila-tiny"), ("video", "nvila-tiny")]
    rows = section["groups"][0]["rows"]
    assert (
        [r["rung"] for r in rows] == list(RUNGS) == list(deployment.RUNGS)
    )  # the fp8 rung in its place, though skipped
    assert [(r["rung"], r["status"], r["reason"]) for r in rows if not r["ok"]] == [
        (k, "skipped", FP8_REASON) for k in ("w8a8-vit-fp8", "w8a8-fp8-llm")
    ]
    by = {r["rung"]: r for r in rows}
    w4, int8, base_q = by["w4a16-llm"], by["w8a8-vit-int8"], by["baseline quantized"]
    assert by["bf16"]["ttft_vs_first"] == pytest.approx(3.367 / 2.571, rel=1e-3)
    assert w4["ttft_vs_previous"] == pytest.approx(2.571 / 1.873, rel=1e-3) and w4["previous"] == "bf16"
    assert w4["decode_vs_previous"] == pytest.approx(34.56 / 6.108) and by["baseline bf16"]["ttft_vs_previous"] is None
    assert w4["weights"]["llm"]["ratio"] == pytest.approx(209408 / 279680) and w4["weights"]["vision"]["ratio"] == 1
    assert int8["weights"]["vision"]["ratio"] == pytest.approx(279552 / 340608)
    assert int8["weights_ratio"] == pytest.approx((279552 + 109824 + 209408) / (340608 + 109824 + 279680))
    assert base_q["weights_ratio"] == pytest.approx(
        (241792 + 42240 + 217472) / (302848 + 42240 + 295552)
    )  # vs baseline bf16
    assert all(r["weights_match"] for r in rows if r["ok"]) and base_q["previous"] == "baseline bf16"
    assert int8["formats_text"] == "ViT w8a8-int8, LLM w4a16, round to nearest"  # records without `scales`
    assert (int8["top1_agreement"], int8["logits_kl"], int8["peak_kind"]) == (0.84375, 1.33e-4, "process peak RSS")
    assert [f["claim"][:36] for f in section["groups"][1]["figure5"] if f["ours"] is not None] == [
        "Token compression cuts the video LLM"
    ]
    for group in section["groups"]:  # a CPU: nothing is comparable with the paper's A100 / RTX 4090 / Orin figures
        assert {x["verdict"] for x in group["figure5"] + group["tinychat"]} == {"not comparable: different hardware"}
        assert "nothing here is comparable" in group["note"]
    html = report_html(ladder_records(), ["x.jsonl"])
    part = html_section(html, "deployment")
    assert '<a href="#deployment">Deployment ladder</a>' in html and "82.1" in part and "186.8" in part  # TinyChat
    assert FP8_REASON in part and "84.4%" in part and "0.82x" in part and "matches prediction" in part
    assert part.index(">scaled-only bf16<") < part.index(">w4a16-llm<") < part.index(">baseline quantized<")
    assert all(f'<span class="prov {p}">' in part for p in ("measured", "analytic", "paper"))
    near, off = (340608, 109824, 280900), (340608, 109824, 213600)  # LLM bytes 0.4% and 2% off the prediction
    rows = deployment.ladder(
        [deployment_record(*LADDER[1], predicted=near), deployment_record(*LADDER[2], predicted=off)]
    )
    assert [r["weights_match"] for r in rows["groups"][0]["rows"]] == [True, False]  # flagged beyond 1%


def test_deployment_verdicts_need_the_papers_gpu_and_model_and_an_empty_section_says_how_to_run_it():
    def group(gpu, preset="nvila-8b"):
        env = CPU_ENV | {"device": "cuda", "torch_device_name": gpu, "gpu": [{"name": gpu}]}
        recs = [
            deployment_record("bf16", preset, {}, 0.2, 80.0, (10, 10, 10), 1.0, 0.0, env=env),
            deployment_record("w8a8-vit-int8", preset, QUANTIZED_FORMATS, 0.1, 170.0, (9, 10, 5), 0.9, 1e-3, env=env),
        ]
        return deployment.ladder(recs)["groups"][0]

    a100 = group("NVIDIA A100-SXM4-80GB")
    verdicts = [(t["preset"], t["verdict"]) for t in a100["tinychat"]]  # nvila-8b Baseline, TinyChat; vila1.5-8b
    assert verdicts == [("nvila-8b", "comparable")] * 2 + [("vila1.5-8b", "not measured")] and a100[
        "comparable_gpus"
    ] == ["A100"]
    assert a100["tinychat"][0]["ratio"] == pytest.approx(80 / 82.1)
    h100 = group("NVIDIA H100 80GB HBM3")
    assert {t["verdict"] for t in h100["tinychat"] + h100["figure5"]} == {"not comparable: different hardware"}
    assert "nothing here is comparable" in h100["note"]
    assert group("NVIDIA GeForce RTX 4090", "nvila-tiny")["tinychat"][0]["verdict"] == "not comparable: different model"
    html = report_html([prefill_record("nvila-tiny", 0.2)], ["x.jsonl"])
    part = html_section(html, "deployment")
    assert (
        "not measured" in part and "nvila-bench run deployment --preset nvila-8b --device cuda --out results/" in part
    )


def test_a_headline_row_takes_the_decode_of_its_own_request_not_a_comparisons():
    """A scale-then-compress run's decode record of the same preset and image, written later, must not stand in
    for the plain decode suite's figure (nor feed the plain row's stage bars); of two plain decode records of
    one request (other new-token counts) the newest is shown, with its count."""
    stc = {"comparison": "scale-then-compress", "variant": "nvila", "media": "image"}
    older = decode_record("nvila-tiny", tpot=0.02, new_tokens=32)
    plain = decode_record("nvila-tiny", tpot=0.01, new_tokens=8)
    plain.timestamp = "9" + older.timestamp[1:]  # written after `older`
    records = [
        prefill_record("nvila-tiny", 0.2),
        prefill_record("nvila-tiny", 0.1, extra=stc),
        older,
        plain,
        decode_record("nvila-tiny", tpot=0.001, extra=stc),
    ]
    rows = next(iter(sections.headline(records)["groups"].values()))
    assert len(rows) == 1  # the comparison's prefill has its own section
    assert rows[0]["decode_tps"] == pytest.approx(100, rel=0.05) and rows[0]["decode_new_tokens"] == 8
    bars = {row["label"].split(" (")[0]: row for row in sections.stage_breakdown(records)["rows"]}  # less the hardware
    assert bars["nvila-tiny 448x448"]["decode"] == pytest.approx(0.01 * 7, rel=0.05)
    assert bars["nvila-tiny 448x448 [nvila]"]["decode"] == pytest.approx(0.001 * 31, rel=0.05)  # its own
    assert "(8 new)" in report_html(records, ["x.jsonl"])


def test_a_real_image_file_is_its_own_request_named_by_its_file():
    """`run prefill --image-file photo.jpg` (640x480) beside `--image 640x480`: two rows the reader can tell
    apart, and each NVILA row's ratio is over the baseline of its own request."""
    photo = {"image_file": "/data/photo.jpg"}
    records = [
        prefill_record("nvila-tiny", 0.2, images=("640x480",)),
        prefill_record("vila-tiny", 0.1, images=("640x480",)),
        prefill_record("nvila-tiny", 0.3, images=("640x480",), extra=photo),
        prefill_record("vila-tiny", 0.15, images=("640x480",), extra=photo),
    ]
    records.append(decode_record("nvila-tiny", tpot=0.01, images=("640x480",)))  # the decode suite serves random images
    rows = {(row["preset"], row["media"]): row for row in next(iter(sections.headline(records)["groups"].values()))}
    assert set(rows) == {
        ("nvila-tiny", "640x480"),
        ("vila-tiny", "640x480"),
        ("nvila-tiny", "640x480 photo.jpg"),
        ("vila-tiny", "640x480 photo.jpg"),
    }
    assert rows[("nvila-tiny", "640x480 photo.jpg")]["ttft_speedup"] == pytest.approx(0.5, rel=0.05)
    assert rows[("nvila-tiny", "640x480")]["ttft_speedup"] == pytest.approx(0.5, rel=0.05)
    assert (
        rows[("nvila-tiny", "640x480 photo.jpg")]["decode_tps"] == rows[("nvila-tiny", "640x480")]["decode_tps"] > 0
    )  # same context
    assert report_records.point_name(records[2]) == "nvila-tiny 640x480 photo.jpg"
    assert "photo.jpg" in report_records.point_label(records[2])
    assert "photo.jpg" not in report_records.point_label(records[0])


def test_pages_and_ceilings_get_the_mode_a_plain_open_would_give(tmp_path):
    """Written atomically, but readable by others under the usual umask (mkstemp alone makes them 0600)."""
    import os
    import stat

    from nvila_bench.core.analysis.hardware import save_ceilings

    old = os.umask(0o022)
    try:
        out = tmp_path / "report.html"
        out.write_text("old")
        out.chmod(0o600)
        assert main(["report", str(write(tmp_path / "res", [prefill_record()])), "--out", str(out)]) == 0
        ceilings = save_ceilings({"device": "cpu"}, tmp_path / "c")
        assert main(["dashboard", str(tmp_path / "res"), "--out", str(tmp_path / "site")]) == 0
    finally:
        os.umask(old)
    for path in (out, ceilings, tmp_path / "site" / "index.html"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert not list(tmp_path.glob("**/.*.tmp"))  # no temporary file left behind


def test_the_papers_decode_rates_sit_beside_ours_in_the_same_weights():
    """The README's "Baseline (FP16)" row gets our unquantized figures (decode suite, the ladder's bf16 rung),
    the TinyChat (W4A16 LLM + W8A8 ViT) row only the ladder's rung of those formats, never the bf16 ones."""
    bf16 = decode_record("nvila-8b", tpot=0.006, env=GPU_ENV)
    ladder = [
        deployment_record(*LADDER[1], env=GPU_ENV),
        deployment_record(*LADDER[3], env=GPU_ENV),
        deployment_record(*LADDER[3][:4], 99.0, *LADDER[3][5:], media="video", env=GPU_ENV),
    ]  # not the README's request
    ladder = [replace(r, config=r.config | {"preset": "nvila-8b"}) for r in ladder]
    rows = {
        row["engine"]: row["ours"]
        for row in deployment_paper.decode_reference([bf16, *ladder])
        if row["preset"] == "nvila-8b"
    }
    baseline, tinychat = rows["Baseline (FP16)"], rows["TinyChat (W4A16 LLM + W8A8 ViT)"]
    assert sorted(round(v, 1) for _, v in baseline) == [6.1, pytest.approx(166.7, rel=0.05)]
    assert [v for _, v in tinychat] == [6.056] and "ladder rung w8a8-vit-int8" in tinychat[0][0]
    assert all("bfloat16" in label or "float32" in label for label, _ in baseline + tinychat)  # the dtype is named


def test_a_small_figure_is_never_shown_as_zero():
    from nvila_bench.reports.render import fmt_ms, fmt_pct

    assert fmt_ms(3.4e-7) == "0.00034 ms" and fmt_ms(5.8e-6) == "0.006 ms" and fmt_ms(0.0123) == "12.300 ms"
    assert fmt_ms(0.0) == "0.000 ms" and fmt_ms(2.5) == "2.500 s"
    assert fmt_pct(6e-5) == "0.006%" and fmt_pct(0.25) == "25.0%" and fmt_pct(0.0) == "0.0%"
    assert "no CUDA" in report_html([prefill_record()], ["x.jsonl"]) and "CUDA None" not in report_html(
        [prefill_record()], ["x.jsonl"]
    )


def test_the_headline_gives_each_presets_training_figures_once_of_its_own_hardware_stage_and_recipe():
    """Training throughput and fine-tuning memory change with no request: one row per preset, not one per request.
    Of several stages and recipes the row takes the full stage and NVILA's recipe (the paper's), not whichever was
    measured last (`make run` measures the nvila recipe, then full-full); a GPU's rows never show a CPU's figures."""

    def finetune(recipe: str, peak: int):
        r = train_record("nvila-tiny", extra={"recipe": recipe})
        return replace(r, suite="finetune-memory", metrics={"peak_memory_allocated": Metric.measured(peak, "bytes")})

    records = [
        prefill_record("nvila-tiny", 0.2),
        prefill_record("nvila-tiny", 0.3, images=("896x896",)),
        prefill_record("nvila-tiny", 0.1, env=GPU_ENV),
        train_record("nvila-tiny", step_time=0.5),
        train_record("nvila-tiny", step_time=0.1, extra={"stage": "projector"}),
        finetune("nvila", 2**30),
        finetune("full-full", 3 * 2**30),
    ]
    built = sections.headline(records)
    (cpu,) = [hw for hw in built["presets"] if "H100" not in hw]
    (gpu,) = [hw for hw in built["presets"] if "H100" in hw]
    assert len(built["groups"][cpu]) == 2 and [p["preset"] for p in built["presets"][cpu]] == ["nvila-tiny"]
    (row,) = built["presets"][cpu]
    assert row["train_sps"] == pytest.approx(2.0, rel=0.05) and (row["train_stage"], row["train_batch"]) == ("full", 1)
    assert (row["ft_memory"], row["ft_recipe"]) == (2**30, "nvila")
    (row,) = built["presets"][gpu]
    assert row["train_sps"] is None and row["ft_memory"] is None
    headline = (html := report_html(records, ["x.jsonl"]))[
        html.index('<section id="headline">') : html.index('<section id="claims">')
    ]
    assert headline.count("full stage, batch 1") == 1 and headline.count("nvila recipe") == 1
    assert "train samples/s" not in headline.split("<table>")[1]  # the requests' table


def test_the_fine_tuning_memory_claim_pairs_recipes_of_one_preset_on_one_hardware():
    """Table 6's ratio (full-full over NVILA's recipe) from a file holding a CPU run of a tiny preset and a GPU run
    of NVILA-8B: never NVILA-8B's recipe over the tiny preset's full-full; the real preset's pair once it is whole."""

    def finetune(preset: str, recipe: str, env: dict, **metrics):
        r = train_record(preset, env=env, extra={"recipe": recipe})
        return replace(r, suite="finetune-memory", metrics={k: Metric.measured(v, "bytes") for k, v in metrics.items()})

    tiny = [
        finetune("nvila-tiny", "nvila", CPU_ENV, memory_counted=100),
        finetune("nvila-tiny", "full-full", CPU_ENV, memory_counted=300),
    ]
    real_nvila = finetune("nvila-8b", "nvila", GPU_ENV, peak_memory_allocated=20e9)
    ours = {r["id"]: r for r in claims_table([*tiny, real_nvila])}["finetune-memory"]["ours"]
    assert ours.text == "3.00x" and not ours.comparable and "nvila-tiny, sum of counted parts" in ours.note
    real = [real_nvila, finetune("nvila-8b", "full-full", GPU_ENV, peak_memory_allocated=70e9)]
    ours = {r["id"]: r for r in claims_table([*real, *tiny])}["finetune-memory"]["ours"]  # the tiny pair written last
    assert ours.text == "3.50x" and ours.comparable and "H100" in ours.hardware and "allocator peak" in ours.note


def test_sources_are_named_relative_to_the_report_never_by_absolute_path(tmp_path):
    """The report names its results files below its own folder by their relative path, others by folder and file
    name: never an absolute path of the machine that measured."""
    from nvila_bench.reports.render import source_names

    out = tmp_path / "out"
    elsewhere = tmp_path / "runs" / "h100"
    assert source_names([str(out / "results.jsonl"), str(out / "a" / "b.jsonl")], str(out / "report.html")) == [
        "results.jsonl",
        "a/b.jsonl",
    ]
    assert source_names([str(elsewhere), str(elsewhere / "results.jsonl")], str(out / "report.html")) == [
        "runs/h100",
        "h100/results.jsonl",
    ]
    write(elsewhere, [prefill_record()])
    assert main(["report", str(elsewhere), "--out", str(out / "report.html")]) == 0
    html = (out / "report.html").read_text()
    assert "sources: <code>runs/h100</code>" in html and str(tmp_path) not in html


def test_each_declared_view_is_found_and_a_missing_one_is_named():
    """Every view a registered suite declares has its module and template partial; a view that lacks either is
    one line naming the two files."""
    from nvila_bench.reports import views
    from nvila_bench.suites.registry import declared_outputs

    declared = {o.view for o in declared_outputs().values() if o.view}
    assert declared == {"deployment", "scale_then_compress", "training", "accuracy", "profile"}
    for name in declared:
        module = views.find(name)
        assert module.TITLE and module.ANCHOR and callable(module.build)
    for bad in ("nope", "../deployment", ""):
        with pytest.raises(ValueError, match="report view"):
            views.find(bad)


def test_a_suite_no_declaration_names_shows_every_metric_of_its_records():
    """Records of a suite this version does not register (an older file) still get their suite's table: every
    metric their records hold, each formatted by its unit."""
    old = Record(
        "retired-suite",
        prefill_record().config,
        {
            "latency": Metric.timing([0.002, 0.002, 0.002]),
            "share": Metric.measured(0.25, "fraction", "lower"),
            "count": Metric.measured(1234, "tokens"),
        },
        "run-a",
        environment=CPU_ENV,
    )
    table = html_section(report_html([old]), "suite-retired-suite")
    assert "No suite of this version declares retired-suite's metrics: every metric its records hold." in table
    assert '<th>count <span class="muted">tokens</span></th>' in table and ">1,234</td>" in table
    assert "<th>latency</th>" in table and '<td class="num">2.000 ms</td>' in table and ">25.0%</td>" in table
