"""Prefill suite: time to first token (TTFT) and where it goes.

One iteration = one request, as a server would handle it: preprocess the images (`--preprocess cpu`: PIL
resize, tiling, normalisation on the host; `gpu`: the uint8 image copied to the device once and tiled
there by tensor operations; decoding the file is not included, except for `--image-file`, whose files are
decoded inside the preprocessing stage: PIL for cpu, torchvision / nvJPEG on the device for gpu), run the vision tower,
the projector (S2
merge, STC, MLP, TSP), then splice the media into the prompt and run the LLM prefill up to the first token.
TTFT is the sum, as vLLM / MLPerf define it. The engine decides how the stages run (model/engines.py): the
compiled engine compiles the vision layers and the projector and replays the LLM prefill as one CUDA graph
captured for this context length; its one-time cost is `setup_seconds` (of which the graph captures:
`graph_capture_seconds`), outside the timed iterations.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from nvila_bench.model import count_visual_tokens, get_preset
from nvila_bench.model.engines import make_engine
from nvila_bench.model.peer_model import torchvision_missing
from nvila_bench.model.pipeline import (
    embed,
    file_request,
    image_file_size,
    media_blocks,
    no_sections,
    peer_request,
    synthetic_request,
)
from nvila_bench.model.presets import is_peer
from nvila_bench.model.stages import GRAPH_CAPTURE, LLM_PREFILL, PREFILL_STAGES, PREPROCESS

from nvila_bench.core.analysis.analytic import analytic_metrics
from nvila_bench.core.measuring.energy import EnergyMeter, energy_metrics
from nvila_bench.core.measuring.memory import memory_metrics, reset_peak_memory
from nvila_bench.core.measuring.point import BenchPoint
from nvila_bench.core.measuring.results import Metric, PointSkipped
from nvila_bench.core.measuring.session import Session
from nvila_bench.core.measuring.timing import OneTimeClock, StageClock, measure

from .registry import Option, Suite, SuiteError, sweep_points, with_extra


def request_of(point: BenchPoint):
    """The point's request: random images or frames, or the point's image file (its size is the point's image, its
    pixels decoded when served). A peer's request its processor cannot serve here is a skipped point."""
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

    def iteration(clock: StageClock) -> None:
        blocks = media_blocks(model, request, clock.section)
        with clock.section(LLM_PREFILL):
            engine.first_token(model.embed(request.input_ids, blocks))

    return iteration


SETUP = "setup"  # the engine's one-time work before timing: compile + graph capture


@contextlib.contextmanager
def timed_setup(engine, clock: OneTimeClock):
    """`with timed_setup(engine, clock):` the engine's one-time work (compile, capture) timed as SETUP, the CUDA
    graph captures inside it also on their own: the engine encloses each in `setup_section`, which is the
    clock's only while this lasts (a re-setup later, inside timed iterations, adds no syncs)."""
    engine.setup_section = clock.section
    try:
        with clock.section(SETUP):
            yield
    finally:
        engine.setup_section = no_sections


def setup_metrics(clock: OneTimeClock) -> dict[str, Metric]:
    """`setup_seconds`: compile + graph capture, outside the timed iterations (a peer's includes one run);
    `graph_capture_seconds`: the captures alone, where any ran (CUDA, compiled engine)."""
    metrics = {"setup_seconds": Metric.measured(clock.seconds.get(SETUP, 0.0), "s", "lower")}
    if GRAPH_CAPTURE in clock.seconds:
        metrics["graph_capture_seconds"] = Metric.measured(clock.seconds[GRAPH_CAPTURE], "s", "lower")
    return metrics


def measure_point(point: BenchPoint, session: Session) -> dict[str, Metric]:
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

    iteration = ttft_iteration(model, request, engine)
    meter = EnergyMeter.open(device)  # None on CPU: the record then has no energy fields
    with torch.inference_mode():
        samples = measure(iteration, device, session.measure, region=meter)
    metrics = {"ttft": Metric.timing(samples["total"])}
    metrics |= {stage: Metric.timing(samples[stage]) for stage in PREFILL_STAGES}
    metrics |= token_metrics(point)
    metrics["iterations"] = Metric.measured(len(samples["total"]), "count")
    metrics |= setup_metrics(clock)
    if engine.note:
        metrics["engine_note"] = Metric.measured(engine.note, "text")
    if point.images or point.video_frames:
        metrics["vision_attention"] = Metric.measured(engine.vision_attention(), "text")  # e.g. flash_attention
    llm_attention = engine.prefill_attention()  # the compiled engine's LLM prefill: its SDPA backend
    if llm_attention:
        metrics["llm_prefill_attention"] = Metric.measured(llm_attention, "text")
    metrics |= memory_metrics(device)
    # Joules per prefilled position (media + prompt, every row of the batch), preprocessing and vision included.
    positions = metrics["sequence_tokens"].value * point.batch_size
    metrics |= energy_metrics(meter, len(samples["total"]) * positions)
    timed = {stage: stage for stage in PREFILL_STAGES if stage != PREPROCESS}
    return metrics | analytic_metrics(point, metrics, timed, session.peaks_for(point.dtype))


def expand(axes: dict[str, list], options: dict) -> list[BenchPoint]:
    """The sweep; with `--image-file`, one request per file instead of `--image` sizes (the file's size
    from its header, so token counts and costs are the file's; the path recorded in the point)."""
    files = options.get("image_file") or ()
    if not files:
        return sweep_points(axes, {})
    if axes.get("images") or axes.get("video_frames"):
        raise SuiteError("give --image-file or --image / --video-frames, not both")
    points = []
    for path in files:
        try:
            size = image_file_size(path)
        except ValueError as e:
            raise SuiteError(str(e)) from None
        points += [
            with_extra(p, image_file=str(Path(path).resolve())) for p in sweep_points(axes | {"images": [(size,)]}, {})
        ]
    return points


SUITE = Suite(
    "prefill",
    "TTFT and its stages (preprocess, vision, projector, LLM prefill).",
    measure_point,
    options=(
        Option(
            "image_file",
            "An image file as the request's image (repeat for a sweep): decoded inside the "
            "timed preprocessing stage, nvJPEG on the GPU for JPEGs with --preprocess gpu.",
            multiple=True,
        ),
    ),
    expand=expand,
)
