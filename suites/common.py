"""What the latency suites share: a model cache across sweep points, the synthetic request of a point,
peak-memory readings, and the analytic figures (cost model, time floor, MFU / MBU) put beside them."""

from __future__ import annotations

import gc
import resource
import sys
from dataclasses import dataclass

import torch
from PIL import Image

from nvila_bench.core import costmodel
from nvila_bench.model import build_model, get_preset, synthetic_image, synthetic_prompt, synthetic_video
from nvila_bench.model.nvila import NVILAModel
from nvila_bench.core.point import BenchPoint
from nvila_bench.core.results import metric
from nvila_bench.core.stats import bounded_samples, summarize


@dataclass(frozen=True)
class Peaks:
    """Peak FLOP/s and bytes/s the analytic floor uses, and where they come from."""

    flops: float
    bandwidth: float
    source: str  # e.g. "table:h100-sxm" or "measured:ceilings.json"


class Session:
    """Keeps the last model built, so a sweep over inputs reuses it; a new preset frees the old one first.
    Also holds the peaks of each dtype the sweep runs (None where no peak is known)."""

    def __init__(self, peaks: dict[str, Peaks | None] | None = None):
        self.peaks = peaks or {}
        self._key = None
        self._model: NVILAModel | None = None

    def peaks_for(self, dtype: str) -> Peaks | None:
        return self.peaks.get(dtype)

    def model(self, point: BenchPoint) -> NVILAModel:
        key = (point.preset, point.device, point.dtype, point.attn_implementation)
        if key != self._key:
            self.release()
            self._model = build_model(get_preset(point.preset), point.torch_dtype, point.device, point.attn_implementation)
            self._key = key
        return self._model

    def release(self) -> None:
        self._model, self._key = None, None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


@dataclass
class Request:
    images: list[Image.Image]
    video: list[Image.Image] | None
    input_ids: torch.Tensor  # (batch, prompt length) with one placeholder per medium


def build_request(point: BenchPoint) -> Request:
    """Synthetic images / frames of the point's sizes (decoded once, outside the timed region) and a prompt
    of `prompt_tokens` text tokens after the media placeholders, repeated `batch_size` times."""
    cfg = get_preset(point.preset)
    images = [synthetic_image(w, h, seed=point.seed + i) for i, (w, h) in enumerate(point.images)]
    video = synthetic_video(point.video_frames, seed=point.seed) if point.video_frames else None
    ids = synthetic_prompt(cfg, len(images), video is not None, point.prompt_tokens, point.seed)
    return Request(images, video, ids.expand(point.batch_size, -1).contiguous())


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def memory_metrics(device: torch.device) -> dict:
    """Peak device memory on GPU; on CPU the process's peak RSS (lifetime, so an upper bound)."""
    if device.type == "cuda":
        return {
            "peak_memory_allocated": metric(torch.cuda.max_memory_allocated(device), "bytes"),
            "peak_memory_reserved": metric(torch.cuda.max_memory_reserved(device), "bytes"),
        }
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is KiB on Linux
    return {"peak_rss": metric(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, "bytes")}


def timing_metric(samples: list[float], unit: str = "s") -> dict:
    summary = summarize(samples, unit)
    return metric(summary.median, unit, summary=summary.to_dict(), samples=bounded_samples(samples))


def analytic_metrics(point: BenchPoint, metrics: dict, timed: dict[str, str], peaks: Peaks | None, context: int | None = None) -> dict:
    """Cost-model FLOPs and bytes per stage; with peaks, the time floor, and the MFU / MBU of each stage in
    `timed` (cost-model stage -> name of the measured metric holding its median). MFU / MBU record that
    name under "of", so merging runs can rescale them to the merged median."""
    cfg = get_preset(point.preset)
    costs = costmodel.request_costs(
        cfg, point.images, point.video_frames, point.temporal_pool, point.prompt_tokens,
        context=context, batch=point.batch_size, dtype=point.dtype,
    )  # fmt: skip
    out = {}
    for stage, cost in costs.items():
        out[f"{stage}_flops"] = metric(cost.flops, "FLOP", "analytic")
        out[f"{stage}_bytes"] = metric(cost.bytes, "bytes", "analytic")
        if peaks is None:
            continue
        out[f"{stage}_floor"] = metric(costmodel.time_floor(cost, peaks.flops, peaks.bandwidth), "s", "analytic")
        if stage in timed:
            seconds = metrics[timed[stage]]["value"]
            out[f"{stage}_mfu"] = metric(costmodel.mfu(cost.flops, seconds, peaks.flops), "fraction") | {"of": timed[stage]}
            out[f"{stage}_mbu"] = metric(costmodel.mbu(cost.bytes, seconds, peaks.bandwidth), "fraction") | {"of": timed[stage]}
    if peaks is not None:
        out["peaks_source"] = metric(peaks.source, "text", "analytic")
        out["peak_flops"] = metric(peaks.flops, "FLOP/s", "analytic")
        out["peak_bandwidth"] = metric(peaks.bandwidth, "bytes/s", "analytic")
    return out


def resolve_peaks(device: str, dtype: str, hardware: str | None = None, ceilings: str | None = None) -> Peaks | None:
    """Peaks for the analytic floor, best source first: measured ceilings (a ceilings.json from
    `nvila-bench ceilings` on this device kind and dtype), a named hardware entry, the table entry
    matching the current GPU's name. None on a CPU with no measured ceilings of the run's dtype."""
    from nvila_bench.core.hardware import get_hardware, load_ceilings, match_hardware

    measured = load_ceilings(ceilings) if ceilings else None
    same_kind = measured and str(measured.get("device", "")).split(":")[0] == device.split(":")[0]
    if same_kind and measured.get("dtype") == dtype:  # a bf16 GEMM rate is no ceiling for an fp32 run
        return Peaks(measured["gemm_tflops"] * 1e12, measured["copy_gbs"] * 1e9, f"measured:{ceilings}")
    entry = get_hardware(hardware) if hardware else None
    if entry is None and device.startswith("cuda") and torch.cuda.is_available():
        entry = match_hardware(torch.cuda.get_device_name(torch.device(device)))
    if entry is None:
        return None
    try:
        return Peaks(entry.peak_flops(dtype), entry.bandwidth, f"table:{entry.key}")
    except ValueError:  # no tensor-core peak for this dtype (e.g. float32): no floor rather than a wrong one
        return None
