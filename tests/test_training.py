"""Training and fine-tuning suites: which parameters learn, the analytic memory model against byte counts,
loss going down, FSDP2 data parallel agreeing with one process, the CLI and its errors."""

import json
import os
import subprocess
import sys

import pytest
import torch
from nvila_bench.model import build_model, get_preset
from nvila_bench.model.training import (
    Recipe,
    SavedTensors,
    apply_recipe,
    build_optimizer,
    gradient_bytes,
    loss_of,
    optimizer_bytes,
    synthetic_batch,
    train_step,
    trainable_counts,
    weight_bytes,
)
from nvila_bench.suites.train import prepare, settings

from nvila_bench.cli import main
from nvila_bench.core.analysis import costmodel
from nvila_bench.core.analysis import memory_model as mm
from nvila_bench.core.measuring.point import BenchPoint

CPU_RECIPES = [
    "projector",
    "projector-llm",
    "full",
    "nvila",
    "full-full",
    "frozen-lora",
    "lora-lora",
    "full-lora",
    "lora-full",
    "ln-full",
]


def model_with(preset: str, recipe: Recipe, device="cpu"):
    return apply_recipe(build_model(get_preset(preset), device=device).train(), recipe)


@pytest.mark.parametrize("name", CPU_RECIPES)
def test_trainable_parameters_match_the_closed_form(name):
    recipe = Recipe.parse(name)
    model = model_with("nvila-tiny", recipe)
    predicted = mm.trainable_parameters(get_preset("nvila-tiny"), recipe)
    counts = trainable_counts(model)
    assert {k: counts[k] for k in predicted} == {k: v[0] for k, v in predicted.items()}
    tensors = sum(1 for p in model.parameters() if p.requires_grad)
    assert tensors == sum(t for _, t in predicted.values())


def test_nvila_recipe_on_the_real_8b_geometry():
    """NVILA-8B, built on the meta device: ViT LayerNorms of the 26 layers that run, the whole projector,
    rank-64 LoRA on every Qwen2 linear layer (hand-computed below)."""
    model = model_with("nvila-8b", Recipe.parse("nvila"), device="meta")
    lora_per_layer = 64 * ((3584 + 3584) * 2 + (3584 + 512) * 2 + (3584 + 18944) * 3)
    assert trainable_counts(model) == {
        "vision": 26 * 2 * 2 * 1152,
        "projector": 62_425_088,
        "llm": 28 * lora_per_layer,
        "total": 26 * 2 * 2 * 1152 + 62_425_088 + 28 * lora_per_layer,
    }
    assert (
        trainable_counts(model)["llm"]
        == mm.trainable_parameters(get_preset("nvila-8b"), Recipe.parse("nvila"))["llm"][0]
    )


def test_unknown_recipe_lists_the_grid():
    with pytest.raises(ValueError, match="unknown recipe 'ln-bogus'.*ln-lora"):
        Recipe.parse("ln-bogus")


@pytest.mark.parametrize(
    "preset,media",
    [
        ("nvila-tiny", {"images": ((448, 448),)}),
        ("nvila-video-tiny", {"video_frames": 8}),
        ("vila-tiny", {"images": ((640, 480),)}),
    ],
)
@pytest.mark.parametrize("name", ["projector", "full-full", "nvila", "lora-lora", "full-lora"])
def test_memory_model_agrees_with_byte_counts(preset, media, name):
    """Parameters, gradients and AdamW state exactly; activations (bytes autograd saves) within 20%."""
    cfg, recipe = get_preset(preset), Recipe.parse(name)
    model = model_with(preset, recipe)
    point = BenchPoint(preset=preset, batch_size=2, **media)
    with SavedTensors(model) as saved:
        loss = loss_of(model, synthetic_batch(point))
    optimizer = build_optimizer(model, recipe)
    loss.backward()
    grads = gradient_bytes(model)
    optimizer.step()
    g = mm.geometry(cfg, point.images, point.video_frames, True, point.prompt_tokens, batch=2)
    predicted = mm.estimate(cfg, recipe, g, "float32")
    assert (weight_bytes(model), grads, optimizer_bytes(optimizer)) == (
        predicted.weights,
        predicted.gradients,
        predicted.optimizer,
    )
    assert saved.bytes == pytest.approx(predicted.activations, rel=0.20)


def test_what_learns_decides_what_is_kept():
    """Nothing is saved below the lowest learning parameter: the projector stage keeps no ViT activations,
    LayerNorm-only tuning some, full tuning the most. The NVILA recipe's saving is in gradients and AdamW
    state; LoRA with dropout even keeps more LLM activations than full tuning (a mask and a copy per adapter)."""
    cfg = get_preset("nvila-8b")
    g = mm.geometry(cfg, [(448, 448)], prompt_tokens=44)
    vit = {n: mm.vision_activations(cfg, Recipe.parse(n), g, "bfloat16") for n in ("projector", "nvila", "full-full")}
    assert vit["projector"] == 0 < vit["nvila"] < vit["full-full"]
    nvila, full = (mm.estimate(cfg, Recipe.parse(n), g) for n in ("nvila", "full-full"))
    assert nvila.gradients + nvila.optimizer < (full.gradients + full.optimizer) / 20
    assert mm.llm_activations(cfg, Recipe.parse("nvila"), g, "bfloat16") > mm.llm_activations(
        cfg, Recipe.parse("full-full"), g, "bfloat16"
    )


def test_loss_decreases_over_a_few_steps():
    point = BenchPoint(preset="nvila-tiny", images=((448, 448),), prompt_tokens=32, extra={"stage": "full", "lr": 1e-3})
    model, _, optimizer, _ = prepare(point, settings(point))
    batch = synthetic_batch(point)
    losses = [train_step(model, [batch], optimizer) for _ in range(6)]
    assert losses[-1] < losses[0] - 0.05, losses


def test_gradient_checkpointing_keeps_the_loss():
    """Recomputation changes memory, not the numbers."""
    base = BenchPoint(preset="nvila-tiny", images=((448, 448),), prompt_tokens=16, extra={"stage": "full", "lr": 1e-3})
    ckpt = BenchPoint(
        preset="nvila-tiny",
        images=((448, 448),),
        prompt_tokens=16,
        extra={"stage": "full", "lr": 1e-3, "grad_ckpt": True},
    )
    runs = []
    for point in (base, ckpt):
        model, _, optimizer, _ = prepare(point, settings(point))
        runs.append([train_step(model, [synthetic_batch(point, s)], optimizer) for s in range(2)])
    assert runs[0] == pytest.approx(runs[1], rel=1e-5)


def test_train_flops_count_what_backpropagates():
    cfg = get_preset("nvila-8b")
    fwd = costmodel.train_step_flops(cfg, {"vision": "none", "projector": "none", "llm": "none"}, [(448, 448)])
    full = costmodel.train_step_flops(
        cfg, {"vision": "weights", "projector": "weights", "llm": "weights"}, [(448, 448)]
    )
    assert full == 3 * fwd
    assert (
        costmodel.train_step_flops(
            cfg, {"vision": "weights", "projector": "weights", "llm": "weights"}, [(448, 448)], batch=4
        )
        == 4 * full
    )


def test_fsdp2_two_gloo_ranks_match_one_process(tmp_path):
    """torchrun, 2 processes on gloo, batch 1 each = one process of batch 2: the same losses step by step."""
    out = tmp_path / "dist"
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            "29533",
            "-m",
            "nvila_bench",
            "run",
            "train",
            "--preset",
            "nvila-tiny",
            "--stage",
            "full",
            "--batch-size",
            "1",
            "--lr",
            "1e-3",
            "--prompt-tokens",
            "16",
            "--warmup",
            "0",
            "--repeats",
            "3",
            "--quiet",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((out / "results.jsonl").read_text().splitlines()[-1])
    assert record["config"]["extra"]["world_size"] == 2 and record["metrics"]["world_size"]["value"] == 2
    assert record["config"]["extra"]["backend"] == "gloo" and record["config"]["device"] == "cpu"
    assert set(record["metrics"]) == {  # the launch's record: the ranks' figures, gathered
        *("step_time", "samples_per_s", "per_gpu_samples_per_s", "tokens_per_s", "rank_step_time_median"),
        *("world_size", "losses", "loss_first", "loss_last", "step_flops"),
    }
    assert len(record["metrics"]["rank_step_time_median"]["value"]) == 2
    point = BenchPoint(
        preset="nvila-tiny", images=((448, 448),), prompt_tokens=16, batch_size=2, extra={"stage": "full", "lr": 1e-3}
    )
    model, _, optimizer, _ = prepare(point, settings(point))
    single = [train_step(model, [synthetic_batch(point, step)], optimizer) for step in range(3)]
    assert record["metrics"]["losses"]["value"] == pytest.approx(single, rel=1e-4)
    assert single[2] != pytest.approx(single[0], rel=1e-4)  # the steps did change the weights


# ---- CLI --------------------------------------------------------------------------------------------------
FAST = ["--warmup", "0", "--repeats", "1", "--min-seconds", "0", "--quiet"]


def records(path):
    return [json.loads(line) for line in (path / "results.jsonl").read_text().splitlines()]


def test_cli_finetune_memory_records_measured_and_predicted(tmp_path):
    code = main(
        [
            "run",
            "finetune-memory",
            "--preset",
            "nvila-tiny",
            "--recipe",
            "nvila",
            "--recipe",
            "full-full",
            "--recipe",
            "frozen-qlora",
            "--prompt-tokens",
            "16",
            *FAST,
            "--out",
            str(tmp_path),
        ]
    )
    assert code in (0, None)
    rows = records(tmp_path)
    assert [r["config"]["extra"]["recipe"] for r in rows] == ["nvila", "full-full", "frozen-qlora"]
    if rows[-1]["status"] == "skipped":  # QLoRA on CPU (or without bitsandbytes): a skipped record with the reason
        assert rows[-1]["error"].startswith(
            "QLoRA needs a CUDA GPU" if not torch.cuda.is_available() else "QLoRA needs"
        )
        rows = rows[:-1]
    for r in rows:
        m = r["metrics"]
        assert r["status"] == "ok"
        for part in ("weights", "gradients", "optimizer"):
            assert m[f"{part}_bytes"]["value"] == m[f"{part}_bytes_predicted"]["value"]
            assert m[f"{part}_bytes_predicted"]["provenance"] == "analytic"
        assert m["activations_bytes"]["value"] == pytest.approx(m["activations_bytes_predicted"]["value"], rel=0.2)
        assert m["trainable_params"]["value"] == m["trainable_params_predicted"]["value"]
        assert m["iterations_per_s"]["value"] > 0
    ft = {r["config"]["extra"]["recipe"]: r["metrics"] for r in rows}
    assert ft["nvila"]["trainable_params"]["value"] < ft["full-full"]["trainable_params"]["value"]


def test_cli_train_records_throughput(tmp_path):
    code = main(
        [
            "run",
            "train",
            "--preset",
            "vila-tiny",
            "--stage",
            "projector",
            "--batch-size",
            "2",
            "--grad-accum",
            "2",
            "--prompt-tokens",
            "16",
            *FAST,
            "--out",
            str(tmp_path),
        ]
    )
    assert code in (0, None)
    (r,) = records(tmp_path)
    m = r["metrics"]
    assert r["status"] == "ok" and r["config"]["extra"]["stage"] == "projector"
    assert m["samples_per_s"]["value"] == pytest.approx(4 / m["step_time"]["value"], rel=1e-6)
    assert m["tokens_per_s"]["value"] == pytest.approx(
        4 * m["sequence_tokens"]["value"] / m["step_time"]["value"], rel=1e-6
    )
    assert m["step_flops"]["provenance"] == "analytic" and m["trainable_params"]["value"] > 0


@pytest.mark.parametrize(
    "args,message",
    [
        (["run", "finetune-memory", "--preset", "nvila-tiny", "--recipe", "ln-bogus"], "unknown recipe 'ln-bogus'"),
        # QLoRA / FP8 on CPU are skipped records, not refusals: tests/test_inputs.py
        # Each suite takes only its own options (the registry's): another suite's option is refused by name.
        (["run", "train", "--preset", "nvila-tiny", "--recipe", "nvila"], "No such option '--recipe'"),
        (["run", "finetune-memory", "--preset", "nvila-tiny", "--grad-ckpt"], "No such option '--grad-ckpt'"),
        (["run", "train", "--preset", "nvila-tiny", "--stage", "everything"], "Invalid value for '--stage'"),
        (["estimate", "training-cost", "--samples", "sft"], "expected STAGE=N"),
        (["estimate", "training-cost", "--mfu", "2"], "--mfu must be in (0, 1]"),
        (["estimate", "training-cost", "--hardware", "abacus"], "abacus"),
    ],
)
def test_bad_training_input_exits_2(args, message, tmp_path, capsys):
    assert main(args + ["--out", str(tmp_path)] if args[0] == "run" else args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("nvila-bench: error:") and message in err[-1]


def test_training_cost_estimate_decomposes_the_ratio(tmp_path, capsys):
    assert main(["estimate", "training-cost", "--image", "448x448", "--json", "--out", str(tmp_path)]) in (0, None)
    data = json.loads(capsys.readouterr().out)
    f = data["factors"]
    assert data["cost_ratio"] == pytest.approx(f["tokens"] * f["fp8"] * f["pruning"])
    assert f["pruning"] == 2.0 and data["fp8_source"].startswith("paper")
    (r,) = records(tmp_path)
    assert r["suite"] == "training-cost" and r["provenance"] == "analytic"
    assert r["metrics"]["cost_ratio"]["value"] == pytest.approx(data["cost_ratio"])
