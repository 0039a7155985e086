"""The deployment ladder (paper Figure 5): what each step from a bf16 scaled-only model to the quantized NVILA
deployment buys, on this machine, for one image request and one video request. One record per rung:

    scaled-only bf16      the preset's scaled-only variant (no token compression)
    bf16                  NVILA as published (STC, TSP): "+ token compression"
    w4a16-llm             + int4 group-wise LLM weights
    w8a8-vit-int8         + int8 vision tower (weights per channel, activations per token)
    w8a8-vit-fp8          + float8 vision tower instead (FP8 GPUs only; skipped elsewhere)
    w8a8-fp8-llm          bf16 NVILA with float8 LLM weights and activations instead of int4 (FP8 GPUs only)
    baseline bf16 / baseline quantized   the VILA1.5 baseline, and the same with w4a16 LLM + int8 ViT

A peer VLM (family "peer": Qwen2-VL, Qwen2.5-VL, LLaVA-OneVision) climbs its own ladder, `PEER_RUNGS`: bf16 and
w4a16-llm (its LLM's decoder layers int4; vision tower, merger / projector, embeddings and LM head bf16), the
paper's "both with W4A16 LLMs". `--preset nvila-8b --preset qwen2-vl-7b` runs both ladders in one run, so the
report pairs them. NVILA's other rungs (scaled-only, W8A8 / FP8 ViT, FP8 LLM, the VILA1.5 baseline) are refused
for a peer.

Each record holds TTFT split into its stages, decode tokens/s, weights bytes per component (measured after
quantization, and the cost model's prediction), peak memory, and the price in quality: top-1 agreement and
KL divergence of next-token logits against the same model in bf16, over `--quality-prompts` synthetic
requests. Quantization is torchao's (model/quantize.py); the engine is the point's (compiled on CUDA).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from nvila_bench.model.quant_plan import COMPONENTS, INT4_KERNELS, SCALES, QuantPlan, unavailable
from nvila_bench.model.stages import DECODE_STEP, LLM_PREFILL, PREFILL_STAGES, VISION

from nvila_bench.core.analysis import costmodel
from nvila_bench.core.analysis.analytic import point_costs
from nvila_bench.core.measuring.point import CPU_REQUEST_TEXT
from nvila_bench.core.measuring.results import Metric, PointSkipped
from nvila_bench.core.measuring.specs import MetricSpec

from .common import (
    ENGINE_NOTE,
    MEMORY_SPECS,
    SETUP_SPECS,
    STAGE_SPECS,
    TOKEN_SPECS,
    request_of,
    setup_metrics,
    timed_setup,
    token_metrics,
    ttft_iteration,
)
from .deployment_ladder import ACCURACY_LIMIT, QUALITY_PROMPTS, RUNGS, expand, plan_of
from .deployment_quality import QUALITY_SPECS, REFERENCE, logprobs, quality, reference_key, rung_accuracy
from .registry import Option, Suite

if TYPE_CHECKING:
    from nvila_bench.core.measuring.point import BenchPoint
    from nvila_bench.core.measuring.session import Session

CALIBRATION_REQUESTS = 2  # synthetic requests like the point's (other seeds than the quality prompts)


def calibration(model, point: BenchPoint):
    """Forward passes for activation-aware scales: the point's kind of request, seeds 1001.."""
    from nvila_bench.model.pipeline import embed

    def run() -> None:
        for seed in range(CALIBRATION_REQUESTS):
            request = request_of(replace(point, seed=1001 + seed, batch_size=1))  # every position through a
            model.prefill(
                embed(model, request), all_logits=point.extra.get("lm_head") == "quantized"
            )  # quantized LM head

    return run


def _model(point: BenchPoint, session: Session, plan: QuantPlan):
    import torch
    from nvila_bench.model import build_model, get_preset
    from nvila_bench.model.quantize import quantize_model

    from nvila_bench.core.measuring.timing import timed_once

    def build():
        model = build_model(get_preset(point.preset), torch.bfloat16, point.device)
        key = reference_key(point)
        if not plan.is_bf16 and key not in REFERENCE:  # a quantized rung on its own: its bf16 logits first, from
            REFERENCE[key] = logprobs(model, point)  # these weights before quantizing (not a second 8B model)
        # calibration + scales + quantization, recorded apart from the engine's compile (`setup_seconds`)
        model.quantize_seconds = timed_once(
            lambda: quantize_model(model, plan, calibration(model, point)), torch.device(point.device)
        )
        return model

    return session.cached(("deployment", point.preset, point.device, plan), build)


def measure_point(point: BenchPoint, session: Session) -> dict[str, Metric]:
    import torch
    from nvila_bench.model.engines import make_engine
    from nvila_bench.model.pipeline import embed
    from nvila_bench.model.quantize import measured_weight_bytes, predicted_weight_bytes

    from nvila_bench.core.measuring.memory import memory_metrics, reset_peak_memory
    from nvila_bench.core.measuring.timing import OneTimeClock, measure

    plan = plan_of(point)
    reason = unavailable(plan, point.device)
    if reason:
        raise PointSkipped(reason)
    device = torch.device(point.device)
    model = _model(point, session, plan)
    if device.type == "cuda":  # the bf16 weights a quantized build freed: not this rung's memory
        torch.cuda.empty_cache()
    reset_peak_memory(device)  # after the build: the peak is the served model's, not its bf16 source's
    request = request_of(point)
    engine = make_engine(point.engine, model, point.cache)
    with torch.inference_mode():
        clock = OneTimeClock(device)
        with timed_setup(
            engine, clock
        ):  # the media stages compile at their first run, in embed: as the prefill suite's
            engine.setup_media()
            embeds = embed(model, request)
            engine.setup_prefill(embeds)
            engine.setup(embeds, point.new_tokens)

        prefill = measure(ttft_iteration(model, request, engine), device, session.measure)
        decode = measure(
            lambda clock: engine.generate(embeds, point.new_tokens, clock.section), device, session.measure
        )
    steps = point.batch_size * (point.new_tokens - 1)
    decode_seconds = [t - p for t, p in zip(decode["total"], decode[LLM_PREFILL])]
    metrics = {"ttft": Metric.timing(prefill["total"])} | {s: Metric.timing(prefill[s]) for s in PREFILL_STAGES}
    metrics |= {
        "tpot": Metric.timing(decode[DECODE_STEP]),
        "decode_tokens_per_s": Metric.rate(decode_seconds, steps, "tokens/s"),
    } | setup_metrics(clock)
    if not plan.is_bf16:
        metrics["quantize_seconds"] = Metric.measured(getattr(model, "quantize_seconds", 0.0), "s", "lower")
    measured, predicted = measured_weight_bytes(model), predicted_weight_bytes(model.config, plan, point.device)
    for c in COMPONENTS:
        metrics[f"{c}_weights_bytes"] = Metric.measured(measured[c], "bytes", "lower")
        metrics[f"{c}_weights_bytes_predicted"] = Metric.analytic(predicted[c], "bytes")
    metrics |= token_metrics(point) | memory_metrics(device) | quality(model, point, plan)
    # Every stage's cost in the plan's weight formats (the decode step at the mean context of its steps).
    context = metrics["sequence_tokens"].value + point.new_tokens // 2
    weights = costmodel.weights_read(model.config, plan, point.device)
    costs = point_costs(point, context, cfg=model.config, weights=weights)
    step = costs["decode_step"]
    metrics["decode_step_bytes"] = Metric.analytic(step.bytes, "bytes")
    peaks = session.peaks_for(point.dtype)
    if peaks:
        metrics["decode_step_floor"] = Metric.analytic(step.bytes / peaks.bandwidth, "s")
        metrics["decode_step_mbu"] = Metric.utilisation(step.bytes / peaks.bandwidth / metrics["tpot"].value, "tpot")
    metrics |= stage_roofline(point, plan, costs, metrics, session)
    if engine.note:
        metrics["engine_note"] = Metric.measured(engine.note, "text")
    if point.extra.get("checkpoint"):
        session.release()  # one model in memory at a time
        metrics |= rung_accuracy(
            point.extra["checkpoint"],
            plan,
            point.device,
            point.extra["accuracy_limit"],
            tuple(point.extra["tasks"]),
            calibration=lambda model: calibration(model, point),
        )
    return metrics


GEMM_DTYPE = {"w8a8-int8": "int8", "w8a8-fp8": "fp8"}  # else the activations' dtype (W4A16 multiplies in bf16)


def stage_roofline(
    point: BenchPoint, plan: QuantPlan, costs: dict, metrics: dict[str, Metric], session: Session
) -> dict[str, Metric]:
    """The vision tower's and the LLM prefill's bytes in the plan's weight formats (`costs`: `request_costs` with
    the quantized weights' bytes), and against the peak of the dtype each one's GEMMs run in (a W8A8 component's
    int8 or fp8 tensor-core peak, core/analysis/hardware.toml; the run's own peak otherwise) their floor and MFU. No
    floor or MFU where that peak is unknown (a CPU, a GPU without fp8)."""
    out = {}
    for stage, component in (("vision", "vision"), ("llm_prefill", "llm")):
        out[f"{stage}_bytes"] = Metric.analytic(costs[stage].bytes, "bytes")
        dtype = GEMM_DTYPE.get(plan.format_of(component), point.dtype)
        peaks = session.peaks_for(dtype)
        if peaks is None or stage not in metrics:
            continue
        out[f"{stage}_floor"] = Metric.analytic(costmodel.time_floor(costs[stage], peaks.flops, peaks.bandwidth), "s")
        out[f"{stage}_mfu"] = Metric.utilisation(
            costmodel.mfu(costs[stage].executed_flops, metrics[stage].value, peaks.flops), stage
        )
        out[f"{stage}_mfu_dtype"] = Metric.analytic(dtype, "text")
        out[f"{stage}_peak_source"] = Metric.analytic(peaks.source, "text")  # a measured ceiling or a datasheet's
    return out


ROOFLINE = (VISION, LLM_PREFILL)  # the stages `stage_roofline` costs in the rung's formats
METRICS = (
    MetricSpec("ttft", "s", "lower", gated=True, headline=True, help="Time to first token of the rung."),
    *STAGE_SPECS,
    MetricSpec("tpot", "s", "lower", gated=True, headline=True, help="Time per output token of the rung."),
    MetricSpec("decode_tokens_per_s", "tokens/s", "higher", gated=True, help="Generated tokens per second."),
    *SETUP_SPECS,
    MetricSpec("quantize_seconds", "s", "lower", help="Calibration, scales and quantization of the rung's weights."),
    *(
        spec
        for c in COMPONENTS
        for spec in (
            MetricSpec(f"{c}_weights_bytes", "bytes", "lower", headline=c == "llm", help=f"The {c}'s weights, stored."),
            MetricSpec(f"{c}_weights_bytes_predicted", "bytes", None, help=f"The {c}'s weights, predicted."),
        )
    ),
    *TOKEN_SPECS,
    *MEMORY_SPECS,
    *QUALITY_SPECS,
    MetricSpec("decode_step_bytes", "bytes", None, help="Cost model: bytes one decode step reads, in these formats."),
    MetricSpec("decode_step_floor", "s", None, help="Roofline floor of one decode step."),
    MetricSpec("decode_step_mbu", "fraction", "higher", help="Share of the peak bandwidth a decode step reached."),
    *(
        spec
        for stage in ROOFLINE
        for spec in (
            MetricSpec(f"{stage}_bytes", "bytes", None, help=f"Cost model: bytes {stage} moves, in these formats."),
            MetricSpec(f"{stage}_floor", "s", None, help=f"Roofline floor of {stage} at its GEMMs' peak."),
            MetricSpec(f"{stage}_mfu", "fraction", "higher", help=f"Share of the peak FLOPs {stage} reached."),
            MetricSpec(f"{stage}_mfu_dtype", "text", None, help=f"The dtype of {stage}'s GEMMs, whose peak MFU uses."),
            MetricSpec(f"{stage}_peak_source", "text", None, help=f"Where {stage}'s peak comes from."),
        )
    ),
    ENGINE_NOTE,
)

SUITE = Suite(
    "deployment",
    "The deployment ladder (paper Figure 5): bf16 scaled-only -> token compression -> W4A16 LLM -> W8A8 ViT, with "
    f"quality; a peer VLM's: bf16 -> W4A16 LLM. Default request: a 1920x1080 image and a 64-frame video, 32 new "
    f"tokens; on cpu {CPU_REQUEST_TEXT}.",
    measure_point,
    view="deployment",  # its report section: reports/views/deployment.py
    options=(
        Option("rung", "Run only these rungs (default: the whole ladder).", tuple(RUNGS), multiple=True),
        Option("media", "Run only this request (default: image and video).", ("image", "video")),
        Option(
            "scales",
            "Weight scales before quantizing: activation-aware (AWQ for int4, SmoothQuant for int8 / "
            "fp8, from calibration requests) or none (round to nearest).",
            SCALES,
            "activation-aware",
        ),
        Option(
            "int4_kernel",
            "The W4A16 rungs' int4 kernel: on CUDA gemlite (Triton GEMV / GEMM; pip install gemlite) "
            "or tinygemm (in PyTorch; pads inputs to 1024s, slow prefill); on CPU opaque (PyTorch's int4 GEMM) or "
            "intx (int8 storage, dequantize + matmul); auto: gemlite where installed, else tinygemm; opaque on CPU.",
            INT4_KERNELS,
            "auto",
        ),
        Option(
            "lm_head",
            "The LM head of the rungs with a quantized LLM: bf16 (the paper's deployment) or quantized "
            "in the LLM's format (a decode step reads the head whole).",
            ("bf16", "quantized"),
            "bf16",
        ),
        Option(
            "quality_prompts",
            "Synthetic requests whose next-token logits are compared with bf16.",
            int,
            QUALITY_PROMPTS,
        ),
        Option(
            "checkpoint",
            "A trained checkpoint (train-synthetic) whose synthetic-task accuracy each NVILA rung reports, quantized "
            "as the rung says.",
        ),
        Option("accuracy_limit", "Questions per task for --checkpoint.", int, ACCURACY_LIMIT),
        Option(
            "tasks",
            "Tasks each rung of --checkpoint is scored on: synthetic (a train-synthetic checkpoint), "
            "paper-image, paper-video (official weights, datasets in the local Hugging Face cache) or lmms-eval "
            "task names, comma-separated.",
            str,
        ),
    ),
    expand=expand,
    decodes=True,
    metrics=METRICS,
)
