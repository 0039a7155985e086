"""The cost model's figures beside a measured point: FLOPs and bytes per stage, and with known peaks the
time floor and the MFU / MBU of each timed stage.

`{stage}_flops` are model FLOPs (full N x N attention); `{stage}_executed_flops` are what a causal kernel runs
(the LLM's attention counted once per kept key). The floor and MFU use executed FLOPs, so a causal prefill
cannot show an MFU above 1 from FLOPs it never ran; `flops_convention` says so in the record."""

from __future__ import annotations

from nvila_bench.core.analysis import costmodel
from nvila_bench.core.analysis.hardware import Peaks
from nvila_bench.core.measuring.point import BenchPoint
from nvila_bench.core.measuring.results import Metric
from nvila_bench.model import get_preset


def point_costs(point: BenchPoint, context: int | None, cfg=None, weights: dict[str, int] | None = None) -> dict:
    """costmodel.request_costs of a point's request (`cfg`: the model's config, default the point's preset)."""
    return costmodel.request_costs(
        cfg or get_preset(point.preset),
        point.images,
        point.video_frames,
        point.temporal_pool,
        point.prompt_tokens,
        context=context,
        batch=point.batch_size,
        dtype=point.dtype,
        weights=weights,
    )


def analytic_metrics(
    point: BenchPoint,
    metrics: dict[str, Metric],
    timed: dict[str, str],
    peaks: Peaks | None,
    context: int | None = None,
) -> dict[str, Metric]:
    """Cost-model FLOPs and bytes per stage; with peaks, the time floor, and the MFU / MBU of each stage in
    `timed` (cost-model stage -> name of the measured metric holding its median). MFU / MBU are derived from
    that metric, so merging runs rescales them to the merged median."""
    costs = point_costs(point, context)
    out = {"flops_convention": Metric.analytic(costmodel.FLOPS_CONVENTION, "text")}
    for stage, cost in costs.items():
        out[f"{stage}_flops"] = Metric.analytic(cost.flops, "FLOP")
        out[f"{stage}_executed_flops"] = Metric.analytic(cost.executed_flops, "FLOP")
        out[f"{stage}_bytes"] = Metric.analytic(cost.bytes, "bytes")
        if peaks is None:
            continue
        out[f"{stage}_floor"] = Metric.analytic(costmodel.time_floor(cost, peaks.flops, peaks.bandwidth), "s")
        if stage in timed:
            seconds = metrics[timed[stage]].value
            mfu = costmodel.mfu(cost.executed_flops, seconds, peaks.flops)  # FLOPS_CONVENTION
            out[f"{stage}_mfu"] = Metric.utilisation(mfu, timed[stage])
            out[f"{stage}_mbu"] = Metric.utilisation(costmodel.mbu(cost.bytes, seconds, peaks.bandwidth), timed[stage])
    if peaks is not None:
        out["peaks_source"] = Metric.analytic(peaks.source, "text")
        out["peak_flops"] = Metric.analytic(peaks.flops, "FLOP/s")
        out["peak_bandwidth"] = Metric.analytic(peaks.bandwidth, "bytes/s")
    return out
