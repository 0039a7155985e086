"""Prefill suite: time to first token (TTFT) and where it goes.

One iteration = one request, as a server would handle it: preprocess the images (`--preprocess cpu`: PIL
resize, tiling, normalisation on the host; `gpu`: the uint8 image copied to the device once and tiled
there by tensor operations; decoding the file is not included), run the vision tower, the projector (S2
merge, STC, MLP, TSP), then splice the media into the prompt and run the LLM prefill up to the first token.
TTFT is the sum, as vLLM / MLPerf define it. The engine decides how the stages run (model/engines.py): the
compiled engine compiles the vision layers and the projector and replays the LLM prefill as one CUDA graph
captured for this context length; its one-time cost is `setup_seconds`, outside the timed iterations.
"""

from __future__ import annotations

import torch

from nvila_bench.core.analytic import analytic_metrics
from nvila_bench.core.energy import EnergyMeter, energy_metrics
from nvila_bench.core.memory import memory_metrics, reset_peak_memory
from nvila_bench.core.point import BenchPoint
from nvila_bench.core.results import Metric
from nvila_bench.core.session import Session
from nvila_bench.core.timing import StageClock, measure, timed_once
from nvila_bench.model import count_visual_tokens, get_preset
from nvila_bench.model.engines import make_engine
from nvila_bench.model.pipeline import embed, media_blocks, synthetic_request
from nvila_bench.model.stages import LLM_PREFILL, PREFILL_STAGES, PREPROCESS
from nvila_bench.model.vision import attention_kernel

from .registry import Suite


def request_of(point: BenchPoint):
    return synthetic_request(get_preset(point.preset), point.images, point.video_frames, point.prompt_tokens,
                             point.batch_size, point.seed, point.temporal_pool, point.preprocess)  # fmt: skip


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


def measure_point(point: BenchPoint, session: Session) -> dict[str, Metric]:
    model = session.model(point)
    request = request_of(point)
    device = torch.device(point.device)
    engine = make_engine(point.engine, model, point.cache)
    reset_peak_memory(device)

    def setup() -> None:  # compile the media stages (compiled engine) and capture the LLM prefill
        engine.setup_media()
        engine.setup_prefill(embed(model, request))

    with torch.inference_mode():
        setup_seconds = timed_once(setup, device)

    iteration = ttft_iteration(model, request, engine)
    meter = EnergyMeter.open(device)  # None on CPU: the record then has no energy fields
    with torch.inference_mode():
        samples = measure(iteration, device, session.measure, region=meter)
    metrics = {"ttft": Metric.timing(samples["total"])}
    metrics |= {stage: Metric.timing(samples[stage]) for stage in PREFILL_STAGES}
    metrics |= token_metrics(point)
    metrics["iterations"] = Metric.measured(len(samples["total"]), "count")
    metrics["setup_seconds"] = Metric.measured(setup_seconds, "s", "lower")  # compile + graph capture
    if engine.note:
        metrics["engine_note"] = Metric.measured(engine.note, "text")
    if point.images or point.video_frames:
        metrics["vision_attention"] = Metric.measured(attention_kernel(model.vision_tower), "text")  # e.g. flash_attention
    metrics |= memory_metrics(device)
    # Joules per prefilled position (media + prompt, every row of the batch), preprocessing and vision included.
    positions = metrics["sequence_tokens"].value * point.batch_size
    metrics |= energy_metrics(meter, len(samples["total"]) * positions)
    timed = {stage: stage for stage in PREFILL_STAGES if stage != PREPROCESS}
    return metrics | analytic_metrics(point, metrics, timed, session.peaks_for(point.dtype))


SUITE = Suite("prefill", "TTFT and its stages (preprocess, vision, projector, LLM prefill).", measure_point)
