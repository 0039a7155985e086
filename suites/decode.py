"""Decode suite: time per output token (TPOT) after a real prefill of the point's request.

One iteration = a fresh prefill of the full context (media + prompt), then `new_tokens - 1` greedy decode
steps, EOS ignored, each step timed on its own. The first token comes from the prefill, so TPOT excludes it
(vLLM / MLPerf definition). The KV cache is a transformers DynamicCache or a preallocated StaticCache.
"""

from __future__ import annotations

import torch

from nvila_bench.core import costmodel
from nvila_bench.core.energy import EnergyMeter, energy_metrics
from nvila_bench.model import count_visual_tokens, get_preset, preprocess_media
from nvila_bench.core.point import BenchPoint
from nvila_bench.core.results import metric
from nvila_bench.core.stats import bounded_samples, summarize
from nvila_bench.core.timing import MeasureConfig, StageClock, measure

from .common import Session, analytic_metrics, build_request, memory_metrics, reset_peak_memory, timing_metric


def cache_bytes(cache) -> int:
    """Bytes held by a transformers cache's key and value tensors (allocated size for a static cache)."""
    total = 0
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values"):
            tensor = getattr(layer, name, None)
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel() * tensor.element_size()
    return total


def run(point: BenchPoint, mcfg: MeasureConfig, session: Session) -> dict:
    if point.new_tokens < 2:
        raise ValueError("decode needs new_tokens >= 2 (the first token comes from the prefill)")
    model = session.model(point)
    cfg = model.config
    request = build_request(point)
    device = torch.device(point.device)
    with torch.inference_mode():  # the context is the same every iteration: embed it once
        media = preprocess_media(cfg, request.images, request.video)
        embeds = model.embed(request.input_ids, model.project(model.encode_media(media), media, point.temporal_pool))
    context = embeds.shape[1]
    last_cache = []

    def iteration(clock: StageClock) -> None:
        cache = model.new_cache(point.cache, context + point.new_tokens)
        token = model.prefill(embeds, cache).logits.argmax(-1, keepdim=True)
        clock.lap("prefill")
        for _ in range(point.new_tokens - 1):
            token = model.decode_step(token, cache).argmax(-1, keepdim=True)
            clock.lap("decode_step")
        last_cache[:] = [cache]

    reset_peak_memory(device)
    meter = EnergyMeter.open(device)  # None on CPU: the record then has no energy fields
    with torch.inference_mode():
        samples = measure(iteration, device, mcfg, region=meter)
    steps = point.new_tokens - 1
    decode_seconds = [total - pre for total, pre in zip(samples["total"], samples["prefill"])]
    rates = [point.batch_size * steps / s for s in decode_seconds]
    rate = summarize(rates, "tokens/s")
    count = count_visual_tokens(get_preset(point.preset), point.images, point.video_frames, point.temporal_pool)
    metrics = {
        "tpot": timing_metric(samples["decode_step"]),
        "decode_tokens_per_s": metric(rate.median, "tokens/s", summary=rate.to_dict(), samples=bounded_samples(rates)),
        "prefill": timing_metric(samples["prefill"]),
        "e2e_latency": timing_metric(samples["total"]),
        "context_tokens": metric(context, "tokens"),
        "media_tokens": metric(count.total_tokens, "tokens"),
        "kv_cache_bytes": metric(cache_bytes(last_cache[0]), "bytes"),
        "kv_cache_bytes_analytic": metric(
            costmodel.kv_cache_bytes(cfg, context + steps, point.batch_size, point.dtype), "bytes", "analytic"
        ),
        "iterations": metric(len(samples["total"]), "count"),
    }
    metrics |= memory_metrics(device)
    # Joules per generated token of the whole request (the prefill of the context included): NVML's counter is
    # too coarse to split one iteration's prefill from its decode steps.
    metrics |= energy_metrics(meter, len(samples["total"]) * point.batch_size * point.new_tokens)
    # The analytic decode step is costed at the mean context of the measured steps.
    timed = {"decode_step": "tpot", "llm_prefill": "prefill"}
    return metrics | analytic_metrics(point, metrics, timed, session.peaks_for(point.dtype), context=context + steps // 2)
