"""The scale-then-compress comparison (paper §2, Table 1): for one image and one video, side by side,

    baseline       VILA1.5-8B: one 384 px tile, 196 tokens per image / frame
    scaled only    NVILA-8B with compression removed: Dynamic-S2 tiles, 1x1 projector, no TSP
    NVILA          NVILA-8B as published: Dynamic-S2 + 2x2 STC (image), NVILA-8B-Video with TSP (video)

Every variant gets an analytic record (tokens, FLOPs, bytes, time floors on the named hardware). Where
the hardware allows (a GPU, or the tiny stand-ins on CPU) it also gets measured prefill and decode records
from the regular suites, marked with the same `comparison` / `variant` / `media` settings.
"""

from __future__ import annotations

from nvila_bench.core import costmodel
from nvila_bench.core.hardware import get_hardware
from nvila_bench.model import count_visual_tokens, get_preset
from nvila_bench.core.point import BenchPoint
from nvila_bench.core.results import make_record, metric

VARIANTS = {  # variant -> (image preset, video preset)
    "real": {
        "baseline": ("vila1.5-8b", "vila1.5-8b"),
        "scaled-only": ("nvila-8b-scaled-only", "nvila-8b-scaled-only"),
        "nvila": ("nvila-8b", "nvila-8b-video"),
    },
    "tiny": {
        "baseline": ("vila-tiny", "vila-tiny"),
        "scaled-only": ("nvila-tiny-scaled-only", "nvila-tiny-scaled-only"),
        "nvila": ("nvila-tiny", "nvila-video-tiny"),
    },
}


def comparison_points(
    scale: str, image: tuple[int, int], video_frames: int, device: str, dtype: str | None, prompt_tokens: int,
    new_tokens: int,
) -> list[BenchPoint]:
    """Six points: each variant on the image request and on the video request."""
    points = []
    for media in ("image", "video"):
        for variant, presets in VARIANTS[scale].items():
            preset = presets[0] if media == "image" else presets[1]
            points.append(
                BenchPoint(
                    preset, device, dtype,
                    images=(image,) if media == "image" else (),
                    video_frames=video_frames if media == "video" else None,
                    prompt_tokens=prompt_tokens, new_tokens=new_tokens,
                    extra={"comparison": "scale-then-compress", "variant": variant, "media": media},
                )
            )  # fmt: skip
    return points


def analytic_record(point: BenchPoint, hardware: str, run_id: str) -> dict:
    """Tokens, per-stage cost and time floors of one variant on a named hardware entry."""
    cfg = get_preset(point.preset)
    hw = get_hardware(hardware)
    count = count_visual_tokens(cfg, point.images, point.video_frames, point.temporal_pool)
    n = count.total_tokens + point.prompt_tokens
    costs = costmodel.request_costs(
        cfg, point.images, point.video_frames, point.temporal_pool, point.prompt_tokens, context=n,
        batch=point.batch_size, dtype=point.dtype,
    )  # fmt: skip
    floors = {s: costmodel.time_floor(c, hw.peak_flops(point.dtype), hw.bandwidth) for s, c in costs.items()}
    metrics = {
        "visual_tokens": metric(count.visual_tokens, "tokens", "analytic"),
        "media_tokens": metric(count.total_tokens, "tokens", "analytic"),
        "vit_tiles": metric(count.vit_tiles, "tiles", "analytic"),
        "ttft_floor": metric(floors["vision"] + floors["projector"] + floors["llm_prefill"], "s", "analytic"),
        "tpot_floor": metric(floors["decode_step"], "s", "analytic"),
        "kv_cache_bytes": metric(costmodel.kv_cache_bytes(cfg, n, point.batch_size, point.dtype), "bytes", "analytic"),
        "context_limit": metric(cfg.llm.max_position_embeddings, "tokens", "analytic"),
    }
    for stage, cost in costs.items():
        metrics[f"{stage}_flops"] = metric(cost.flops, "FLOP", "analytic")
        metrics[f"{stage}_bytes"] = metric(cost.bytes, "bytes", "analytic")
        metrics[f"{stage}_floor"] = metric(floors[stage], "s", "analytic")
    config = point.to_config() | {"hardware": hardware}
    return make_record("scale-then-compress", config, metrics, run_id, provenance="analytic")
