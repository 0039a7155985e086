"""Training suite: real optimizer steps of NVILA's training stages on synthetic batches with the real token
geometry (docs/reference.md#training-and-fine-tuning-recipes).

One iteration = one optimizer step: `grad_accum` micro-batches of `batch_size` samples (each with its own
synthetic images / frames), forward, backward, then AdamW (fused on CUDA). Stages: "projector" (stage 1,
projector only), "projector-llm" (stage 3), "full" (stages 4-5, everything learns). Options in the point's
`extra`: stage, grad_accum, grad_ckpt, fp8 (torchao float8, Ada / Hopper only), compile (torch.compile of
the LLM and ViT layers), autocast (bf16 autocast over fp32 weights instead of bf16 weights), lr.

A peer VLM (qwen2-vl-7b, qwen2.5-vl-7b, llava-onevision-7b, family "peer") trains through transformers' own forward
with labels (model/peer_training.py), the same stages and metrics; fp8 and compile are NVILA's only (refused).

Under torchrun (the runner's launcher mode, runner/distributed.py) every rank runs this measure: every ViT layer,
every LLM decoder layer and the input embedding are their own FSDP2 units (`fully_shard`), the rest (patch
embedding, projector, final norm, LM head) the root. Each rank trains on its own rows of the global batch
(`--batch-size` is per rank) and the reduce-scatter averages the gradients, so N ranks of batch b follow the
same trajectory as one process of batch N*b. Steps are counted, not timed to a duration (every rank must run the
same collectives): `--warmup` then `--repeats`. The record: per-rank step times, per-GPU and aggregate samples/s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nvila_bench.model import count_visual_tokens, get_preset
from nvila_bench.model.presets import UnknownPresetError, is_peer
from nvila_bench.model.recipes import STAGES, Recipe, flop_modes
from nvila_bench.model.stages import BACKWARD, LLM_FORWARD, OPTIMIZER, PROJECTOR, VISION

from nvila_bench.core.analysis import costmodel
from nvila_bench.core.measuring.results import Metric, PointSkipped
from nvila_bench.core.measuring.specs import MetricSpec
from nvila_bench.core.measuring.stats import summarize

from .common import MEMORY_SPECS, TOKEN_SPECS
from .registry import Option, Suite, SuiteError, check_training, sweep_points, with_extra

if TYPE_CHECKING:
    from nvila_bench.core.measuring.point import BenchPoint
    from nvila_bench.core.measuring.session import Session

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


def prepare(point: BenchPoint, s: dict, seed: int = 0, sharded: bool = False):
    """(model, recipe, optimizer, autocast dtype) for one point: a fresh model every point (training
    changes the weights); `sharded`: FSDP2 units over a torchrun launch's ranks (`shard`), AdamW unfused."""
    import torch
    from nvila_bench.model import build_model
    from nvila_bench.model.training import apply_recipe, build_optimizer, enable_fp8, enable_gradient_checkpointing
    from nvila_bench.model.vision import vision_body

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
        for layer in [*model.llm.model.layers, *vision_body(model.vision_tower).encoder.layers]:
            layer.compile()  # per layer: one graph reused by every layer, short compile times
    if sharded:
        shard(model)
    optimizer = build_optimizer(model, recipe, lr=float(s["lr"]), fused=False if sharded else None)
    return model, recipe, optimizer, (torch.bfloat16 if s["autocast"] else None)


def shard(model) -> None:
    """FSDP2 units: each ViT layer, each LLM layer, the input embedding; then the root. `training_loss` is
    registered as a forward method, so the root's parameters are gathered around it."""
    from nvila_bench.model.vision import vision_body
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    for layer in vision_body(model.vision_tower).encoder.layers:
        fully_shard(layer)
    for layer in model.llm.model.layers:
        fully_shard(layer)
    if not model.config.llm.tie_word_embeddings:  # tied: it shares the LM head's weight, so it stays in the root
        fully_shard(model.llm.model.embed_tokens)
    fully_shard(model)
    register_fsdp_forward_method(model, "training_loss")


def ranks() -> tuple[int, int]:
    """(this process's rank, how many ranks): a torchrun launch's (runner/distributed.py), else (0, 1)."""
    import torch.distributed as dist

    return (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)


def mean_over_ranks(loss: float, device, world: int) -> float:
    """The loss of the global batch: the mean of the ranks' losses (equal tokens per row)."""
    if world == 1:
        return loss
    import torch
    import torch.distributed as dist

    total = torch.tensor([loss], device=device)
    dist.all_reduce(total)
    return float(total) / world


def measure_point(point: BenchPoint, session: Session) -> dict[str, Metric]:
    import torch
    from nvila_bench.model.peer_model import torchvision_missing
    from nvila_bench.model.training import synthetic_batch, train_step, trainable_counts, unavailable

    from nvila_bench.core.measuring.memory import memory_metrics, reset_peak_memory
    from nvila_bench.core.measuring.timing import MeasureConfig, measure

    s = settings(point)
    reason = unavailable(Recipe.parse(s["stage"]), point.device, bool(s["fp8"]))
    if is_peer(get_preset(point.preset)):  # a peer's processors: video needs torchvision
        reason = reason or torchvision_missing("cpu", bool(point.video_frames))
    if reason:  # e.g. --fp8 on CPU: a skipped record with the reason, not an error
        raise PointSkipped(reason)
    session.release()  # the latency suites' cached model is not needed here
    device = torch.device(point.device)
    rank, world = ranks()
    model, recipe, optimizer, autocast = prepare(point, s, sharded=world > 1)
    accum = int(s["grad_accum"])
    step = [0]
    losses: list[float] = []

    def iteration(clock) -> None:
        batches = [  # data prep: before the clock; this rank's rows of the global batch
            synthetic_batch(point, step[0] * accum + k, first_row=rank * point.batch_size) for k in range(accum)
        ]
        clock.start()
        losses.append(mean_over_ranks(train_step(model, batches, optimizer, clock.section, autocast), device, world))
        step[0] += 1

    if world > 1:
        cfg = session.measure  # counted steps: every rank runs the same collectives
        samples = measure(iteration, device, MeasureConfig(cfg.warmup, 0.0, cfg.repeats, 0.0, cfg.repeats))
        return rank_metrics(point, s, recipe, samples["total"], losses, world)
    reset_peak_memory(device)
    samples = measure(iteration, device, session.measure)
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
    metrics["step_flops"] = Metric.analytic(step_flops(point, recipe, rows, s["grad_ckpt"]), "FLOP")
    peaks = session.peaks_for("bfloat16" if s["autocast"] else point.dtype)
    if peaks is not None:
        # Model FLOPs utilisation: the cost model's FLOPs (recomputation excluded, as PaLM defines MFU).
        useful = step_flops(point, recipe, rows, False)
        metrics["mfu"] = Metric.utilisation(costmodel.mfu(useful, metrics["step_time"].value, peaks.flops), "step_time")
        metrics["peaks_source"] = Metric.analytic(peaks.source, "text")
    return metrics


def rank_metrics(point: BenchPoint, s: dict, recipe: Recipe, times: list[float], losses: list[float], world: int):
    """A torchrun launch's metrics, the same on every rank (gathered): a step ends when its slowest rank ends."""
    import torch.distributed as dist

    per_rank = [None] * world
    dist.all_gather_object(per_rank, times)
    slowest = [max(ts) for ts in zip(*per_rank)]
    rows = point.batch_size * int(s["grad_accum"])
    return {
        "step_time": Metric.timing(slowest),
        "samples_per_s": Metric.rate(slowest, world * rows, "samples/s"),
        "per_gpu_samples_per_s": Metric.rate([t for ts in per_rank for t in ts], rows, "samples/s"),
        "tokens_per_s": Metric.rate(slowest, world * rows * sequence_tokens(point), "tokens/s"),
        "rank_step_time_median": Metric.measured([summarize(ts, "s").median for ts in per_rank], "s"),
        "world_size": Metric.measured(world, "ranks"),
        "losses": Metric.measured(losses, "nats"),
        "loss_first": Metric.measured(losses[0], "nats"),
        "loss_last": Metric.measured(losses[-1], "nats"),
        "step_flops": Metric.analytic(world * step_flops(point, recipe, rows, s["grad_ckpt"]), "FLOP"),
    }


def step_flops(point: BenchPoint, recipe: Recipe, rows: int, recompute: bool) -> float:
    """The cost model's FLOPs of one optimizer step of `rows` samples (`recompute`: gradient checkpointing's)."""
    return costmodel.train_step_flops(
        get_preset(point.preset),
        flop_modes(recipe),
        point.images,
        point.video_frames,
        point.temporal_pool,
        point.prompt_tokens,
        rows,
        recompute,
    )


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


STAGE_HELP = {
    VISION: "The vision tower's forward, summed over the micro-batches.",
    PROJECTOR: "The projector's forward, summed over the micro-batches.",
    LLM_FORWARD: "The LLM's forward and loss, summed over the micro-batches.",
    "forward": "The loss forward: vision, projector and LLM.",
    BACKWARD: "The backward pass, summed over the micro-batches.",
    OPTIMIZER: "The AdamW update.",
}
METRICS = (
    MetricSpec("step_time", "s", "lower", gated=True, headline=True, help="One optimizer step (slowest rank's)."),
    MetricSpec("samples_per_s", "samples/s", "higher", gated=True, headline=True, help="Training samples per second."),
    MetricSpec("tokens_per_s", "tokens/s", "higher", headline=True, help="Training positions per second."),
    *(MetricSpec(name, "s", "lower", help=text) for name, text in STAGE_HELP.items()),
    *(spec for spec in TOKEN_SPECS if spec.name == "sequence_tokens"),
    MetricSpec("trainable_params", "params", None, help="Parameters the stage trains."),
    MetricSpec("loss_first", "nats", None, help="The loss of the first step."),
    MetricSpec("loss_last", "nats", None, help="The loss of the last step."),
    MetricSpec("steps", "count", None, help="Optimizer steps run, warm-up included."),
    *MEMORY_SPECS,
    MetricSpec("step_flops", "FLOP", None, help="Cost model: FLOPs of one step (recomputation included)."),
    MetricSpec("mfu", "fraction", "higher", help="Model FLOPs utilisation of a step (recomputation excluded)."),
    MetricSpec("peaks_source", "text", None, help="Where the peak FLOP/s comes from: measured or a datasheet."),
    # A torchrun launch's (runner/distributed.py): the ranks' figures, gathered.
    MetricSpec("per_gpu_samples_per_s", "samples/s", "higher", help="Samples per second of one rank."),
    MetricSpec("rank_step_time_median", "s", None, help="Each rank's median step time."),
    MetricSpec("world_size", "ranks", None, help="Ranks of the torchrun launch."),
    MetricSpec("losses", "nats", None, help="The global batch's loss at every step."),
)

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
    distributed=True,
    metrics=METRICS,
)
