"""`run deployment` on a peer VLM: its own ladder (bf16, w4a16-llm), the same record fields as NVILA's rungs, its
LLM's decoder layers quantized by transformers' module paths (tower and merger / projector bf16), bytes as predicted,
and NVILA and the peers climbed in one run so the report pairs them at W4A16. NVILA-only rungs are refused."""

from __future__ import annotations

import json
import math

import pytest
import torch
from fake_records import html_section
from nvila_bench.model import build_model, get_preset
from nvila_bench.model.quant_plan import QuantPlan
from nvila_bench.model.quantize import measured_weight_bytes, predicted_weight_bytes, quantize_model
from nvila_bench.reports import peers as peers_section
from nvila_bench.reports.views import deployment as ladder_section
from nvila_bench.suites.deployment import calibration
from nvila_bench.suites.deployment_ladder import PEER_RUNGS, RUNGS, expand, plan_of
from torch import nn

from nvila_bench.cli import main
from nvila_bench.core.analysis import costmodel
from nvila_bench.core.measuring.result_files import load_results

pytest.importorskip("torchao")
PEERS = ["qwen2-vl-tiny", "qwen2.5-vl-tiny", "llava-onevision-tiny"]
CLIMB = ["qwen2-vl-tiny", "llava-onevision-tiny"]  # the CLI run's peers (M-RoPE, and a Qwen2ForCausalLM view)
FAST = [
    "--image",
    "448x448",
    "--new-tokens",
    "3",
    "--prompt-tokens",
    "8",
    "--repeats",
    "1",
    "--warmup",
    "0",
    "--min-seconds",
    "0",
    "--quality-prompts",
    "1",
    "--media",
    "image",
    "--quiet",
]
FIELDS = (
    "ttft",
    "preprocess",
    "vision",
    "projector",
    "llm_prefill",
    "tpot",
    "decode_tokens_per_s",
    "setup_seconds",
    "decode_step_bytes",
    "vision_bytes",
    "llm_prefill_bytes",
    "top1_agreement",
    "logits_kl",
    "quality_positions",
    "media_tokens",
    "sequence_tokens",
)


def _records(out) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def _value(record: dict, name: str):
    return record["metrics"][name]["value"]


@pytest.fixture(scope="module")
def ladders(tmp_path_factory):
    """One run: nvila-tiny's and two tiny peers' bf16 and w4a16-llm rungs (image, eager, activation-aware scales)."""
    out = tmp_path_factory.mktemp("ladders") / "out"
    presets = [a for p in ["nvila-tiny", *CLIMB] for a in ("--preset", p)]
    assert main(["run", "deployment", *presets, "--rung", "bf16", "--rung", "w4a16-llm", *FAST, "--out", str(out)]) == 0
    return out


def test_each_peer_climbs_bf16_and_w4a16_with_nvilas_record_fields(ladders):
    records = _records(ladders)
    assert [(r["config"]["preset"], r["config"]["extra"]["rung"]) for r in records] == [
        (p, rung) for p in ["nvila-tiny", *CLIMB] for rung in PEER_RUNGS
    ]
    assert len({r["run_id"] for r in records}) == 1 and all(r["status"] == "ok" for r in records)
    for r in records:
        extra, metrics = r["config"]["extra"], r["metrics"]
        for name in FIELDS:
            assert metrics[name]["value"] is not None, (r["config"]["preset"], name)
        for c in ("vision", "projector", "llm"):
            assert _value(r, f"{c}_weights_bytes") == _value(r, f"{c}_weights_bytes_predicted") > 0
        agreement = _value(r, "top1_agreement")
        assert 0 <= agreement <= 1 and math.isfinite(_value(r, "logits_kl")) and _value(r, "logits_kl") >= 0
        if extra["rung"] == "bf16":
            assert agreement == 1.0 and "quantize_seconds" not in metrics and "llm_weights" not in extra
        else:
            assert extra["llm_weights"] == "w4a16" and "vision_weights" not in extra
            assert (extra["scales"], extra["int4_kernel"]) == ("activation-aware", "opaque")
            assert _value(r, "quantize_seconds") > 0
    by = {(r["config"]["preset"], r["config"]["extra"]["rung"]): r for r in records}
    for p in CLIMB:  # the LLM only: the tower and merger keep their bytes, the decode step reads fewer
        bf16, int4 = by[(p, "bf16")], by[(p, "w4a16-llm")]
        assert _value(int4, "llm_weights_bytes") < _value(bf16, "llm_weights_bytes")
        assert _value(int4, "vision_weights_bytes") == _value(bf16, "vision_weights_bytes")
        assert _value(int4, "projector_weights_bytes") == _value(bf16, "projector_weights_bytes")
        assert _value(int4, "decode_step_bytes") < _value(bf16, "decode_step_bytes")


def test_the_report_sets_nvila_beside_each_peer_at_w4a16_and_gives_each_peer_its_own_ladder(ladders, tmp_path):
    records = load_results([ladders / "results.jsonl"])
    groups = peers_section.comparison(records)["groups"]
    w4a16 = next(g for g in groups if g["weights"] == "LLM w4a16 (opaque), AWQ / SmoothQuant scales")
    assert [row["preset"] for row in w4a16["rows"]] == ["nvila-tiny", *sorted(CLIMB)]
    ratios = w4a16["rows"][0]["vs_peers"]
    assert {v["peer"] for v in ratios} == set(CLIMB)
    assert all(v["ttft"] > 0 and v["decode"] > 0 and v["ttft_same_run"] and v["decode_same_run"] for v in ratios)
    assert any(g["weights"] == "bf16" for g in groups)
    ladders_ = ladder_section.ladder(records)["groups"]
    families = {(g["family"], tuple(row["preset"] for row in g["rows"])) for g in ladders_}
    assert families == {(p, (p, p)) for p in ["nvila-tiny", *CLIMB]}  # a peer's rungs never join NVILA's ladder
    page = tmp_path / "report.html"
    assert main(["report", str(ladders), "--out", str(page)]) == 0
    html = page.read_text()
    section = html_section(html, "peers")
    assert "weights LLM w4a16 (opaque), AWQ / SmoothQuant scales" in section
    assert '<tr class="nvila"><td>nvila-tiny' in section and '<tr class="peer"><td>qwen2-vl-tiny' in section
    assert "qwen2-vl-tiny is a peer VLM: its own ladder" in html


@pytest.mark.parametrize("preset", PEERS)
def test_the_quantized_peer_llm_layers_are_torchao_tensors_and_the_rest_stays_bf16(preset):
    """The suite's plan and calibration on a built peer: decoder linears int4 (AWQ scales folded), vision tower,
    merger / projector, embeddings and LM head plain bf16; bytes as predicted, and as the cost model reads them."""
    from nvila_bench.core.measuring.point import BenchPoint

    point = next(j.point for j in expand({"preset": [preset]}, {"media": "image", "rung": ("w4a16-llm",)}))
    point = BenchPoint(
        preset, "cpu", "bfloat16", images=((448, 448),), prompt_tokens=8, new_tokens=3, extra=point.extra
    )
    plan = plan_of(point)
    assert (plan.llm, plan.vision, plan.projector, plan.scales) == ("w4a16", "bf16", "bf16", "activation-aware")
    model = build_model(get_preset(preset), torch.bfloat16)
    norm = model.hf.model.language_model.layers[0].input_layernorm.weight.clone()
    quantize_model(model, plan, calibration(model, point))
    assert not torch.equal(norm, model.hf.model.language_model.layers[0].input_layernorm.weight)  # AWQ folded in
    decoder = model.hf.model.language_model
    linears = [m for m in decoder.layers.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 7 * len(decoder.layers)
    assert all(type(m.weight.data).__module__.startswith("torchao") for m in linears)
    tower = model.hf.model.visual if model.mrope else model.hf.model.vision_tower
    rest = [m.weight for m in tower.modules() if isinstance(m, nn.Linear)]
    rest += [model.hf.lm_head.weight, decoder.embed_tokens.weight]
    projector = model.boundary  # Qwen's merger sits inside `visual`, counted above
    rest += [] if model.mrope else [m.weight for m in projector.modules() if isinstance(m, nn.Linear)]
    assert rest and all(type(w.data) is torch.Tensor and w.dtype == torch.bfloat16 for w in rest)
    cfg = get_preset(preset)
    measured = measured_weight_bytes(model)
    assert measured == predicted_weight_bytes(cfg, plan, "cpu")
    embeddings = 2 * cfg.llm.vocab_size * cfg.llm.hidden_size  # not read by a forward (costmodel.llm_weights)
    assert costmodel.weights_read(cfg, plan, "cpu") == {"llm": measured["llm"] - embeddings}


@pytest.mark.parametrize("preset", ["qwen2-vl-tiny", "llava-onevision-tiny"])
def test_a_peers_qkv_and_gate_up_fuse_and_its_lm_head_quantizes_when_asked(preset):
    """intx (whose row slices fuse): each decoder layer's q/k/v and gate/up are slices of one quantized weight,
    the compiled engine's one matmul; `--lm-head quantized` takes transformers' head (hf.lm_head) too."""
    model = build_model(get_preset(preset), torch.bfloat16)
    plan = QuantPlan(llm="w4a16", group_size=64, int4_kernel="intx", lm_head=True)
    quantize_model(model, plan)
    for layer in model.hf.model.language_model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        assert attn.q_proj.fusion is attn.k_proj.fusion is attn.v_proj.fusion
        assert mlp.gate_proj.fusion is mlp.up_proj.fusion
        assert not hasattr(attn.o_proj, "fusion") and not hasattr(mlp.down_proj, "fusion")
    assert type(model.hf.lm_head.weight.data).__module__.startswith("torchao")
    assert model.llm.lm_head is model.hf.lm_head  # the engines' LLM drives the quantized head
    assert measured_weight_bytes(model) == predicted_weight_bytes(get_preset(preset), plan, "cpu")


def test_the_compiled_engine_and_hf_static_run_the_quantized_peer_on_the_same_weights(tmp_path):
    out = tmp_path / "out"
    args = ["--preset", "qwen2-vl-tiny", "--rung", "w4a16-llm", "--engine", "compiled", "--engine", "hf-static"]
    assert main(["run", "deployment", *args, *FAST, "--out", str(out)]) == 0
    compiled, hf = _records(out)
    assert (compiled["config"]["engine"], hf["config"]["engine"]) == ("compiled", "hf-static")
    for r in (compiled, hf):
        assert r["status"] == "ok" and r["config"]["extra"]["llm_weights"] == "w4a16"
        assert _value(r, "decode_tokens_per_s") > 0
        assert _value(r, "llm_weights_bytes") == _value(r, "llm_weights_bytes_predicted")
    assert "decode step" not in (compiled["metrics"].get("engine_note") or {}).get("value", "")  # no decode fallback
    # one cached model for both engines: the same quantized weights, so the same quality figures
    assert _value(compiled, "top1_agreement") == _value(hf, "top1_agreement")
    assert _value(compiled, "logits_kl") == pytest.approx(_value(hf, "logits_kl"))


REFUSED = [
    (
        ["--preset", "qwen2-vl-tiny", "--rung", "w8a8-vit-int8"],
        "--rung w8a8-vit-int8: a rung of NVILA's ladder only; qwen2-vl-tiny is a peer VLM (its ladder: bf16, "
        "w4a16-llm): "
        "run that rung without the peer",
    ),
    (
        ["--preset", "nvila-tiny", "--preset", "llava-onevision-tiny", "--rung", "bf16", "--rung", "baseline bf16"],
        "--rung baseline bf16: a rung of NVILA's ladder only; llava-onevision-tiny is a peer VLM (its ladder: bf16, "
        "w4a16-llm): run that rung without the peer",
    ),
    (
        ["--preset", "qwen2.5-vl-tiny", "--checkpoint", "."],
        "--checkpoint scores NVILA's rungs on a trained NVILA checkpoint; qwen2.5-vl-tiny is a peer VLM: run the peer "
        "without --checkpoint",
    ),
    (
        ["--preset", "nvila-tiny", "--preset", "nvila-lite-tiny", "--preset", "qwen2-vl-tiny"],
        "deployment takes one NVILA --preset (its scaled-only variant and VILA1.5 baseline join the ladder) and / or "
        "peer VLM presets (bf16 and w4a16-llm rungs each)",
    ),
]


@pytest.mark.parametrize("args, message", REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_what_a_peers_ladder_lacks_is_refused_in_one_line_before_measuring(tmp_path, capsys, args, message):
    code = main(["run", "deployment", *args, "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert (code, out, err) == (2, "", f"nvila-bench: error: {message}\n")
    assert not (tmp_path / "out").exists()


def test_without_rung_nvila_climbs_its_whole_ladder_and_a_peer_its_two_rungs():
    jobs = expand({"preset": ["qwen2-vl-tiny", "nvila-tiny"]}, {"media": "image"})
    rungs = [(j.point.preset, j.point.extra["rung"]) for j in jobs]
    nvila = [(p, r) for p, r in rungs if p != "qwen2-vl-tiny"]
    assert [r for _, r in nvila] == list(RUNGS) and rungs[len(nvila) :] == [("qwen2-vl-tiny", r) for r in PEER_RUNGS]


def test_a_peers_tower_or_projector_in_a_quantized_format_is_a_clear_error():
    cfg = get_preset("qwen2-vl-tiny")
    model = build_model(cfg, torch.bfloat16)
    for plan in (QuantPlan(vision="w8a8-int8"), QuantPlan(llm="w4a16", projector="w8a8-int8", group_size=64)):
        with pytest.raises(ValueError, match="a peer VLM's (vision|projector) stays bf16 here"):
            quantize_model(model, plan)
    with pytest.raises(ValueError, match="qwen2-vl-tiny is a peer VLM: its vision tower stays bf16 here"):
        costmodel.weights_read(cfg, QuantPlan(vision="w8a8-int8"))
