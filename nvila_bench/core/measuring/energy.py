"""GPU energy of a measured region, from NVML's total-energy counter.

`nvmlDeviceGetTotalEnergyConsumption` is a monotonic counter of millijoules since the driver loaded (Volta
and newer). Reading it before and after a region gives the energy the whole board drew over it, idle
power included, so joules per token = energy / tokens processed in the region, and average power =
energy / wall time. The counter updates every few tens of milliseconds: meter regions of a second or more
(the suites' `--min-seconds`), never a single short step.

Without a GPU, without pynvml or on a GPU without the counter, `EnergyMeter.open` returns None and the
records carry no energy fields at all (absent, never zero).
"""

from __future__ import annotations

import time

import torch

from nvila_bench.core.measuring.results import Metric


class EnergyMeter:
    """Context manager around a measured region: `joules` and `seconds` are set on exit (summed over the
    regions when entered several times)."""

    def __init__(self, nvml_index: int):
        self.nvml_index = nvml_index
        self.joules: float | None = None
        self.seconds: float | None = None

    @classmethod
    def open(cls, device: torch.device | str) -> EnergyMeter | None:
        """A meter for `device`, or None when it is not a CUDA device or NVML cannot read its energy."""
        device = torch.device(device)
        if device.type != "cuda" or not torch.cuda.is_available():
            return None
        try:
            import pynvml  # nvidia-ml-py; imported here so CPU-only machines never need it

            from nvila_bench.core.measuring.env import _visible_indices

            pynvml.nvmlInit()
        except Exception:
            return None
        try:  # CUDA ordinal -> NVML index (NVML ignores CUDA_VISIBLE_DEVICES)
            ordinal = device.index if device.index is not None else torch.cuda.current_device()
            index = _visible_indices(pynvml)[ordinal]
            pynvml.nvmlDeviceGetTotalEnergyConsumption(
                pynvml.nvmlDeviceGetHandleByIndex(index)
            )  # pre-Volta: unsupported
        except Exception:
            return None
        finally:
            pynvml.nvmlShutdown()
        return cls(index)

    def __enter__(self) -> EnergyMeter:
        import pynvml

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.nvml_index)
        self._start = (pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle), time.perf_counter())
        return self

    def __exit__(self, *exc) -> None:
        try:
            millijoules = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
            self.seconds = (self.seconds or 0.0) + time.perf_counter() - self._start[1]
            self.joules = (self.joules or 0.0) + (millijoules - self._start[0]) / 1e3
        finally:
            self._nvml.nvmlShutdown()


def energy_metrics(meter: EnergyMeter | None, tokens: int) -> dict:
    """`energy_j`, `joules_per_token` and `avg_power_w` of a finished meter; {} without one (no GPU / NVML)."""
    if meter is None or meter.joules is None or not meter.seconds:
        return {}
    return {
        "energy_j": Metric.measured(meter.joules, "J", "lower"),
        "joules_per_token": Metric.measured(meter.joules / tokens, "J/token", "lower"),
        "avg_power_w": Metric.measured(meter.joules / meter.seconds, "W"),
    }
