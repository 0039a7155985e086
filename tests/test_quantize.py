"""Weight formats (model/quantize.py) on CPU through torchao's CPU kernels: each format round-trips a tiny
model, its logits stay within a stated tolerance of bf16, and its measured weight bytes equal the
prediction the cost model uses."""

from __future__ import annotations

import pytest
import torch
from nvila_bench.model import build_model, get_preset
from nvila_bench.model.pipeline import embed, synthetic_request
from nvila_bench.model.quant_plan import QuantPlan, unavailable
from nvila_bench.model.quantize import (
    linear_bytes,
    linear_shapes,
    measured_weight_bytes,
    predicted_weight_bytes,
    quantize_model,
)

pytest.importorskip("torchao")

# Relative L2 error of the last position's logits against bf16, on random weights (a harsher case than
# trained weights: no outlier structure for the scales to exploit). Measured: w4a16 0.08-0.09, int8 < 0.013.
TOLERANCE = {"w4a16": 0.15, "w4a16-intx": 0.15, "w8a8-int8": 0.03}
PLANS = {
    "w4a16": QuantPlan(llm="w4a16", group_size=32),  # opaque: PyTorch's CPU int4 GEMM, two weights per byte
    "w4a16-intx": QuantPlan(llm="w4a16", group_size=32, int4_kernel="intx"),  # int8 storage
    "w8a8-int8": QuantPlan(llm="w8a8-int8", vision="w8a8-int8", projector="w8a8-int8"),
}


def _logits(model, cfg):
    with torch.inference_mode():
        return model.prefill(embed(model, synthetic_request(cfg, ((448, 448),), None, 16))).logits.float()


@pytest.mark.parametrize("preset", ["nvila-tiny", "vila-tiny", "nvila-lite-tiny"])
@pytest.mark.parametrize("fmt", list(PLANS))
def test_each_format_round_trips_within_tolerance_and_its_bytes_are_predicted(preset, fmt):
    cfg = get_preset(preset)
    model = build_model(cfg, torch.bfloat16)
    reference = _logits(model, cfg)
    before = measured_weight_bytes(model)
    assert before == predicted_weight_bytes(cfg, QuantPlan())
    quantize_model(model, PLANS[fmt])
    after = measured_weight_bytes(model)
    assert after == predicted_weight_bytes(cfg, PLANS[fmt], "cpu")
    assert after["llm"] < before["llm"]
    quantized = _logits(model, cfg)
    assert torch.isfinite(quantized).all()
    error = ((quantized - reference).norm() / reference.norm()).item()
    assert 0 < error < TOLERANCE[fmt], error  # changed (the format was applied), but not by much
    weight = model.llm.model.layers[0].mlp.down_proj.weight
    assert type(weight).__module__.startswith("torchao"), type(weight)  # torchao's tensor, not a bf16 copy
    if fmt == "w4a16":  # packed int4 (N, K / 2 bytes) for the CPU kernel, not int8 per weight
        assert type(weight).__name__ == "Int4OpaqueTensor" and weight.qdata.dtype == torch.uint8
        assert weight.qdata.numel() == weight.shape[0] * weight.shape[1] // 2
    assert type(model.llm.lm_head.weight) in (torch.nn.Parameter, torch.Tensor)  # the LM head stays bf16


def test_the_lm_head_embeddings_and_patch_embedding_stay_bf16():
    cfg = get_preset("nvila-tiny")
    model = build_model(cfg, torch.bfloat16)
    quantize_model(model, QuantPlan(llm="w8a8-int8", vision="w8a8-int8"))
    body = getattr(model.vision_tower, "vision_model", model.vision_tower)
    for p in (model.llm.lm_head.weight, model.llm.model.embed_tokens.weight, body.embeddings.patch_embedding.weight):
        assert p.dtype == torch.bfloat16 and type(p) is torch.nn.Parameter


def test_w4a16_on_cuda_is_about_a_quarter_of_bf16_for_nvila_8b_linears():
    """The LLM's linear weights: 2 bytes each in bf16, half a byte plus a (scale, zero) pair per 128 in int4
    with gemlite; tinygemm first pads in_features to a multiple of 1024 (Qwen2-7B's 3584 -> 4096, 18944 -> 19456)."""
    cfg = get_preset("nvila-8b")
    shapes = linear_shapes(cfg, "llm")
    bf16 = sum(linear_bytes(i, o, "bf16") for i, o in shapes)
    gemlite = sum(linear_bytes(i, o, "w4a16", 128, "gemlite") for i, o in shapes)
    tinygemm = sum(linear_bytes(i, o, "w4a16", 128, "tinygemm") for i, o in shapes)
    assert 3.6 < bf16 / gemlite < 3.8
    assert sum(i * o for i, o in shapes) == 6_525_288_448  # 28 layers of Qwen2-7B's q, k, v, o, gate, up, down
    # tinygemm, by hand: q, k, v, o, gate, up read 4096 inputs, down 19456; out_features are multiples of 8
    padded = 28 * (4096 * (3584 + 512 + 512 + 3584 + 18944 + 18944) + 19456 * 3584)
    assert tinygemm == padded // 2 + 4 * padded // 128
    assert 1.10 < tinygemm / gemlite < 1.11
    assert linear_bytes(100, 3, "w4a16", 32, "tinygemm") == 8 * 1024 // 2 + 4 * 8 * 32  # (3, 100) -> (8, 1024)


def test_the_int4_kernel_is_gemlite_where_installed(monkeypatch):
    import importlib.util

    from nvila_bench.model import quant_plan as quantize

    plan = QuantPlan(llm="w4a16")
    assert quantize.int4_kernel(plan, "cpu") == "opaque"  # PyTorch's CPU int4 GEMM
    assert quantize.int4_kernel(QuantPlan(llm="w4a16", int4_kernel="intx"), "cpu") == "intx"
    assert (
        quantize.unavailable(QuantPlan(llm="w4a16", int4_kernel="gemlite"), "cpu")
        == "the gemlite int4 kernel runs on CUDA GPUs only"
    )
    assert (
        quantize.unavailable(QuantPlan(llm="w4a16", int4_kernel="opaque"), "cuda")
        == "the opaque int4 kernel runs on CPUs only"
    )
    assert (
        quantize.unavailable(QuantPlan(llm="w4a16", group_size=256), "cpu")
        == "the opaque int4 kernel takes groups of 32, 64 or 128 inputs, not 256"
    )
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "gemlite" else real(name, *a))
    assert quantize.int4_kernel(plan, "cuda") == "gemlite"
    assert quantize.int4_kernel(QuantPlan(llm="w4a16", int4_kernel="tinygemm"), "cuda:0") == "tinygemm"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gemlite" else real(name, *a))
    assert quantize.int4_kernel(plan, "cuda") == "tinygemm"
    assert "needs gemlite" in unavailable(QuantPlan(llm="w4a16", int4_kernel="gemlite"), "cuda")
    assert "CUDA GPUs only" in unavailable(QuantPlan(llm="w4a16", int4_kernel="gemlite"), "cpu")
    assert unavailable(QuantPlan(vision="w8a8-int8", int4_kernel="gemlite"), "cpu") is None  # no int4 weights
    with pytest.raises(ValueError, match="unknown int4 kernel 'marlin'"):
        QuantPlan(int4_kernel="marlin")


def test_quantizing_leaves_the_process_inductor_settings_alone():
    """torchao's configs default to set_inductor_config=True, which turns on coordinate-descent tuning for the
    whole process: every later compile (the bf16 rungs and peers after a quantized one) would change."""
    from torch._inductor import config as inductor

    before = (inductor.coordinate_descent_tuning, inductor.force_fuse_int_mm_with_mul)
    model = build_model(get_preset("nvila-tiny"), torch.bfloat16)
    quantize_model(model, QuantPlan(llm="w8a8-int8", vision="w8a8-int8"))
    quantize_model(build_model(get_preset("nvila-tiny"), torch.bfloat16), QuantPlan(llm="w4a16", group_size=32))
    assert (inductor.coordinate_descent_tuning, inductor.force_fuse_int_mm_with_mul) == before == (False, False)


def test_formats_that_cannot_run_here_say_why():
    assert unavailable(QuantPlan(), "cpu") is None
    assert unavailable(QuantPlan(llm="w4a16"), "cpu") is None
    assert "FP8" in unavailable(QuantPlan(vision="w8a8-fp8"), "cpu")
    model = build_model(get_preset("nvila-tiny"), torch.bfloat16)
    with pytest.raises(ValueError, match="w8a8-fp8 needs a CUDA GPU with FP8"):
        quantize_model(model, QuantPlan(llm="w8a8-fp8"))
    with pytest.raises(ValueError, match="groups of 128 do not divide in_features 64"):
        quantize_model(model, QuantPlan(llm="w4a16"))
    with pytest.raises(ValueError, match="unknown llm weight format 'int3'"):
        QuantPlan(llm="int3")


def test_the_cost_model_reads_quantized_weights():
    """bf16 weights_read equals the cost model's own weight bytes; W4A16 shrinks the NVILA-8B decode step's
    bytes by the linears' ratio (the LM head and embeddings stay bf16)."""
    from nvila_bench.core.analysis import costmodel

    cfg = get_preset("nvila-8b")
    bf16 = costmodel.weights_read(cfg, QuantPlan())
    assert bf16["llm"] == 2 * costmodel.llm_weights(cfg) and bf16["vision"] == 2 * costmodel.vision_weights(cfg)
    assert costmodel.decode_step_cost(cfg, 3200, weights=bf16["llm"]) == costmodel.decode_step_cost(cfg, 3200)
    int4 = costmodel.weights_read(cfg, QuantPlan(llm="w4a16", int4_kernel="gemlite"))
    head = 2 * cfg.llm.vocab_size * cfg.llm.hidden_size  # untied LM head, read every step, kept bf16
    shapes = linear_shapes(cfg, "llm")
    assert int4["llm"] == bf16["llm"] - sum(2 * i * o - linear_bytes(i, o, "w4a16", 128, "gemlite") for i, o in shapes)
    assert int4["llm"] > head and 2.9 < bf16["llm"] / int4["llm"] < 3.3
    tinygemm = costmodel.weights_read(cfg, QuantPlan(llm="w4a16", int4_kernel="tinygemm"))["llm"]
    assert 2.8 < bf16["llm"] / tinygemm < 2.9  # its padding of 3584 inputs to 4096 is read every step too
    assert int4["vision"] == bf16["vision"]
    vit = costmodel.weights_read(cfg, QuantPlan(vision="w8a8-int8"))["vision"]
    assert 1.8 < bf16["vision"] / vit < 2.0


def test_the_deployment_suite_writes_a_record_per_rung(tmp_path, capsys):
    import json

    from nvila_bench.cli import main

    code = main(
        [
            "run",
            "deployment",
            "--preset",
            "nvila-tiny",
            "--image",
            "448x448",
            "--video-frames",
            "8",
            "--new-tokens",
            "4",
            "--prompt-tokens",
            "8",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--min-seconds",
            "0",
            "--quality-prompts",
            "2",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0, capsys.readouterr().err
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    rungs = [(r["config"]["extra"]["media"], r["config"]["extra"]["rung"], r["status"]) for r in records]
    from nvila_bench.suites.deployment import RUNGS

    assert rungs == [(m, name, "skipped" if "fp8" in name else "ok") for m in ("image", "video") for name in RUNGS]
    by = {(r["config"]["extra"]["media"], r["config"]["extra"]["rung"]): r for r in records}
    image = {name: by[("image", name)] for name in RUNGS}

    def value(r, k):
        return r["metrics"][k]["value"]

    assert image["scaled-only bf16"]["config"]["preset"] == "nvila-tiny-scaled-only"
    assert image["baseline quantized"]["config"]["preset"] == "vila-tiny"
    assert by[("video", "bf16")]["config"]["preset"] == "nvila-video-tiny"
    assert value(image["scaled-only bf16"], "media_tokens") > value(image["bf16"], "media_tokens")  # STC
    assert value(image["w4a16-llm"], "llm_weights_bytes") < value(image["bf16"], "llm_weights_bytes")
    assert value(image["w8a8-vit-int8"], "vision_weights_bytes") < value(image["w4a16-llm"], "vision_weights_bytes")
    # the stages' bytes in the rung's weight formats: fewer LLM bytes read by the W4A16 prefill, fewer ViT bytes by int8
    assert value(image["w4a16-llm"], "llm_prefill_bytes") < value(image["bf16"], "llm_prefill_bytes")
    assert (
        value(image["w8a8-vit-int8"], "vision_bytes")
        < value(image["w4a16-llm"], "vision_bytes")
        == value(image["bf16"], "vision_bytes")
    )
    for r in records:
        if r["status"] == "ok":
            for c in ("vision", "projector", "llm"):
                assert value(r, f"{c}_weights_bytes") == value(r, f"{c}_weights_bytes_predicted")
            assert 0 <= value(r, "top1_agreement") <= 1 and value(r, "logits_kl") >= 0
            assert value(r, "ttft") > 0 and value(r, "decode_tokens_per_s") > 0
    assert value(image["bf16"], "top1_agreement") == 1.0 and value(image["bf16"], "logits_kl") == 0.0
    assert "FP8" in by[("image", "w8a8-vit-fp8")]["error"]
    # the int4 kernel is part of a W4A16 rung's config (PyTorch's CPU int4 GEMM here), one-time costs apart
    assert [r["config"]["extra"].get("int4_kernel") for r in image.values()] == [
        None,
        None,
        "opaque",
        "opaque",
        "opaque",
        None,
        None,
        "opaque",
    ]
    assert value(image["w4a16-llm"], "quantize_seconds") > 0 and "quantize_seconds" not in image["bf16"]["metrics"]
    assert all(value(r, "setup_seconds") >= 0 for r in records if r["status"] == "ok")


def test_an_int4_kernel_that_cannot_run_here_is_one_line_before_measuring(tmp_path, capsys):
    from nvila_bench.cli import main

    for kernel in ("gemlite", "tinygemm"):
        code = main(
            ["run", "deployment", "--preset", "nvila-tiny", "--int4-kernel", kernel, "--out", str(tmp_path / kernel)]
        )
        out, err = capsys.readouterr()
        assert code == 2 and out == ""
        assert err == f"nvila-bench: error: --int4-kernel {kernel}: the {kernel} int4 kernel runs on CUDA GPUs only\n"
        assert not (tmp_path / kernel).exists()


# The ladder on nvila-tiny at its smallest: one 448x448 image, 3 new tokens, one repeat, 2 quality prompts
TINY_LADDER = ["run", "deployment", *"--preset nvila-tiny --image 448x448 --new-tokens 3 --prompt-tokens 8".split()]
TINY_LADDER += [*"--repeats 1 --warmup 0 --min-seconds 0 --quality-prompts 2 --media image".split()]


def test_a_quantized_rung_on_its_own_compares_with_its_own_bf16_weights(tmp_path, capsys):
    """--rung / --media run part of the ladder; a quantized rung without the bf16 rung before it takes its
    reference logits from its model before quantizing, and agrees with the full ladder's figure."""
    import json

    from nvila_bench.suites import deployment_quality

    from nvila_bench.cli import main

    deployment_quality.REFERENCE.clear()
    common = TINY_LADDER
    assert main([*common, "--rung", "w4a16-llm", "--out", str(tmp_path / "alone")]) == 0, capsys.readouterr().err
    deployment_quality.REFERENCE.clear()
    assert main([*common, "--rung", "bf16", "--rung", "w4a16-llm", "--out", str(tmp_path / "after")]) == 0

    def read(name):
        return [json.loads(x) for x in (tmp_path / name / "results.jsonl").read_text().splitlines()]

    alone, after = read("alone"), read("after")
    assert [r["config"]["extra"]["rung"] for r in alone] == ["w4a16-llm"]
    assert [r["config"]["extra"]["rung"] for r in after] == ["bf16", "w4a16-llm"]
    assert all(r["config"]["extra"]["media"] == "image" for r in alone + after)
    for key in ("top1_agreement", "logits_kl"):
        assert alone[0]["metrics"][key]["value"] == pytest.approx(after[1]["metrics"][key]["value"])
    assert alone[0]["metrics"]["top1_agreement"]["value"] < 1
    assert main([*common, "--rung", "w2a2", "--out", str(tmp_path / "bad")]) == 2
    assert "--rung" in capsys.readouterr().err


def test_deployment_needs_one_nvila_preset(tmp_path, capsys):
    from nvila_bench.cli import main

    assert main(["run", "deployment", "--preset", "vila-tiny", "--out", str(tmp_path)]) == 2
    assert "deployment takes one NVILA --preset" in capsys.readouterr().err


def test_an_installed_torchao_adds_no_noise_to_a_commands_stderr(tmp_path):
    """transformers imports torchao with every model class; on CPU torchao logs that its CUDA kernels do not
    load. A command's error must still be its one line."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "nvila_bench", "run", "prefill", "--preset", "nope", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert out.stderr.startswith("nvila-bench: error: unknown preset 'nope'") and out.stderr.count("\n") == 1, (
        out.stderr
    )


def test_accuracy_per_rung_runs_the_synthetic_tasks_on_the_quantized_checkpoint(tmp_path):
    """`deployment --checkpoint`: each NVILA rung's synthetic-task accuracy, through lmms-eval as the accuracy
    suite scores it, on the checkpoint's weights quantized as the rung says."""
    pytest.importorskip("lmms_eval")
    from nvila_bench.model.tokenizer import build_tokenizer
    from nvila_bench.suites.deployment_quality import rung_accuracy
    from nvila_bench.suites.synthetic_train import save_trained

    cfg = get_preset("nvila-tiny")
    save_trained(build_model(cfg), build_tokenizer(cfg), tmp_path / "ckpt")
    metrics = rung_accuracy(
        str(tmp_path / "ckpt"), QuantPlan(llm="w8a8-int8"), "cpu", 2, data_dir=str(tmp_path / "data")
    )
    tasks = {"accuracy_synthetic_colour", "accuracy_synthetic_count", "accuracy_synthetic_frame"}
    assert set(metrics) == tasks | {
        "synthetic_accuracy",
        "checkpoint_top1_agreement",
        "checkpoint_logits_kl",
        "checkpoint_quality_positions",
    }
    # logits compared at the test split's answers: 16 questions per task, each answer's tokens and its EOS
    assert metrics["checkpoint_quality_positions"].value >= 3 * 16 * 2
    assert all(0 <= metrics[k].value <= 1 for k in tasks | {"synthetic_accuracy", "checkpoint_top1_agreement"})
    assert metrics["checkpoint_logits_kl"].value > 0  # the LLM was quantized: its logits moved
    from nvila_bench.suites.registry import declared_outputs

    specs = {m.name: m for m in declared_outputs()["deployment"].metrics}  # each declared as written
    assert all((specs[k].unit, specs[k].better) == (m.unit, m.better) for k, m in metrics.items())


def test_answer_logprobs_run_the_request_pipeline_on_the_rows_media(tmp_path):
    """The checkpoint's answer positions go through model/pipeline.py (a Request of the row's media and ids): the
    same log-probabilities as the row's preprocessed media through the model's own stages."""
    from nvila_bench.model.tokenizer import build_tokenizer
    from nvila_bench.suites.deployment_quality import answer_logprobs
    from nvila_bench.suites.synthetic_train import example

    from nvila_bench.core.measuring import synthetic_tasks as st

    cfg = get_preset("nvila-tiny")
    model, tokenizer = build_model(cfg).eval(), build_tokenizer(cfg)
    st.generate(tmp_path)
    rows = [st.load_split(tmp_path, task, "test")[0] for task in st.TASKS]  # an image task and a video task
    expected = []
    with torch.inference_mode():
        for row in rows:
            media, ids, answer = example(cfg, tokenizer, tmp_path, row)
            embeds = model.embed(torch.tensor([ids]), model.project(model.encode_media(media), media))
            logits = model.prefill(embeds, all_logits=True).logits[0, -answer - 1 : -1]
            expected.append(logits.float().log_softmax(-1))
    got = answer_logprobs(model, tokenizer, tmp_path, per_task=1)
    assert got.shape[0] == sum(e.shape[0] for e in expected) >= 3 * 2
    torch.testing.assert_close(got, torch.cat(expected))


def test_a_w8a8_stage_reports_its_mfu_against_the_int8_peak(tmp_path, capsys):
    """In a subprocess (--isolate): the worker gets every peak of the run, not only the points dtype."""
    import json

    from nvila_bench.cli import main
    from nvila_bench.core.analysis import costmodel
    from nvila_bench.core.analysis.hardware import get_hardware

    code = main(
        [
            "run",
            "deployment",
            "--preset",
            "nvila-tiny",
            "--image",
            "448x448",
            "--new-tokens",
            "2",
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
            "--rung",
            "w8a8-vit-int8",
            "--hardware",
            "h100-sxm",
            "--isolate",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "results.jsonl").read_text())["metrics"]

    def value(k):
        return metrics[k]["value"]

    assert (value("vision_mfu_dtype"), value("llm_prefill_mfu_dtype")) == ("int8", "bfloat16")
    cost = costmodel.request_costs(get_preset("nvila-tiny"), ((448, 448),), None, True, 8, dtype="bfloat16")["vision"]
    expected = cost.executed_flops / value("vision") / get_hardware("h100-sxm").peak_flops("int8")
    assert value("vision_mfu") == pytest.approx(expected)


def test_the_compiled_engine_runs_a_quantized_rung_on_cpu(tmp_path, capsys):
    """W4A16 LLM + W8A8 ViT with the compiled engine: the fast decode step runs torchao's modules unfused, and
    a vision tower that inductor cannot compile on this CPU (int8 activations) runs plain with a note."""
    import json

    from nvila_bench.cli import main

    code = main(
        [
            "run",
            "deployment",
            "--preset",
            "nvila-tiny",
            "--image",
            "448x448",
            "--new-tokens",
            "4",
            "--prompt-tokens",
            "8",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--min-seconds",
            "0",
            "--quality-prompts",
            "2",
            "--media",
            "image",
            "--rung",
            "w8a8-vit-int8",
            "--engine",
            "compiled",
            "--scales",
            "none",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0, capsys.readouterr().err
    (record,) = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert record["status"] == "ok", record["error"]
    assert record["config"]["engine"] == "compiled"
    assert record["metrics"]["decode_tokens_per_s"]["value"] > 0 and record["metrics"]["setup_seconds"]["value"] > 0
    note = record["metrics"].get("engine_note", {}).get("value") or ""
    assert "fell back to eager" not in note, note  # the decode step itself compiled


@pytest.mark.parametrize("tied", [False, True])
def test_a_quantized_lm_head_is_predicted_and_a_tied_one_keeps_bf16_embeddings(tied):
    import dataclasses

    cfg = get_preset("nvila-tiny")
    cfg = dataclasses.replace(cfg, llm=dataclasses.replace(cfg.llm, tie_word_embeddings=tied))
    model = build_model(cfg, torch.bfloat16)
    assert (model.llm.lm_head.weight is model.llm.model.embed_tokens.weight) == tied
    reference = _logits(model, cfg)
    plan = QuantPlan(llm="w4a16", group_size=32, lm_head=True)
    quantize_model(model, plan)
    assert type(model.llm.lm_head.weight).__module__.startswith("torchao")
    assert type(model.llm.model.embed_tokens.weight) is torch.nn.Parameter  # the lookup table stays bf16
    assert measured_weight_bytes(model) == predicted_weight_bytes(cfg, plan, "cpu")
    head_only = predicted_weight_bytes(cfg, QuantPlan(llm="w4a16", group_size=32), "cpu")["llm"]
    h, v = cfg.llm.hidden_size, cfg.llm.vocab_size
    assert measured_weight_bytes(model)["llm"] - head_only == linear_bytes(h, v, "w4a16", 32) - (
        0 if tied else 2 * h * v
    )
    error = ((_logits(model, cfg) - reference).norm() / reference.norm()).item()
    assert 0 < error < 0.2, error
    with pytest.raises(ValueError, match="a quantized LM head needs a quantized LLM format"):
        QuantPlan(lm_head=True)


def test_the_decode_step_reads_a_quantized_lm_head_in_its_format():
    from nvila_bench.model.calibrate import llm_groups

    from nvila_bench.core.analysis import costmodel

    cfg = get_preset("nvila-8b")
    plain = costmodel.weights_read(cfg, QuantPlan(llm="w4a16", int4_kernel="gemlite"))["llm"]
    head = costmodel.weights_read(cfg, QuantPlan(llm="w4a16", int4_kernel="gemlite", lm_head=True))["llm"]
    h, v = cfg.llm.hidden_size, cfg.llm.vocab_size
    assert plain - head == 2 * h * v - linear_bytes(h, v, "w4a16", 128, "gemlite")  # 1.09 GB -> 0.31 GB per step
    assert 1.2 < plain / head < 1.25
    llm = build_model(get_preset("nvila-tiny"), torch.bfloat16).llm
    groups = llm_groups(llm, lm_head=True)
    assert groups[-1].source is llm.model.norm and groups[-1].linears == [llm.lm_head]
    assert len(groups) == len(llm_groups(llm)) + 1


def test_the_deployment_suite_quantizes_the_lm_head_when_asked(tmp_path, capsys):
    import json

    from nvila_bench.cli import main

    code = main(
        [
            *TINY_LADDER,
            "--rung",
            "bf16",
            "--rung",
            "w4a16-llm",
            "--lm-head",
            "quantized",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0, capsys.readouterr().err
    bf16, w4 = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert "lm_head" not in bf16["config"]["extra"] and w4["config"]["extra"]["lm_head"] == "quantized"

    def value(r, k):
        return r["metrics"][k]["value"]

    assert value(w4, "llm_weights_bytes") == value(w4, "llm_weights_bytes_predicted") < value(bf16, "llm_weights_bytes")
    assert 0 <= value(w4, "top1_agreement") < 1
