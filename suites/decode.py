"""Decode suite: time per output token (TPOT) after a real prefill of the point's request.

One iteration = a fresh prefill of the full context (media + prompt), then `new_tokens - 1` greedy decode
steps, EOS ignored, each step timed on its own. The first token comes from the prefill, so TPOT excludes it
(vLLM / MLPerf definition). The point's engine runs the steps (model/engines.py: eager, compiled, or the
transformers peers hf-generate / hf-static); its one-time compile and capture are timed on their own
(`setup_seconds`; the CUDA graph captures within it, `graph_capture_seconds`), never hidden in the warm-up.
The record keeps the first 64 generated ids (`output_ids`) and a digest of them all, so engines can be checked
against each other; and, because a random-weight model's greedy ids can be one id repeated whatever the engine
computed, the logits the last id was chosen from at `LOGIT_SAMPLE` evenly spaced vocabulary ids
(`last_step_logits`, row 0): two engines that made the same ids can be compared by those numbers
(reports/engines.py).
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING

from nvila_bench.model.stages import DECODE_STEP, LLM_PREFILL

from nvila_bench.core.analysis import costmodel
from nvila_bench.core.measuring.results import Metric
from nvila_bench.core.measuring.specs import MetricSpec

from .common import (
    ENERGY_SPECS,
    ENGINE_NOTE,
    MEMORY_SPECS,
    SETUP_SPECS,
    TOKEN_SPECS,
    analytic_specs,
    request_of,
    setup_metrics,
    timed_setup,
    token_metrics,
)
from .registry import Suite, SuiteError, sweep_points

if TYPE_CHECKING:
    import torch

    from nvila_bench.core.measuring.point import BenchPoint
    from nvila_bench.core.measuring.session import Session


def cache_bytes(cache) -> int:
    """Bytes held by a transformers cache's key and value tensors (allocated size for a static cache)."""
    import torch

    total = 0
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values"):
            tensor = getattr(layer, name, None)
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel() * tensor.element_size()
    return total


LOGIT_SAMPLE = 256  # vocabulary entries of the last step's logits kept per record (of 151,648 for NVILA-8B)


def logits_metrics(logits: torch.Tensor) -> dict[str, Metric]:
    """Row 0 of `logits` (B, V): `last_step_logits`, its values at LOGIT_SAMPLE evenly spaced vocabulary ids (all of
    them for a smaller vocabulary) as floats of 6 significant digits, enough to tell bf16 rounding (1e-3..1e-2
    relative) from a wrong result, a non-finite one as None (a -inf is a token a logits processor masked:
    transformers' min_new_tokens masks EOS); and `last_step_logits_nan`, how many of the row's V are NaN or +inf:
    an engine computing those is broken, which its agreement says (its timings stay figures)."""
    import torch

    row = logits[0].float()
    picked = torch.linspace(0, row.shape[0] - 1, min(LOGIT_SAMPLE, row.shape[0]), device=row.device).round().long()
    sample = [float(f"{x:.6g}") if math.isfinite(x) else None for x in row[picked].tolist()]
    broken = int((row.isnan() | (row == float("inf"))).sum())
    return {
        "last_step_logits": Metric.measured(sample, "logits"),
        "last_step_logits_nan": Metric.measured(broken, "count"),
    }


def ids_digest(ids: torch.Tensor) -> str:
    """A short digest of row 0 of the generated ids (B, N), all N of them: whether two engines' whole sequences,
    not only the kept first 64, were the same (their last steps' logits are comparable only then)."""
    return hashlib.sha256(",".join(map(str, ids[0].tolist())).encode()).hexdigest()[:16]


def expand(axes: dict[str, list], options: dict) -> list[BenchPoint]:
    points = sweep_points(axes, {})  # --cache without an eager point is refused for every suite (registry.jobs_of)
    for p in points:
        if p.new_tokens < 2:
            raise SuiteError(
                f"decode needs --new-tokens >= 2 (the first token comes from the prefill), got {p.new_tokens}"
            )
    return points


def measure_point(point: BenchPoint, session: Session) -> dict[str, Metric]:
    import torch
    from nvila_bench.model.compiling import compile_media
    from nvila_bench.model.engines import make_engine
    from nvila_bench.model.pipeline import embed

    from nvila_bench.core.analysis.analytic import analytic_metrics
    from nvila_bench.core.measuring.energy import EnergyMeter, energy_metrics
    from nvila_bench.core.measuring.memory import memory_metrics, reset_peak_memory
    from nvila_bench.core.measuring.timing import OneTimeClock, measure

    model = session.model(point)
    device = torch.device(point.device)
    compile_media(model, on=False)  # the same context for every engine (a prefill point may have compiled them)
    with torch.inference_mode():  # the context is the same every iteration: embed it once
        embeds = embed(model, request_of(point))
    context, steps = embeds.shape[1], point.new_tokens - 1
    engine = make_engine(point.engine, model, point.cache)
    reset_peak_memory(device)
    clock = OneTimeClock(device)
    with timed_setup(engine, clock):
        engine.setup(embeds, point.new_tokens)
    ids = []

    def iteration(clock) -> None:
        ids[:] = [engine.generate(embeds, point.new_tokens, clock.section)]

    meter = EnergyMeter.open(device)  # None on CPU: the record then has no energy fields
    with torch.inference_mode():
        samples = measure(iteration, device, session.measure, region=meter)
    decode_seconds = [total - pre for total, pre in zip(samples["total"], samples[LLM_PREFILL])]
    metrics = {
        "tpot": Metric.timing(samples[DECODE_STEP]),
        "decode_tokens_per_s": Metric.rate(decode_seconds, point.batch_size * steps, "tokens/s"),
        "prefill": Metric.timing(samples[LLM_PREFILL]),
        "e2e_latency": Metric.timing(samples["total"]),
        "context_tokens": Metric.measured(context, "tokens"),
        "media_tokens": token_metrics(point)["media_tokens"],
        "kv_cache_bytes_analytic": Metric.analytic(
            costmodel.kv_cache_bytes(model.config, context + steps, point.batch_size, point.dtype), "bytes"
        ),
        "iterations": Metric.measured(len(samples["total"]), "count"),
        "output_ids": Metric.measured(ids[0][0, :64].tolist(), "token ids"),  # row 0
        "output_ids_digest": Metric.measured(ids_digest(ids[0]), "sha256"),
    } | setup_metrics(clock)
    if engine.last_logits is not None:
        metrics |= logits_metrics(engine.last_logits)
    if engine.cache is not None:  # the peers keep theirs inside generate()
        metrics["kv_cache_bytes"] = Metric.measured(cache_bytes(engine.cache), "bytes", "lower", "max")
    if engine.note:
        metrics["engine_note"] = Metric.measured(engine.note, "text")
    if engine.generate_prefill:  # the prefill timed here is not the engine's own (the prefill suite measures that)
        metrics["prefill_engine"] = Metric.measured(engine.generate_prefill, "text")
    metrics |= memory_metrics(device)
    # Joules per generated token of the whole request (the prefill of the context included): NVML's counter is
    # too coarse to split one iteration's prefill from its decode steps.
    metrics |= energy_metrics(meter, len(samples["total"]) * point.batch_size * point.new_tokens)
    # The analytic decode step is costed at the mean context of the measured steps.
    timed = {DECODE_STEP: "tpot", LLM_PREFILL: "prefill"}
    return metrics | analytic_metrics(
        point, metrics, timed, session.peaks_for(point.dtype), context=context + steps // 2
    )


METRICS = (
    MetricSpec("tpot", "s", "lower", gated=True, headline=True, help="Time per output token: one decode step."),
    MetricSpec(
        "decode_tokens_per_s", "tokens/s", "higher", gated=True, headline=True, help="Generated tokens per second."
    ),
    MetricSpec("prefill", "s", "lower", help="The LLM prefill of the embedded context (the first token)."),
    MetricSpec("e2e_latency", "s", "lower", help="The prefill and every decode step of one request."),
    MetricSpec("context_tokens", "tokens", None, headline=True, help="Positions of the context before decoding."),
    *(spec for spec in TOKEN_SPECS if spec.name == "media_tokens"),
    MetricSpec("kv_cache_bytes", "bytes", "lower", help="Bytes the KV cache holds (allocated, for a static cache)."),
    MetricSpec("kv_cache_bytes_analytic", "bytes", None, help="Cost model: the KV cache of the context and steps."),
    MetricSpec("iterations", "count", None, help="Timed requests."),
    MetricSpec("output_ids", "token ids", None, help="The first 64 generated ids (row 0)."),
    MetricSpec("output_ids_digest", "sha256", None, help="A digest of every generated id (row 0)."),
    MetricSpec("last_step_logits", "logits", None, help=f"Row 0's last-step logits at {LOGIT_SAMPLE} vocabulary ids."),
    MetricSpec("last_step_logits_nan", "count", None, help="NaN or +inf entries of row 0's last-step logits."),
    *SETUP_SPECS,
    ENGINE_NOTE,
    MetricSpec(
        "prefill_engine", "text", None, help="How generate's prefill ran, where not as the engine's own prefill."
    ),
    *MEMORY_SPECS,
    *ENERGY_SPECS,
    *analytic_specs((DECODE_STEP, LLM_PREFILL)),
)

SUITE = Suite(
    "decode",
    "Time per output token after a real prefill (greedy, EOS ignored).",
    measure_point,
    expand=expand,
    decodes=True,
    metrics=METRICS,
)
