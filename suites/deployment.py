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

import importlib.util
import itertools
from dataclasses import replace
from pathlib import Path

import torch
from nvila_bench.model import build_model, get_preset
from nvila_bench.model.engines import make_engine
from nvila_bench.model.gemlite_int4 import DEQUANT_MIN_TOKENS
from nvila_bench.model.pipeline import embed
from nvila_bench.model.presets import is_peer
from nvila_bench.model.quantize import (
    COMPONENTS,
    INT4_KERNELS,
    SCALES,
    QuantPlan,
    int4_kernel,
    measured_weight_bytes,
    predicted_weight_bytes,
    quantize_model,
    unavailable,
)
from nvila_bench.model.stages import DECODE_STEP, LLM_PREFILL, PREFILL_STAGES

from nvila_bench.core.analysis import costmodel
from nvila_bench.core.analysis.fits import device_memory
from nvila_bench.core.measuring import synthetic_tasks as st
from nvila_bench.core.measuring.memory import memory_metrics, reset_peak_memory
from nvila_bench.core.measuring.point import CPU_REQUEST_TEXT, BenchPoint, canonical_dtype, request_default
from nvila_bench.core.measuring.results import Metric, PointSkipped
from nvila_bench.core.measuring.session import Session
from nvila_bench.core.measuring.timing import OneTimeClock, measure, timed_once

from .accuracy import check_checkpoint, check_lmms_tasks, expand_tasks
from .deployment_quality import QUALITY_POSITIONS, REFERENCE, logprobs, quality, reference_key, rung_accuracy
from .prefill import request_of, setup_metrics, timed_setup, token_metrics, ttft_iteration
from .registry import Job, Option, Suite, SuiteError

QUANTIZED = {"llm": "w4a16", "vision": "w8a8-int8"}
RUNGS = {  # name -> (role of the preset, formats)
    "scaled-only bf16": ("scaled_only", {}),
    "bf16": ("nvila", {}),
    "w4a16-llm": ("nvila", {"llm": "w4a16"}),
    "w8a8-vit-int8": ("nvila", QUANTIZED),
    "w8a8-vit-fp8": ("nvila", {"llm": "w4a16", "vision": "w8a8-fp8"}),
    "w8a8-fp8-llm": ("nvila", {"llm": "w8a8-fp8"}),
    "baseline bf16": ("baseline", {}),
    "baseline quantized": ("baseline", QUANTIZED),
}
PEER_RUNGS = ("bf16", "w4a16-llm")  # a peer VLM's ladder: the paper compares NVILA and Qwen2-VL "both with W4A16 LLMs"


def group_size(preset: str) -> int:
    """The largest int4 group (128, 64 or 32) that divides every LLM linear layer's inputs of the preset."""
    llm = get_preset(preset).llm
    widths = (llm.hidden_size, llm.num_heads * llm.head_dim, llm.intermediate_size)
    return next(g for g in (128, 64, 32) if all(w % g == 0 for w in widths))


def plan_of(point: BenchPoint) -> QuantPlan:
    formats = {c: point.extra.get(f"{c}_weights", "bf16") for c in COMPONENTS}
    scales = point.extra.get("scales", "none") if any(f != "bf16" for f in formats.values()) else "none"
    kernel = point.extra.get("int4_kernel", "auto")  # resolved at expand: gemlite / tinygemm on CUDA, opaque on CPU
    return QuantPlan(
        **formats,
        group_size=group_size(point.preset),
        scales=scales,
        int4_kernel=kernel if kernel in INT4_KERNELS else "auto",
        lm_head=point.extra.get("lm_head") == "quantized" and formats["llm"] != "bf16",
    )


GEMLITE_PREFILL = f"dequantize + cuBLAS from {DEQUANT_MIN_TOKENS} tokens"  # recorded: how gemlite layers run a prefill

QUALITY_PROMPTS, ACCURACY_LIMIT = 4, 60  # defaults (checked >= 1 before the run)
CALIBRATION_REQUESTS = 2  # synthetic requests like the point's (other seeds than the quality prompts)


def calibration(model, point: BenchPoint):
    """Forward passes for activation-aware scales: the point's kind of request, seeds 1001.."""

    def run() -> None:
        for seed in range(CALIBRATION_REQUESTS):
            request = request_of(replace(point, seed=1001 + seed, batch_size=1))  # every position through a
            model.prefill(
                embed(model, request), all_logits=point.extra.get("lm_head") == "quantized"
            )  # quantized LM head

    return run


# What a ladder holds fixed (the paper's deployment: batch 1, bf16 activations, STC and TSP as published) and
# what it takes once; a setting outside these is refused rather than silently ignored.
FIXED = {"batch_size": 1, "dtype": "bfloat16", "attn_implementation": "sdpa", "temporal_pool": True}
SINGLE = ("device", "images", "video_frames", "prompt_tokens", "new_tokens", "preprocess", "cache")


def check_settings(axes: dict[str, list], options: dict) -> None:
    for name, fixed in FIXED.items():
        values = {canonical_dtype(v) if name == "dtype" else v for v in axes.get(name) or []}
        if values - {fixed}:
            raise SuiteError(
                f"deployment runs with {name} {fixed} (the paper's deployment), got {', '.join(map(str, values))}"
            )
    for name in SINGLE:
        if len(axes.get(name) or []) > 1:
            raise SuiteError(f"deployment takes one value of {name} (a ladder is one request), got {len(axes[name])}")
    if len(one_image := (axes.get("images") or [((1920, 1080),)])[0]) != 1:
        raise SuiteError(f"deployment's image request has one image, got {len(one_image)}")
    if (axes.get("new_tokens") or [2])[0] < 2:
        raise SuiteError(
            f"deployment needs --new-tokens >= 2 (the first token comes from the prefill), got {axes['new_tokens'][0]}"
        )
    for name in ("quality_prompts", "accuracy_limit"):
        if options.get(name) is not None and options[name] < 1:
            raise SuiteError(f"--{name.replace('_', '-')} must be >= 1, got {options[name]}")
    for preset in axes["preset"]:
        check_quality_prompts(preset, options.get("quality_prompts") or QUALITY_PROMPTS)
    if options.get("tasks") and not options.get("checkpoint"):
        raise SuiteError(
            "--tasks scores each rung of a checkpoint: give --checkpoint DIR (random weights score at chance)"
        )
    if options.get("checkpoint") and options.get("media") == "video":
        raise SuiteError("--checkpoint: accuracy per rung is measured with the image request's rows, not --media video")
    if options.get("checkpoint") and options.get("rung") and all(RUNGS[r][0] != "nvila" for r in options["rung"]):
        raise SuiteError("--checkpoint: accuracy per rung is of NVILA's rungs; --rung lists none")
    if options.get("checkpoint") and importlib.util.find_spec("lmms_eval") is None:
        raise SuiteError("--checkpoint: accuracy per rung needs lmms-eval (pip install 'nvila-bench[eval]')")


def check_quality_prompts(preset: str, prompts: int) -> None:
    """The quality comparison holds a rung's and its bf16 reference's log-probabilities of every prompt's
    QUALITY_POSITIONS positions (float32, on the host) at once: refused when this machine cannot hold them."""
    need = 2 * prompts * QUALITY_POSITIONS * get_preset(preset).llm.vocab_size * 4
    have = device_memory("cpu")
    if have is not None and need > have:
        raise SuiteError(
            f"--quality-prompts {prompts:,}: their log-probabilities need {need / 2**30:,.1f} GiB "
            f"and this machine has {have / 2**30:,.1f} GiB"
        )


def checked_tasks(spec: str) -> list[str]:
    """`--tasks` of the rungs' accuracy: the synthetic multiple-choice tasks (a trained tiny checkpoint) and / or
    the paper's lmms-eval tasks (official weights); unknown names refused before any rung."""
    try:
        tasks = [
            t for t in expand_tasks(spec) if t != "synthetic_colour_gen" or t in spec.split(",")
        ]  # the group: multiple choice
    except ValueError as e:
        raise SuiteError(f"--tasks: {e}") from None
    check_lmms_tasks([t for t in tasks if t not in st.TASKS], "--tasks: ")
    return tasks


def ladders(presets: list[str], options: dict) -> list:
    """The presets whose ladders the run climbs (at most one NVILA preset, first; then the peer VLMs), checked:
    a peer takes `PEER_RUNGS` only and no --checkpoint (a trained NVILA checkpoint's accuracy)."""
    cfgs = [get_preset(p) for p in dict.fromkeys(presets)]
    nvila = [c for c in cfgs if not is_peer(c)]
    if len(nvila) > 1 or any(not c.is_nvila or not c.baseline for c in nvila) or not cfgs:
        raise SuiteError(
            "deployment takes one NVILA --preset (its scaled-only variant and VILA1.5 baseline join the "
            "ladder) and / or peer VLM presets (bf16 and w4a16-llm rungs each)"
        )
    for peer in (c for c in cfgs if is_peer(c)):
        other = [r for r in options.get("rung") or () if r not in PEER_RUNGS]
        if other:
            raise SuiteError(
                f"--rung {other[0]}: a rung of NVILA's ladder only; {peer.name} is a peer VLM (its "
                f"ladder: {', '.join(PEER_RUNGS)}): run that rung without the peer"
            )
        if options.get("checkpoint"):
            raise SuiteError(
                f"--checkpoint scores NVILA's rungs on a trained NVILA checkpoint; {peer.name} is a "
                "peer VLM: run the peer without --checkpoint"
            )
    return nvila + [c for c in cfgs if is_peer(c)]


def expand(axes: dict[str, list], options: dict) -> list[Job]:
    climbs = ladders(axes.get("preset") or [], options)
    check_settings(axes, options)

    def one(name, default):
        return axes[name][0] if axes.get(name) else default

    device = one("device", "cpu")
    cpu = not device.startswith("cuda")  # a request sized for a CPU unless given (CPU_REQUEST)
    image = one("images", request_default("images", ((1920, 1080),), cpu))[0]
    frames = one("video_frames", request_default("video_frames", 64, cpu))
    kernel_plan = QuantPlan(llm="w4a16", int4_kernel=options.get("int4_kernel") or "auto")
    if kernel_plan.int4_kernel != "auto" and unavailable(kernel_plan, device):
        raise SuiteError(f"--int4-kernel {kernel_plan.int4_kernel}: {unavailable(kernel_plan, device)}")
    kernel = int4_kernel(kernel_plan, device)  # recorded, so the ladder keeps two kernels' rows apart
    trained = {}
    if options.get("checkpoint"):  # accuracy per rung: once per rung (image rows), on the trained weights
        if not Path(options["checkpoint"]).is_dir():
            raise SuiteError(f"--checkpoint {options['checkpoint']}: no such directory")
        # its config now, before any rung: the preset's model
        check_checkpoint(options["checkpoint"], "--checkpoint: ", climbs[0].name)
        trained = {
            "checkpoint": str(options["checkpoint"]),
            "accuracy_limit": options.get("accuracy_limit") or ACCURACY_LIMIT,
            "tasks": checked_tasks(options.get("tasks") or "synthetic"),
        }
    jobs = []
    for engine in axes.get("engine") or [
        None
    ]:  # e.g. compiled and hf-static: ours and transformers' on the same weights
        for media, (root, rung) in itertools.product(
            [options["media"]] if options.get("media") else ("image", "video"),
            [(c, r) for c in climbs for r in (PEER_RUNGS if is_peer(c) else RUNGS)],
        ):
            role, formats = RUNGS[rung]
            if options.get("rung") and rung not in options["rung"]:
                continue
            preset = {"scaled_only": root.scaled_only, "nvila": root.name, "baseline": root.baseline}[role]
            if preset is None:  # e.g. NVILA-Lite-2B has no scaled-only variant: that rung is left out
                if options.get("rung"):
                    raise SuiteError(f"--rung {rung}: {root.name} has no {role.replace('_', '-')} variant")
                continue
            if media == "video" and role == "nvila":
                preset = root.video_model or preset
            point = BenchPoint(
                preset,
                device,
                "bfloat16",
                images=(image,) if media == "image" else (),
                video_frames=frames if media == "video" else None,
                prompt_tokens=one("prompt_tokens", 64),
                new_tokens=one("new_tokens", request_default("new_tokens", 32, cpu)),
                engine=engine,
                preprocess=one("preprocess", None),
                cache=one("cache", "dynamic"),  # the eager engine's; the others run their own (ENGINE_CACHE)
                extra={"rung": rung, "media": media}
                | {f"{c}_weights": f for c, f in formats.items()}
                | {"quality_prompts": options.get("quality_prompts") or QUALITY_PROMPTS}
                | ({"scales": options.get("scales") or "activation-aware"} if formats else {})
                | ({"int4_kernel": kernel} if "w4a16" in formats.values() else {})
                | ({"int4_prefill": GEMLITE_PREFILL} if "w4a16" in formats.values() and kernel == "gemlite" else {})
                | ({"lm_head": "quantized"} if options.get("lm_head") == "quantized" and "llm" in formats else {})
                | (trained if role == "nvila" and media == "image" and not is_peer(root) else {}),
            )
            jobs.append(Job("deployment", point))
    return jobs


def _model(point: BenchPoint, session: Session, plan: QuantPlan):
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
    costs = costmodel.request_costs(
        model.config,
        point.images,
        point.video_frames,
        point.temporal_pool,
        point.prompt_tokens,
        context=context,
        batch=point.batch_size,
        dtype=point.dtype,
        weights=costmodel.weights_read(model.config, plan, point.device),
    )
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


SUITE = Suite(
    "deployment",
    "The deployment ladder (paper Figure 5): bf16 scaled-only -> token compression -> W4A16 LLM -> W8A8 ViT, with "
    f"quality; a peer VLM's: bf16 -> W4A16 LLM. Default request: a 1920x1080 image and a 64-frame video, 32 new "
    f"tokens; on cpu {CPU_REQUEST_TEXT}.",
    measure_point,
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
)
