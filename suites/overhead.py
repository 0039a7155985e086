"""Harness overhead: what the timing machinery itself costs, next to what it measures.

The harness cost of one iteration is measured by running `timing.measure` on an iteration that does no
work but takes the same laps as a prefill iteration (clock start, one event / timestamp per stage, the
synchronize, reading the laps back, appending the samples). Divided by the median TTFT of a real prefill
point, it is the fraction of every reported TTFT that is harness, not model.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from nvila_bench.model.stages import PREFILL_STAGES

from nvila_bench.core.measuring.results import Metric
from nvila_bench.core.measuring.specs import MetricSpec
from nvila_bench.core.measuring.stats import summarize

from .common import measure_ttft
from .registry import Suite

if TYPE_CHECKING:
    import torch

    from nvila_bench.core.measuring.point import BenchPoint
    from nvila_bench.core.measuring.session import Session


def harness_seconds_per_iteration(device: torch.device, laps: int, iterations: int = 2000) -> list[float]:
    """Wall time of `iterations` empty iterations with `laps` laps each, in 20 batches (seconds / iteration)."""
    from nvila_bench.core.measuring.timing import MeasureConfig, measure

    def empty(clock) -> None:
        for i in range(laps):
            clock.lap(PREFILL_STAGES[i % len(PREFILL_STAGES)])

    per_batch = iterations // 20
    cfg = MeasureConfig(warmup=0, repeats=per_batch, min_seconds=0, max_repeats=per_batch)
    out = []
    for _ in range(20):
        began = time.perf_counter()
        measure(empty, device, cfg)
        out.append((time.perf_counter() - began) / per_batch)
    return out


def measure_point(point: BenchPoint, session: Session) -> dict[str, Metric]:
    import torch

    harness = summarize(harness_seconds_per_iteration(torch.device(point.device), len(PREFILL_STAGES)), "s")
    ttft = Metric.timing(measure_ttft(point, session).samples["total"])  # a real prefill point's, as the suite's
    return {
        "harness_per_iteration": Metric(harness.median, "s", better="lower", summary=harness.to_dict()),
        "ttft": ttft,
        "overhead_fraction": Metric.measured(harness.median / ttft.value, "fraction", "lower"),
    }


METRICS = (
    MetricSpec(
        "overhead_fraction", "fraction", "lower", headline=True, help="The harness's share of a prefill point's TTFT."
    ),
    MetricSpec("harness_per_iteration", "s", "lower", headline=True, help="The timing harness's own cost per request."),
    # Not gated: a prefill point's TTFT, measured here as the denominator (the prefill suite's TTFT is the figure).
    MetricSpec("ttft", "s", "lower", help="TTFT of the same point, the fraction's denominator."),
)

SUITE = Suite(
    "overhead",
    "The timing harness's own cost per iteration, as a fraction of TTFT.",
    measure_point,
    metrics=METRICS,
)
