"""The `profile` suite's report view (`nvila-bench profile`): time per stage, top operators, the profiler's
overhead, GPU memory, and where the traces are."""

from __future__ import annotations

from nvila_bench.core.measuring.results import Record

from ..records import hardware_of, point_name, value

TITLE = "Profile"  # the page's navigation
ANCHOR = "profile"  # the section's id


def profiles(records: list[Record]) -> dict:
    """`nvila-bench profile` records: time per stage, top operators, the profiler's overhead, GPU memory."""

    def gflop(rows):
        return [r | {"gflop": None if r["flops"] is None else r["flops"] / 1e9} for r in rows]

    rows = []
    for r in records:
        if r.suite != "profile" or not r.ok:
            continue
        rows.append(
            {
                "label": point_name(r),
                "stage": r.extra.get("stage"),
                "hardware": hardware_of(r),
                "stages": gflop(value(r, "stage_times") or []),
                "top_ops": gflop(value(r, "top_ops") or []),
                "profiled": value(r, "profiled_step_time"),
                "unprofiled": value(r, "unprofiled_step_time"),
                "overhead": value(r, "profiler_overhead"),
                "trace": value(r, "chrome_trace"),
                "tensorboard": value(r, "tensorboard_dir"),
                "snapshot": value(r, "memory_snapshot"),
                "peak": value(r, "peak_memory_allocated"),
                "breakdown": value(r, "peak_memory_breakdown") or {},
                "cuda": any(s.get("self_cuda_s") is not None for s in value(r, "stage_times") or []),
            }
        )
    return {
        "rows": rows,
        "command": "nvila-bench profile --preset nvila-tiny --stage prefill --image 1920x1080 --out out/",
    }


def build(records: list[Record]) -> dict:
    return profiles(records)
