"""Peak memory readings: the allocator's peaks on a GPU, the process's peak RSS on a CPU."""

from __future__ import annotations

import resource
import sys

import torch

from nvila_bench.core.measuring.results import Metric


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def memory_metrics(device: torch.device) -> dict[str, Metric]:
    """Peak device memory on GPU; on CPU the process's peak RSS (lifetime, so an upper bound)."""
    if device.type == "cuda":
        return {
            "peak_memory_allocated": Metric.measured(torch.cuda.max_memory_allocated(device), "bytes", "lower", "max"),
            "peak_memory_reserved": Metric.measured(torch.cuda.max_memory_reserved(device), "bytes", "lower", "max"),
        }
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is KiB on Linux
    return {
        "peak_rss": Metric.measured(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, "bytes", "lower", "max")
    }
