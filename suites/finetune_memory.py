"""Fine-tuning memory suite: memory and speed of each tuning recipe, measured and predicted
(docs/reference.md#training-and-fine-tuning-recipes, paper
Table 5 of v1 / Table 6 of v3).

Recipes are vision tower x LLM: {frozen, ln, lora, full} x {lora, qlora, full}; the projector always
learns. "nvila" is the paper's recipe (ViT LayerNorms + LLM LoRA, ViT LR 5x lower).

The first step is the measured one: the bytes autograd saves during its forward pass (activations), the
gradients after its backward, the AdamW state after its update, and the parameters, each counted tensor by
tensor, on any device; on a GPU also the allocator's peak. `nvila_bench.core.analysis.memory_model` predicts each part
from the config alone; both are recorded. Then steps are timed for iterations/s.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from nvila_bench.model import count_visual_tokens, get_preset
from nvila_bench.model.recipes import LoraSettings, Recipe

from nvila_bench.core.analysis.memory_model import estimate, geometry
from nvila_bench.core.measuring.results import Metric, PointSkipped
from nvila_bench.core.measuring.specs import MetricSpec

from .common import MEMORY_SPECS, TOKEN_SPECS
from .registry import Option, Suite, SuiteError, check_training, nvila_presets_only, sweep_points, with_extra

if TYPE_CHECKING:
    from nvila_bench.core.measuring.point import BenchPoint
    from nvila_bench.core.measuring.session import Session

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


def measure_point(point: BenchPoint, session: Session) -> dict[str, Metric]:
    import torch
    from nvila_bench.model import build_model
    from nvila_bench.model.training import (
        SavedTensors,
        apply_recipe,
        build_optimizer,
        gradient_bytes,
        loss_of,
        optimizer_bytes,
        synthetic_batch,
        train_step,
        trainable_counts,
        unavailable,
        weight_bytes,
    )

    from nvila_bench.core.measuring.memory import memory_metrics, reset_peak_memory
    from nvila_bench.core.measuring.timing import measure, synchronize

    recipe = recipe_of(point)
    reason = unavailable(recipe, point.device)
    if reason:  # e.g. QLoRA on CPU: a skipped record with the reason, not an error
        raise PointSkipped(reason)
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
    peak = memory_metrics(device) if device.type == "cuda" else {}  # the allocator's peak of the measured step

    step = [1]

    def iteration(clock) -> None:
        b = synthetic_batch(point, step[0])
        clock.start()
        train_step(model, [b], optimizer, clock.section)
        step[0] += 1

    samples = measure(iteration, device, session.measure)
    g = geometry(cfg, point.images, point.video_frames, point.temporal_pool, point.prompt_tokens, point.batch_size)
    predicted = estimate(cfg, recipe, g, point.dtype)
    counts = trainable_counts(model)
    metrics = {
        "step_time": Metric.timing(samples["total"]),
        "iterations_per_s": Metric.rate(samples["total"], 1, "it/s"),
        "trainable_params": Metric.measured(counts["total"], "params"),
        "trainable_params_predicted": Metric.analytic(predicted.trainable, "params"),
        "sequence_tokens": Metric.measured(g.sequence, "tokens"),
        "loss_first": Metric.measured(first_loss, "nats"),
    }
    for part, value in counted.items():
        metrics[f"{part}_bytes"] = Metric.measured(value, "bytes", "lower")
        metrics[f"{part}_bytes_predicted"] = Metric.analytic(getattr(predicted, part), "bytes")
    metrics["memory_counted"] = Metric.measured(sum(counted.values()), "bytes", "lower")  # the four parts, counted
    metrics["peak_memory_predicted"] = Metric.analytic(predicted.total, "bytes")
    return metrics | peak


def expand(axes: dict[str, list], options: dict) -> list[BenchPoint]:
    """The sweep's points times each --recipe (or the paper's six with --paper-table: batch 1, 448 px, and
    the prompt filling what the media leave of a 300-position context)."""
    names = options["recipe"] or (PAPER_RECIPES if options["paper_table"] else ("nvila",))
    lora = {
        "lora_rank": options["lora_rank"],
        "lora_alpha": options["lora_alpha"],
        "lora_dropout": options["lora_dropout"],
    }
    check_training(axes, options["lr"])
    nvila_presets_only(
        axes,
        "finetune-memory (NVILA's fine-tuning recipes and their memory model)",
        hint="`nvila-bench run train --preset {name}` measures a peer's training step",
    )
    extras = []
    for name in names:
        try:
            recipe = Recipe.parse(name, LoraSettings(lora["lora_rank"], lora["lora_alpha"], lora["lora_dropout"]))
        except ValueError as e:
            raise SuiteError(str(e)) from None
        extras.append({"recipe": recipe.name, "lr": options["lr"]} | (lora if recipe.uses_lora else {}))
    if options["paper_table"]:
        axes = axes | {"images": axes.get("images") or [((448, 448),)]}
    points = []
    for point in sweep_points(axes, {}):
        if options["paper_table"] and "prompt_tokens" not in axes:
            media = count_visual_tokens(
                get_preset(point.preset), list(point.images), point.video_frames, point.temporal_pool
            )
            # At least one text token: the loss has nothing to predict without one (NaN).
            point = replace(point, prompt_tokens=max(1, PAPER_CONTEXT - media.total_tokens))
        points += [with_extra(point, **extra) for extra in extras]
    return points


PARTS = {  # what the measured step counts, part by part
    "weights": "the parameters",
    "gradients": "the gradients",
    "optimizer": "AdamW's state",
    "activations": "what autograd saves in the forward",
}
METRICS = (
    MetricSpec("memory_counted", "bytes", "lower", headline=True, help="The four parts, counted tensor by tensor."),
    MetricSpec("peak_memory_predicted", "bytes", None, headline=True, help="The memory model's total."),
    MetricSpec("step_time", "s", "lower", gated=True, headline=True, help="One optimizer step."),
    MetricSpec("iterations_per_s", "it/s", "higher", help="Optimizer steps per second."),
    *(
        spec
        for part, what in PARTS.items()
        for spec in (
            MetricSpec(f"{part}_bytes", "bytes", "lower", help=f"Bytes of {what}, counted."),
            MetricSpec(f"{part}_bytes_predicted", "bytes", None, help=f"Bytes of {what}, predicted."),
        )
    ),
    MetricSpec("trainable_params", "params", None, help="Parameters the recipe trains."),
    MetricSpec("trainable_params_predicted", "params", None, help="Parameters the recipe trains, predicted."),
    *(spec for spec in TOKEN_SPECS if spec.name == "sequence_tokens"),
    MetricSpec("loss_first", "nats", None, help="The loss of the measured step."),
    *(spec for spec in MEMORY_SPECS if spec.name != "peak_rss"),  # the allocator's peak of the step (GPU)
)

SUITE = Suite(
    "finetune-memory",
    "Memory (counted part by part, and predicted) and speed of each fine-tuning recipe.",
    measure_point,
    view="training",  # its report section: reports/views/training.py
    options=(
        Option(
            "recipe", "VISION-LLM recipe, e.g. ln-lora, full-full, frozen-qlora, or nvila [nvila].", str, multiple=True
        ),
        Option(
            "paper_table", "The paper's fine-tuning table (batch 1, 448 px, context 300, its six recipes).", bool, False
        ),
        Option("lr", "Learning rate.", float, 2e-5),
        Option("lora_rank", "LoRA rank.", int, 64),
        Option("lora_alpha", "LoRA alpha.", float, 16.0),
        Option("lora_dropout", "LoRA dropout.", float, 0.05),
    ),
    expand=expand,
    metrics=METRICS,
)
