"""Training suite: real optimizer steps of NVILA's training stages on synthetic batches with the real token
geometry (docs/reference.md#training-and-fine-tuning-recipes).

One iteration = one optimizer step: `grad_accum` micro-batches of `batch_size` samples (each with its own
synthetic images / frames), forward, backward, then AdamW (fused on CUDA). Stages: "projector" (stage 1,
projector only), "projector-llm" (stage 3), "full" (stages 4-5, everything learns). Options in the point's
`extra`: stage, grad_accum, grad_ckpt, fp8 (torchao float8, Ada / Hopper only), compile (torch.compile of
the LLM and ViT layers), autocast (bf16 autocast over fp32 weights instead of bf16 weights), lr.

A peer VLM (qwen2-vl-7b, qwen2.5-vl-7b, llava-onevision-7b, family "peer") trains through transformers' own forward
with labels (model/peer_training.py), the same stages and metrics; fp8 and compile are NVILA's only (refused).
"""

from __future__ import annotations

import torch
from nvila_bench.model import build_model, count_visual_tokens, get_preset
from nvila_bench.model.peer_model import torchvision_missing
from nvila_bench.model.presets import UnknownPresetError, is_peer
from nvila_bench.model.stages import BACKWARD, LLM_FORWARD, OPTIMIZER, PROJECTOR, VISION
from nvila_bench.model.training import (
    STAGES,
    Recipe,
    apply_recipe,
    build_optimizer,
    enable_fp8,
    enable_gradient_checkpointing,
    flop_modes,
    synthetic_batch,
    train_step,
    trainable_counts,
    unavailable,
)
from nvila_bench.model.vision import _body

from nvila_bench.core.analysis import costmodel
from nvila_bench.core.measuring.memory import memory_metrics, reset_peak_memory
from nvila_bench.core.measuring.point import BenchPoint
from nvila_bench.core.measuring.results import Metric, PointSkipped
from nvila_bench.core.measuring.session import Session
from nvila_bench.core.measuring.timing import StageClock, measure

from .registry import Option, Suite, SuiteError, check_training, sweep_points, with_extra

DEFAULTS = {
    "stage": "full",
    "grad_accum": 1,
    "grad_ckpt": False,
    "fp8": False,
    "compile": False,
    "autocast": False,
    "lr": 2e-5,
}


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
    model = build_model(
        get_preset(point.preset), weights_dtype, point.device, point.attn_implementation, seed=seed
    ).train()
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


def measure_point(point: BenchPoint, session: Session) -> dict[str, Metric]:
    s = settings(point)
    reason = unavailable(Recipe.parse(s["stage"]), point.device, bool(s["fp8"]))
    if is_peer(get_preset(point.preset)):  # a peer's processors: video needs torchvision
        reason = reason or torchvision_missing("cpu", bool(point.video_frames))
    if reason:  # e.g. --fp8 on CPU: a skipped record with the reason, not an error
        raise PointSkipped(reason)
    session.release()  # the latency suites' cached model is not needed here
    device = torch.device(point.device)
    model, recipe, optimizer, autocast = prepare(point, s)
    accum = int(s["grad_accum"])
    step = [0]
    losses: list[float] = []

    def iteration(clock: StageClock) -> None:
        batches = [synthetic_batch(point, step[0] * accum + k) for k in range(accum)]  # data prep: before the clock
        clock.start()
        losses.append(train_step(model, batches, optimizer, clock.section, autocast))
        step[0] += 1

    reset_peak_memory(device)
    samples = measure(iteration, device, session.measure)
    cfg = get_preset(point.preset)
    sequence = sequence_tokens(point)
    rows = point.batch_size * accum
    # The loss forward of an iteration: its media stages and the LLM, each summed over the micro-batches.
    laps = {n: [sum(laps) for laps in _per_iteration(samples[n], accum)] for n in (VISION, PROJECTOR, LLM_FORWARD)}
    forward = [sum(stages) for stages in zip(*laps.values())]
    counts = trainable_counts(model)
    metrics = {
        "step_time": Metric.timing(samples["total"]),
        **{name: Metric.timing(times) for name, times in laps.items()},
        "forward": Metric.timing(forward),
        "backward": Metric.timing([sum(b) for b in _per_iteration(samples[BACKWARD], accum)]),
        "optimizer": Metric.timing(samples[OPTIMIZER]),
        "samples_per_s": Metric.rate(samples["total"], rows, "samples/s"),
        "tokens_per_s": Metric.rate(samples["total"], rows * sequence, "tokens/s"),
        "sequence_tokens": Metric.measured(sequence, "tokens"),
        "trainable_params": Metric.measured(counts["total"], "params"),
        "loss_first": Metric.measured(losses[0], "nats"),
        "loss_last": Metric.measured(losses[-1], "nats"),
        "steps": Metric.measured(len(losses), "count"),
    }
    metrics |= memory_metrics(device)
    flops = costmodel.train_step_flops(
        cfg,
        flop_modes(recipe),
        point.images,
        point.video_frames,
        point.temporal_pool,
        point.prompt_tokens,
        rows,
        s["grad_ckpt"],
    )
    metrics["step_flops"] = Metric.analytic(flops, "FLOP")
    peaks = session.peaks_for("bfloat16" if s["autocast"] else point.dtype)
    if peaks is not None:
        # Model FLOPs utilisation: the cost model's FLOPs (recomputation excluded, as PaLM defines MFU).
        useful = costmodel.train_step_flops(
            cfg,
            flop_modes(recipe),
            point.images,
            point.video_frames,
            point.temporal_pool,
            point.prompt_tokens,
            rows,
            False,
        )
        metrics["mfu"] = Metric.utilisation(costmodel.mfu(useful, metrics["step_time"].value, peaks.flops), "step_time")
        metrics["peaks_source"] = Metric.analytic(peaks.source, "text")
    return metrics


def sequence_tokens(point: BenchPoint) -> int:
    """Positions of one sample: its media tokens (separators included) and its text."""
    count = count_visual_tokens(get_preset(point.preset), point.images, point.video_frames, point.temporal_pool)
    return count.total_tokens + point.prompt_tokens


def _per_iteration(samples: list[float], per: int) -> list[list[float]]:
    """A stage lapped `per` times an iteration (once per micro-batch): its samples grouped by iteration."""
    return [samples[i : i + per] for i in range(0, len(samples), per)]


def expand(axes: dict[str, list], options: dict) -> list[BenchPoint]:
    """The sweep's points times each --stage, with the suite's settings in `extra`."""
    for stage in options["stage"]:
        if stage not in STAGES:
            raise SuiteError(f"unknown stage {stage!r}; known: {', '.join(STAGES)}")
    fixed = {k: options[k] for k in ("grad_accum", "grad_ckpt", "fp8", "compile", "autocast", "lr")}
    if fixed["grad_accum"] < 1:
        raise SuiteError(f"--grad-accum must be >= 1, got {fixed['grad_accum']}")
    check_training(axes, fixed["lr"])
    check_peers(axes, fixed)
    return [
        with_extra(p, stage=stage, **fixed) for p in sweep_points(axes, {}) for stage in options["stage"] or ("full",)
    ]


def check_peers(axes: dict[str, list], fixed: dict) -> None:
    """What a peer VLM's step cannot take, refused before measuring: NVILA's FP8 and per-layer compile."""
    for name in axes.get("preset", []):
        try:
            cfg = get_preset(name)
        except UnknownPresetError:
            continue  # the point refuses it with the list of known names
        if not is_peer(cfg):
            continue
        for option, why in (("fp8", "torchao float8 of NVILA's LLM"), ("compile", "NVILA's per-layer torch.compile")):
            if fixed[option]:
                raise SuiteError(f"--{option} ({why}) covers NVILA and VILA1.5 presets only; {name} is a peer VLM")
        if axes.get("images") and axes.get("video_frames"):
            raise SuiteError(f"{name}: a peer VLM's training sample holds images or a video, not both")


SUITE = Suite(
    "train",
    "Optimizer steps of a training stage on synthetic batches, NVILA or a peer VLM (torchrun: FSDP2, NVILA only).",
    measure_point,
    view="training",  # its report section: reports/views/training.py
    options=(
        Option(
            "stage",
            "What learns: projector (NVILA stage 1), projector-llm (3), full (4-5) [full].",
            tuple(STAGES),
            multiple=True,
        ),
        Option("grad_accum", "Micro-batches per step.", int, 1),
        Option("grad_ckpt", "Gradient checkpointing of every ViT and LLM layer.", bool, False),
        Option("fp8", "torchao float8 training of the LLM (Ada / Hopper GPUs; NVILA only).", bool, False),
        Option("compile", "torch.compile every ViT and LLM layer (NVILA only).", bool, False),
        Option("autocast", "fp32 weights under bf16 autocast (default: weights in --dtype).", bool, False),
        Option("lr", "Learning rate.", float, 2e-5),
    ),
    expand=expand,
)
