"""Harness overhead: what the timing machinery itself costs, next to what it measures.

The harness cost of one iteration is measured by running `timing.measure` on an iteration that does no
work but takes the same laps as a prefill iteration (clock start, one event / timestamp per stage, the
synchronize, reading the laps back, appending the samples). Divided by the median TTFT of a real prefill
point, it is the fraction of every reported TTFT that is harness, not model.
"""

from __future__ import annotations

import time

import torch

from nvila_bench.core.point import BenchPoint
from nvila_bench.core.results import metric
from nvila_bench.core.stats import summarize
from nvila_bench.core.timing import MeasureConfig, StageClock, measure

from . import prefill
from .common import Session


def harness_seconds_per_iteration(device: torch.device, laps: int, iterations: int = 2000) -> list[float]:
    """Wall time of `iterations` empty iterations with `laps` laps each, in 20 batches (seconds / iteration)."""

    def empty(clock: StageClock) -> None:
        for i in range(laps):
            clock.lap(prefill.STAGES[i % len(prefill.STAGES)])

    per_batch = iterations // 20
    cfg = MeasureConfig(warmup=0, repeats=per_batch, min_seconds=0, max_repeats=per_batch)
    out = []
    for _ in range(20):
        began = time.perf_counter()
        measure(empty, device, cfg)
        out.append((time.perf_counter() - began) / per_batch)
    return out


def run(point: BenchPoint, mcfg: MeasureConfig, session: Session) -> dict:
    device = torch.device(point.device)
    harness = summarize(harness_seconds_per_iteration(device, len(prefill.STAGES)), "s")
    ttft = prefill.run(point, mcfg, session)["ttft"]
    return {
        "harness_per_iteration": metric(harness.median, "s", summary=harness.to_dict()),
        "ttft": ttft,
        "overhead_fraction": metric(harness.median / ttft["value"], "fraction"),
    }
