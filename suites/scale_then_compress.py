"""The scale-then-compress comparison (paper Table 1, docs/reference.md#accuracy): for one image and one video,
side by side,

    baseline       the preset's VILA1.5 baseline: one 384 px tile, 196 tokens per image / frame
    scaled only    NVILA with compression removed: Dynamic-S2 tiles, 1x1 projector, no TSP
    NVILA          NVILA as published: Dynamic-S2 + 2x2 STC (image), its video model with TSP (video)

The variants come from the presets' roles (`NVILAConfig.baseline`, `.scaled_only`, `.video_model`), for the
real models or (`--tiny`) their CPU-sized stand-ins. Every variant gets an analytic record (tokens, FLOPs,
bytes, time floors on `--hardware`). Where the hardware allows (a GPU, or the tiny stand-ins on CPU) it also
gets measured prefill and decode records from those suites, marked with the same `comparison` / `variant` /
`media` settings.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from nvila_bench.model import count_visual_tokens, get_preset

from nvila_bench.core.analysis import costmodel
from nvila_bench.core.analysis.analytic import point_costs
from nvila_bench.core.analysis.hardware import get_hardware, hardware_keys
from nvila_bench.core.measuring.point import CPU_REQUEST_TEXT, BenchPoint, request_default
from nvila_bench.core.measuring.results import Metric
from nvila_bench.core.measuring.specs import MetricSpec

from .common import COST_STAGES, TOKEN_SPECS, cost_specs
from .registry import Job, Option, Suite, SuiteError

if TYPE_CHECKING:
    from nvila_bench.core.measuring.session import Session

NVILA = {"real": "nvila-8b", "tiny": "nvila-tiny"}


def variants(nvila: str) -> dict[str, tuple[str, str]]:
    """variant -> (image preset, video preset), from the NVILA preset's roles."""
    cfg = get_preset(nvila)
    return {
        "baseline": (cfg.baseline, cfg.baseline),
        "scaled-only": (cfg.scaled_only, cfg.scaled_only),
        "nvila": (cfg.name, cfg.video_model),
    }


def comparison_points(
    scale: str,
    image: tuple[int, int],
    video_frames: int,
    device: str,
    dtype: str | None,
    prompt_tokens: int,
    new_tokens: int,
) -> list[BenchPoint]:
    """Six points: each variant on the image request and on the video request."""
    points = []
    for media in ("image", "video"):
        for variant, presets in variants(NVILA[scale]).items():
            points.append(
                BenchPoint(
                    presets[0] if media == "image" else presets[1],
                    device,
                    dtype,
                    images=(image,) if media == "image" else (),
                    video_frames=video_frames if media == "video" else None,
                    prompt_tokens=prompt_tokens,
                    new_tokens=new_tokens,
                    extra={"comparison": "scale-then-compress", "variant": variant, "media": media},
                )
            )
    return points


def expand(axes: dict[str, list], options: dict) -> list[Job]:
    """Analytic jobs for every variant; prefill and decode jobs where they can be measured."""
    single = ("images", "video_frames", "dtype", "prompt_tokens", "new_tokens")
    if any(len(axes.get(name, ())) > 1 for name in single):
        raise SuiteError(
            "scale-then-compress takes one --image, --video-frames, --dtype, --prompt-tokens, --new-tokens"
        )

    def one(name, default):
        return axes[name][0] if axes.get(name) else default

    device = one("device", "cpu")
    tiny = bool(options.get("tiny"))
    cpu = tiny and not device.startswith("cuda")  # measured on a CPU: a request sized for it unless given
    image = one("images", request_default("images", ((1920, 1080),), cpu))[0]
    hardware = options.get("hardware") or "h100-sxm"
    if hardware not in hardware_keys():
        raise SuiteError(f"unknown hardware {hardware!r}; known: {', '.join(hardware_keys())}")
    comparison = comparison_points(
        "tiny" if tiny else "real",
        image,
        one("video_frames", request_default("video_frames", 32, cpu)),
        device,
        one("dtype", None),
        one("prompt_tokens", 64),
        one("new_tokens", request_default("new_tokens", 32, cpu)),
    )
    # The analytic figures are of the deployment dtype unless one is given.
    analytic_dtype = one("dtype", "bfloat16")
    jobs = [
        Job("scale-then-compress", replace(p, dtype=analytic_dtype, extra=p.extra | {"hardware": hardware}))
        for p in comparison
    ]
    if tiny or device.startswith("cuda"):
        jobs += [Job(suite, p) for suite in ("prefill", "decode") for p in comparison]
    return jobs


def analytic(point: BenchPoint, session: Session) -> dict[str, Metric]:
    """Tokens, per-stage cost and time floors of one variant on a named hardware entry."""
    cfg = get_preset(point.preset)
    hw = get_hardware(point.extra["hardware"])
    count = count_visual_tokens(cfg, point.images, point.video_frames, point.temporal_pool)
    n = count.total_tokens + point.prompt_tokens
    costs = point_costs(point, context=n, cfg=cfg)
    floors = {s: costmodel.time_floor(c, hw.peak_flops(point.dtype), hw.bandwidth) for s, c in costs.items()}
    metrics = {
        "visual_tokens": Metric.analytic(count.visual_tokens, "tokens"),
        "media_tokens": Metric.analytic(count.total_tokens, "tokens"),
        "vit_tiles": Metric.analytic(count.vit_tiles, "tiles"),
        "ttft_floor": Metric.analytic(floors["vision"] + floors["projector"] + floors["llm_prefill"], "s"),
        "tpot_floor": Metric.analytic(floors["decode_step"], "s"),
        "kv_cache_bytes": Metric.analytic(costmodel.kv_cache_bytes(cfg, n, point.batch_size, point.dtype), "bytes"),
        "context_limit": Metric.analytic(cfg.llm.max_position_embeddings, "tokens"),
    }
    for stage, cost in costs.items():
        metrics[f"{stage}_flops"] = Metric.analytic(cost.flops, "FLOP")
        metrics[f"{stage}_bytes"] = Metric.analytic(cost.bytes, "bytes")
        metrics[f"{stage}_floor"] = Metric.analytic(floors[stage], "s")
    return metrics


def record_config(point: BenchPoint) -> dict:
    """As version 1 stored it: the hardware entry at the top of the settings, not in `extra`."""
    extra = {k: v for k, v in point.extra.items() if k != "hardware"}
    return replace(point, extra=extra).to_config() | {"hardware": point.extra["hardware"]}


METRICS = (  # every figure analytic: the cost model's on --hardware (the measured records are prefill's and decode's)
    *(replace(spec, headline=spec.name == "media_tokens") for spec in TOKEN_SPECS if spec.name != "sequence_tokens"),
    MetricSpec("ttft_floor", "s", None, headline=True, help="Roofline floor of TTFT: vision, projector, prefill."),
    MetricSpec("tpot_floor", "s", None, headline=True, help="Roofline floor of one decode step."),
    MetricSpec("kv_cache_bytes", "bytes", None, help="The KV cache of the request's context."),
    MetricSpec("context_limit", "tokens", None, help="The LLM's context window."),
    *cost_specs(COST_STAGES, executed=False),
)

SUITE = Suite(
    "scale-then-compress",
    "VILA1.5 vs NVILA scaled-only vs NVILA on one image and one video: analytic, and measured where possible.",
    analytic,
    view="scale_then_compress",  # its report section: reports/views/scale_then_compress.py
    options=(
        Option(
            "tiny",
            "The tiny stand-ins, measurable on CPU (analytic floors: --hardware, default h100-sxm). Default request: "
            f"a 1920x1080 image, a 32-frame video, 32 new tokens; with --tiny on cpu {CPU_REQUEST_TEXT}.",
            bool,
            False,
        ),
    ),
    expand=expand,
    provenance="analytic",
    config=record_config,
    takes_presets=False,
    metrics=METRICS,
)
