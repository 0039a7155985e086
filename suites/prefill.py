"""Prefill suite: time to first token (TTFT) and where it goes.

One iteration = one request, as a server would handle it: preprocess the images on the CPU (PIL
resize, tiling, normalisation; decoding the file is not included), run the vision tower (including the
host-to-device copy of the pixels), the projector (S2 merge, STC, MLP, TSP), then splice the media into
the prompt and run the LLM prefill up to the first token. TTFT is the sum, as vLLM / MLPerf define it.
"""

from __future__ import annotations

import torch

from nvila_bench.core.energy import EnergyMeter, energy_metrics
from nvila_bench.model import count_visual_tokens, get_preset, preprocess_media
from nvila_bench.core.point import BenchPoint
from nvila_bench.core.results import metric
from nvila_bench.core.timing import MeasureConfig, StageClock, measure

from .common import Session, analytic_metrics, build_request, memory_metrics, reset_peak_memory, timing_metric

STAGES = ("preprocess", "vision", "projector", "llm_prefill")


def run(point: BenchPoint, mcfg: MeasureConfig, session: Session) -> dict:
    model = session.model(point)
    cfg = model.config
    request = build_request(point)
    device = torch.device(point.device)

    def iteration(clock: StageClock) -> None:
        media = preprocess_media(cfg, request.images, request.video)
        clock.lap("preprocess")
        features = model.encode_media(media)
        clock.lap("vision")
        blocks = model.project(features, media, point.temporal_pool)
        clock.lap("projector")
        embeds = model.embed(request.input_ids, blocks)
        model.prefill(embeds).logits.argmax(-1)  # the first token
        clock.lap("llm_prefill")

    reset_peak_memory(device)
    meter = EnergyMeter.open(device)  # None on CPU: the record then has no energy fields
    with torch.inference_mode():
        samples = measure(iteration, device, mcfg, region=meter)
    count = count_visual_tokens(get_preset(point.preset), point.images, point.video_frames, point.temporal_pool)
    metrics = {"ttft": timing_metric(samples["total"])}
    metrics |= {stage: timing_metric(samples[stage]) for stage in STAGES}
    metrics |= {
        "vit_tiles": metric(count.vit_tiles, "tiles"),
        "visual_tokens": metric(count.visual_tokens, "tokens"),
        "media_tokens": metric(count.total_tokens, "tokens"),  # visual + separators
        "sequence_tokens": metric(count.total_tokens + point.prompt_tokens, "tokens"),
        "iterations": metric(len(samples["total"]), "count"),
    }
    metrics |= memory_metrics(device)
    # Joules per prefilled position (media + prompt, every row of the batch), preprocessing and vision included.
    metrics |= energy_metrics(meter, len(samples["total"]) * point.batch_size * (count.total_tokens + point.prompt_tokens))
    timed = {stage: stage for stage in STAGES if stage != "preprocess"}
    return metrics | analytic_metrics(point, metrics, timed, session.peaks_for(point.dtype))
