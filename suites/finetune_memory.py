"""Fine-tuning memory suite: memory and speed of each tuning recipe, measured and predicted (§7, paper
Table 5 of v1 / Table 6 of v3).

Recipes are vision tower x LLM: {frozen, ln, lora, full} x {lora, qlora, full}; the projector always
learns. "nvila" is the paper's recipe (ViT LayerNorms + LLM LoRA, ViT LR 5x lower).

The first step is the measured one: the bytes autograd saves during its forward pass (activations), the
gradients after its backward, the AdamW state after its update, and the parameters, each counted tensor by
tensor, on any device; on a GPU also the allocator's peak. `nvila_bench.core.memory_model` predicts each part
from the config alone; both are recorded. Then steps are timed for iterations/s.
"""

from __future__ import annotations

import torch

from nvila_bench.core.memory_model import estimate, geometry
from nvila_bench.model import build_model, get_preset
from nvila_bench.core.point import BenchPoint
from nvila_bench.core.results import metric
from nvila_bench.core.stats import bounded_samples, summarize
from nvila_bench.core.timing import MeasureConfig, StageClock, measure, synchronize
from nvila_bench.model.training import (
    LoraSettings, Recipe, SavedTensors, apply_recipe, build_optimizer, gradient_bytes, loss_of, optimizer_bytes,
    synthetic_batch, train_step, trainable_counts, weight_bytes,
)  # fmt: skip

from .common import Session, reset_peak_memory, timing_metric

DEFAULTS = {"recipe": "nvila", "lora_rank": 64, "lora_alpha": 16, "lora_dropout": 0.05, "lr": 2e-5}
# v1 Table 5 / v3 Table 6: one A100 80 GB, batch 1, 448 px, context 300, no gradient checkpointing.
PAPER_RECIPES = ("lora-lora", "nvila", "full-lora", "lora-qlora", "ln-qlora", "full-full")
PAPER_CONTEXT = 300


def recipe_of(point: BenchPoint) -> Recipe:
    s = DEFAULTS | point.extra
    unknown = sorted(set(s) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown finetune-memory setting(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
    lora = LoraSettings(int(s["lora_rank"]), s["lora_alpha"], float(s["lora_dropout"]))
    return Recipe.parse(s["recipe"], lora)


def run(point: BenchPoint, mcfg: MeasureConfig, session: Session) -> dict:
    recipe = recipe_of(point)
    session.release()
    device = torch.device(point.device)
    cfg = get_preset(point.preset)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    reset_peak_memory(device)
    model = build_model(cfg, point.torch_dtype, point.device, point.attn_implementation).train()
    apply_recipe(model, recipe)
    optimizer = build_optimizer(model, recipe, lr=float((DEFAULTS | point.extra)["lr"]))
    counted = {"weights": weight_bytes(model)}

    # The measured step, part by part.
    batch = synthetic_batch(point)
    with SavedTensors(model) as saved:
        loss = loss_of(model, batch)
    loss.backward()
    counted["activations"] = saved.bytes
    counted["gradients"] = gradient_bytes(model)
    optimizer.step()
    counted["optimizer"] = optimizer_bytes(optimizer)
    optimizer.zero_grad(set_to_none=True)
    first_loss = float(loss.detach())
    del loss
    synchronize(device)
    peak = {}
    if device.type == "cuda":
        peak = {"peak_memory_allocated": metric(torch.cuda.max_memory_allocated(device), "bytes"),
                "peak_memory_reserved": metric(torch.cuda.max_memory_reserved(device), "bytes")}  # fmt: skip

    step = [1]

    def iteration(clock: StageClock) -> None:
        b = synthetic_batch(point, step[0])
        clock.start()
        train_step(model, [b], optimizer, clock)
        step[0] += 1

    samples = measure(iteration, device, mcfg)
    rates = [1 / t for t in samples["total"]]
    rate = summarize(rates, "it/s")
    g = geometry(cfg, point.images, point.video_frames, point.temporal_pool, point.prompt_tokens, point.batch_size)
    predicted = estimate(cfg, recipe, g, point.dtype)
    counts = trainable_counts(model)
    metrics = {
        "step_time": timing_metric(samples["total"]),
        "iterations_per_s": metric(rate.median, "it/s", summary=rate.to_dict(), samples=bounded_samples(rates)),
        "trainable_params": metric(counts["total"], "params"),
        "trainable_params_predicted": metric(predicted.trainable, "params", "analytic"),
        "sequence_tokens": metric(g.sequence, "tokens"),
        "loss_first": metric(first_loss, "nats"),
    }
    for part, value in counted.items():
        metrics[f"{part}_bytes"] = metric(value, "bytes")
        metrics[f"{part}_bytes_predicted"] = metric(getattr(predicted, part), "bytes", "analytic")
    metrics["memory_counted"] = metric(sum(counted.values()), "bytes")  # the four parts, counted
    metrics["peak_memory_predicted"] = metric(predicted.total, "bytes", "analytic")
    return metrics | peak
