"""Training suite: real optimizer steps of NVILA's training stages on synthetic batches with the real token
geometry (§7).

One iteration = one optimizer step: `grad_accum` micro-batches of `batch_size` samples (each with its own
synthetic images / frames), forward, backward, then AdamW (fused on CUDA). Stages: "projector" (stage 1,
projector only), "projector-llm" (stage 3), "full" (stages 4-5, everything learns). Options in the point's
`extra`: stage, grad_accum, grad_ckpt, fp8 (torchao float8, Ada / Hopper only), compile (torch.compile of
the LLM and ViT layers), autocast (bf16 autocast over fp32 weights instead of bf16 weights), lr.
"""

from __future__ import annotations

import torch

from nvila_bench.core import costmodel
from nvila_bench.core.memory_model import geometry
from nvila_bench.model import build_model, get_preset
from nvila_bench.model.vision import _body
from nvila_bench.core.point import BenchPoint
from nvila_bench.core.results import metric
from nvila_bench.core.stats import bounded_samples, summarize
from nvila_bench.core.timing import MeasureConfig, StageClock, measure
from nvila_bench.model.training import (
    Recipe, apply_recipe, build_optimizer, enable_fp8, enable_gradient_checkpointing, flop_modes, synthetic_batch,
    train_step, trainable_counts,
)  # fmt: skip

from .common import Session, memory_metrics, reset_peak_memory, timing_metric

DEFAULTS = {"stage": "full", "grad_accum": 1, "grad_ckpt": False, "fp8": False, "compile": False, "autocast": False, "lr": 2e-5}


def settings(point: BenchPoint) -> dict:
    s = DEFAULTS | point.extra
    unknown = sorted(set(s) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown train setting(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
    if int(s["grad_accum"]) < 1:
        raise ValueError(f"grad_accum must be >= 1, got {s['grad_accum']}")
    Recipe.parse(s["stage"])
    return s


def prepare(point: BenchPoint, s: dict, seed: int = 0):
    """(model, recipe, optimizer, autocast dtype) for one point: a fresh model every point (training
    changes the weights)."""
    recipe = Recipe.parse(s["stage"])
    weights_dtype = torch.float32 if s["autocast"] else point.torch_dtype
    model = build_model(get_preset(point.preset), weights_dtype, point.device, point.attn_implementation, seed=seed).train()
    apply_recipe(model, recipe)
    if s["grad_ckpt"]:
        enable_gradient_checkpointing(model)
    if s["fp8"]:
        enable_fp8(model)
    if s["compile"]:
        for layer in [*model.llm.model.layers, *_body(model.vision_tower).encoder.layers]:
            layer.compile()  # per layer: one graph reused by every layer, short compile times
    optimizer = build_optimizer(model, recipe, lr=float(s["lr"]))
    return model, recipe, optimizer, (torch.bfloat16 if s["autocast"] else None)


def run(point: BenchPoint, mcfg: MeasureConfig, session: Session) -> dict:
    s = settings(point)
    session.release()  # the latency suites' cached model is not needed here
    device = torch.device(point.device)
    model, recipe, optimizer, autocast = prepare(point, s)
    accum = int(s["grad_accum"])
    step = [0]
    losses: list[float] = []

    def iteration(clock: StageClock) -> None:
        batches = [synthetic_batch(point, step[0] * accum + k) for k in range(accum)]  # data prep: before the clock
        clock.start()
        losses.append(train_step(model, batches, optimizer, clock, autocast))
        step[0] += 1

    reset_peak_memory(device)
    samples = measure(iteration, device, mcfg)
    cfg = get_preset(point.preset)
    g = geometry(cfg, point.images, point.video_frames, point.temporal_pool, point.prompt_tokens, point.batch_size)
    rows = point.batch_size * accum
    rates = [rows / t for t in samples["total"]]
    rate = summarize(rates, "samples/s")
    tokens = [rows * g.sequence / t for t in samples["total"]]
    token_rate = summarize(tokens, "tokens/s")
    counts = trainable_counts(model)
    metrics = {
        "step_time": timing_metric(samples["total"]),
        "forward": timing_metric(samples["forward"]),
        "backward": timing_metric(samples["backward"]),
        "optimizer": timing_metric(samples["optimizer"]),
        "samples_per_s": metric(rate.median, "samples/s", summary=rate.to_dict(), samples=bounded_samples(rates)),
        "tokens_per_s": metric(token_rate.median, "tokens/s", summary=token_rate.to_dict(), samples=bounded_samples(tokens)),
        "sequence_tokens": metric(g.sequence, "tokens"),
        "trainable_params": metric(counts["total"], "params"),
        "loss_first": metric(losses[0], "nats"),
        "loss_last": metric(losses[-1], "nats"),
        "steps": metric(len(losses), "count"),
    }
    metrics |= memory_metrics(device)
    flops = costmodel.train_step_flops(cfg, flop_modes(recipe), point.images, point.video_frames, point.temporal_pool,
                                       point.prompt_tokens, rows, s["grad_ckpt"])  # fmt: skip
    metrics["step_flops"] = metric(flops, "FLOP", "analytic")
    peaks = session.peaks_for("bfloat16" if s["autocast"] else point.dtype)
    if peaks is not None:
        # Model FLOPs utilisation: the cost model's FLOPs (recomputation excluded, as PaLM defines MFU).
        useful = costmodel.train_step_flops(cfg, flop_modes(recipe), point.images, point.video_frames, point.temporal_pool,
                                            point.prompt_tokens, rows, False)  # fmt: skip
        metrics["mfu"] = metric(costmodel.mfu(useful, metrics["step_time"]["value"], peaks.flops), "fraction") | {"of": "step_time"}
        metrics["peaks_source"] = metric(peaks.source, "text", "analytic")
    return metrics
