"""What several suites share, so that no suite imports another (an import-linter contract, pyproject.toml): a
point's request, the timed TTFT iteration and its run, an engine's one-time setup timed on its own, a point's
token counts; and the declarations (`MetricSpec`) of the metrics these and the core's helpers write. Importing it
loads no torch (the registry's `declared_outputs` imports every suite): the heavy imports live in the functions."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nvila_bench.model import count_visual_tokens, get_preset
from nvila_bench.model.presets import is_peer
from nvila_bench.model.stages import DECODE_STEP, GRAPH_CAPTURE, LLM_PREFILL, PREPROCESS, PROJECTOR, VISION

from nvila_bench.core.measuring.results import Metric, PointSkipped
from nvila_bench.core.measuring.specs import MetricSpec

if TYPE_CHECKING:
    from nvila_bench.core.measuring.point import BenchPoint
    from nvila_bench.core.measuring.session import Session


def request_of(point: BenchPoint):
    """The point's request: random images or frames, or the point's image file (its size is the point's image, its
    pixels decoded when served). A peer's request its processor cannot serve here is a skipped point."""
    from nvila_bench.model.peer_model import torchvision_missing
    from nvila_bench.model.pipeline import file_request, peer_request, synthetic_request

    cfg, files = get_preset(point.preset), tuple(filter(None, [point.extra.get("image_file")]))
    if is_peer(cfg):
        reason = torchvision_missing(point.preprocess, bool(point.video_frames))
        if reason:
            raise PointSkipped(reason)
        return peer_request(
            cfg,
            point.images,
            point.video_frames,
            point.prompt_tokens,
            point.batch_size,
            point.seed,
            point.preprocess,
            files,
        )
    if files:
        return file_request(cfg, files, point.prompt_tokens, point.batch_size, point.seed, point.preprocess)
    return synthetic_request(
        cfg,
        point.images,
        point.video_frames,
        point.prompt_tokens,
        point.batch_size,
        point.seed,
        point.temporal_pool,
        point.preprocess,
    )


def token_metrics(point: BenchPoint) -> dict[str, Metric]:
    count = count_visual_tokens(get_preset(point.preset), point.images, point.video_frames, point.temporal_pool)
    return {
        "vit_tiles": Metric.measured(count.vit_tiles, "tiles"),
        "visual_tokens": Metric.measured(count.visual_tokens, "tokens"),
        "media_tokens": Metric.measured(count.total_tokens, "tokens"),  # visual + separators
        "sequence_tokens": Metric.measured(count.total_tokens + point.prompt_tokens, "tokens"),
    }


def ttft_iteration(model, request, engine):
    """One timed request up to its first token: the media stages, then the engine's LLM prefill."""
    from nvila_bench.model.pipeline import media_blocks

    def iteration(clock) -> None:
        blocks = media_blocks(model, request, clock.section)
        with clock.section(LLM_PREFILL):
            engine.first_token(model.embed(request.input_ids, blocks))

    return iteration


SETUP = "setup"  # the engine's one-time work before timing: compile + graph capture


@contextlib.contextmanager
def timed_setup(engine, clock):
    """`with timed_setup(engine, clock):` the engine's one-time work (compile, capture) timed as SETUP on a
    core.measuring.timing.OneTimeClock, the CUDA graph captures inside it also on their own: the engine encloses
    each in `setup_section`, which is the clock's only while this lasts (a re-setup later, inside timed
    iterations, adds no syncs)."""
    from nvila_bench.model.pipeline import no_sections

    engine.setup_section = clock.section
    try:
        with clock.section(SETUP):
            yield
    finally:
        engine.setup_section = no_sections


def setup_metrics(clock) -> dict[str, Metric]:
    """`setup_seconds`: compile + graph capture, outside the timed iterations (a peer's includes one run);
    `graph_capture_seconds`: the captures alone, where any ran (CUDA, compiled engine)."""
    metrics = {"setup_seconds": Metric.measured(clock.seconds.get(SETUP, 0.0), "s", "lower")}
    if GRAPH_CAPTURE in clock.seconds:
        metrics["graph_capture_seconds"] = Metric.measured(clock.seconds[GRAPH_CAPTURE], "s", "lower")
    return metrics


@dataclass
class TTFTRun:
    """A point's timed requests up to their first token: the samples per stage ("total": TTFT), the engine that
    ran them, the clock of its one-time setup and the energy meter of the timed iterations (None: no GPU)."""

    samples: dict[str, list[float]]
    engine: Any
    setup: Any  # core.measuring.timing.OneTimeClock
    meter: Any  # core.measuring.energy.EnergyMeter | None


def measure_ttft(point: BenchPoint, session: Session) -> TTFTRun:
    """Time the point's request up to its first token with the point's engine, its setup (compile, capture)
    timed once before, outside the timed iterations; peak memory counts from before the setup."""
    import torch
    from nvila_bench.model.engines import make_engine
    from nvila_bench.model.pipeline import embed

    from nvila_bench.core.measuring.energy import EnergyMeter
    from nvila_bench.core.measuring.memory import reset_peak_memory
    from nvila_bench.core.measuring.timing import OneTimeClock, measure

    model = session.model(point)
    request = request_of(point)
    device = torch.device(point.device)
    engine = make_engine(point.engine, model, point.cache)
    reset_peak_memory(device)

    def setup() -> None:  # compile the media stages (compiled engine) and capture the LLM prefill
        engine.setup_media()
        engine.setup_prefill(embed(model, request))

    clock = OneTimeClock(device)
    with torch.inference_mode(), timed_setup(engine, clock):
        setup()

    meter = EnergyMeter.open(device)  # None on CPU: the record then has no energy fields
    with torch.inference_mode():
        samples = measure(ttft_iteration(model, request, engine), device, session.measure, region=meter)
    return TTFTRun(samples, engine, clock, meter)


# ---- declared metrics: the families several suites write ------------------------------------------------------
TOKEN_SPECS = (
    MetricSpec("vit_tiles", "tiles", None, help="Tiles (images) and frames (video) the vision tower encodes."),
    MetricSpec("visual_tokens", "tokens", None, help="Visual tokens the LLM sees, separators excluded."),
    MetricSpec(
        "media_tokens", "tokens", None, help="Positions the media take in the LLM's input, separators included."
    ),
    MetricSpec("sequence_tokens", "tokens", None, help="Positions of one request: media and prompt."),
)
STAGE_SPECS = (  # the stages of TTFT, `ttft_iteration`'s laps
    MetricSpec(PREPROCESS, "s", "lower", help="Decoding (image files), tiling and normalising the media."),
    MetricSpec(VISION, "s", "lower", help="The vision tower over every tile and frame."),
    MetricSpec(PROJECTOR, "s", "lower", help="Dynamic-S2 merge, token compression (STC, TSP) and the MLP projector."),
    MetricSpec(LLM_PREFILL, "s", "lower", help="The LLM prefill of media and prompt, up to the first token."),
)
SETUP_SPECS = (
    MetricSpec("setup_seconds", "s", "lower", help="The engine's one-time compile and capture, outside the timings."),
    MetricSpec("graph_capture_seconds", "s", "lower", help="The CUDA graph captures within setup (compiled, CUDA)."),
)
ENGINE_NOTE = MetricSpec("engine_note", "text", None, help="What the engine ran otherwise than asked, and why.")
MEMORY_SPECS = (  # core/measuring/memory.py: the device's allocator on a GPU, the process's peak RSS on a CPU
    MetricSpec("peak_memory_allocated", "bytes", "lower", help="Peak memory the CUDA caching allocator handed out."),
    MetricSpec("peak_memory_reserved", "bytes", "lower", help="Peak memory the CUDA caching allocator held."),
    MetricSpec("peak_rss", "bytes", "lower", help="The process's peak resident memory (CPU runs; an upper bound)."),
)
ENERGY_SPECS = (  # core/measuring/energy.py: NVML's energy counter over the timed iterations (GPU only)
    MetricSpec("energy_j", "J", "lower", help="GPU energy of the timed iterations."),
    MetricSpec("joules_per_token", "J/token", "lower", help="GPU energy per token processed."),
    MetricSpec("avg_power_w", "W", None, help="Mean GPU power over the timed iterations."),
)
COST_STAGES = (VISION, PROJECTOR, LLM_PREFILL, DECODE_STEP)  # the stages core/analysis/costmodel.request_costs costs


def cost_specs(stages: tuple[str, ...] = COST_STAGES, executed: bool = True, floors: bool = True):
    """The cost model's figures of each stage (one spec per stage): `{stage}_flops`, `{stage}_executed_flops` (what
    a causal kernel runs), `{stage}_bytes` and, with known peaks, `{stage}_floor`."""
    out = []
    for stage in stages:
        out.append(MetricSpec(f"{stage}_flops", "FLOP", None, help=f"Cost model: model FLOPs of {stage}."))
        if executed:
            out.append(MetricSpec(f"{stage}_executed_flops", "FLOP", None, help=f"Cost model: FLOPs {stage} runs."))
        out.append(MetricSpec(f"{stage}_bytes", "bytes", None, help=f"Cost model: bytes {stage} moves."))
        if floors:
            out.append(MetricSpec(f"{stage}_floor", "s", None, help=f"Roofline floor of {stage} at the peaks."))
    return tuple(out)


def utilisation_specs(stages: tuple[str, ...]) -> tuple[MetricSpec, ...]:
    """MFU and MBU of each timed stage: the cost model's FLOPs and bytes over its measured median, against the peaks."""
    return tuple(
        MetricSpec(f"{stage}_{kind}", "fraction", "higher", help=f"Share of the peak {what} {stage} reached.")
        for stage in stages
        for kind, what in (("mfu", "FLOP/s"), ("mbu", "bandwidth"))
    )


PEAK_SPECS = (
    MetricSpec("peaks_source", "text", None, help="Where the peaks come from: measured ceilings or a datasheet."),
    MetricSpec("peak_flops", "FLOP/s", None, help="The peak FLOP/s the floors and MFU divide by."),
    MetricSpec("peak_bandwidth", "bytes/s", None, help="The peak memory bandwidth the floors and MBU divide by."),
)


def analytic_specs(timed: tuple[str, ...]) -> tuple[MetricSpec, ...]:
    """What core/analysis/analytic.py `analytic_metrics` writes beside a measured point whose `timed` stages have
    a measured median: every stage's cost, the timed stages' MFU and MBU, and the peaks."""
    convention = MetricSpec("flops_convention", "text", None, help="Which FLOPs the floors and MFU count.")
    return (convention, *cost_specs(), *utilisation_specs(timed), *PEAK_SPECS)
