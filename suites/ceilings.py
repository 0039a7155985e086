"""Measured ceilings: what this device actually reaches on a square dense GEMM and on a device-to-device copy.

The datasheet peaks in core/analysis/hardware.toml are paper numbers; these are the rates a plain `torch.matmul` and a
`copy_` really reach here, a more honest utilisation denominator. `nvila-bench ceilings` saves them as
ceilings.json (`core.analysis.hardware.save_ceilings`), which `core.analysis.hardware.resolve_peaks` prefers to the
table.
Timed with the core harness (`core.measuring.timing.measure`) like every other measurement: each iteration runs a batch
of calls and laps once, the batch long enough that the clock's own cost is lost in the noise.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
from typing import Callable

import torch

from nvila_bench.core.measuring.env import cpu_model
from nvila_bench.core.measuring.timing import MeasureConfig, StageClock, measure

_GEMM_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
_SLOW_CPU_FACTOR = 2.0  # a half-precision CPU matmul this much slower than float32 is emulated, not native
_COPY_BYTES_PER_GEMM_ELEMENT = 64  # copy buffer = 64 * size^2 bytes: 1 GiB at size 4096, far beyond any L2

# One timed iteration lasts about this long: the clock costs ~10 us per iteration on GPU (the first launch
# after the start event) and ~1 us on CPU, 0.1% or less of it.
_ITERATION_SECONDS = 0.01
_MIN_ITERATIONS = 5  # a short `seconds` shortens the iterations rather than timing one or two of them
_MAX_CALLS = 1 << 20  # batch cap, for a call too fast for the clock to see
_STAGE = "batch"
SIZES = (16, 16384)  # the copy's two buffers take 2 x 64 * size^2 bytes: 32 GiB at 16384


def measure_ceilings(device: str = "cpu", dtype: str = "bfloat16", size: int = 4096, seconds: float = 1.0) -> dict:
    """What this device actually reaches on a square dense GEMM and on a device-to-device copy.

    GEMM: FLOPs = 2 * size^3 per matmul. Copy: `copy_bytes` counts both the read and the write of the buffer
    (2 x buffer size), the convention of bandwidth datasheets. On CPU, half precision falls back to float32
    when the CPU has no fast path for it; `dtype` records the dtype actually used.
    """
    if dtype not in _GEMM_DTYPES:
        raise ValueError(f"unsupported GEMM dtype {dtype!r}; known: {', '.join(_GEMM_DTYPES)}")
    if not SIZES[0] <= size <= SIZES[1]:
        raise ValueError(f"--size {size}: must be in {SIZES[0]}..{SIZES[1]}")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"--seconds {seconds}: must be a positive finite number")
    dev = torch.device(device)
    used = _GEMM_DTYPES[dtype] if dev.type != "cpu" else _cpu_gemm_dtype(_GEMM_DTYPES[dtype], size)
    gemm_tflops = _gemm_rate(dev, used, size, seconds) / 1e12
    buffer_bytes = _COPY_BYTES_PER_GEMM_ELEMENT * size * size
    copy_gbs = _copy_rate(dev, buffer_bytes, seconds) / 1e9
    return {
        "device": device,
        "dtype": str(used).removeprefix("torch."),
        "gemm_tflops": gemm_tflops,
        "gemm_size": size,
        "copy_gbs": copy_gbs,
        "copy_bytes": 2 * buffer_bytes,
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device_name": _device_name(dev),
    }


def _cpu_gemm_dtype(dtype: torch.dtype, size: int) -> torch.dtype:
    """`dtype`, or float32 when this CPU runs `dtype` matmuls far slower (emulated, as without AMX/AVX512-BF16)."""
    if dtype == torch.float32:
        return dtype
    cpu, probe, probe_seconds = torch.device("cpu"), min(size, 512), 0.05
    half = _gemm_rate(cpu, dtype, probe, probe_seconds)
    single = _gemm_rate(cpu, torch.float32, probe, probe_seconds)
    return torch.float32 if half * _SLOW_CPU_FACTOR < single else dtype


def _gemm_rate(device: torch.device, dtype: torch.dtype, size: int, seconds: float) -> float:
    """Achieved FLOP/s of `size` x `size` matmuls into a preallocated output."""
    generator = torch.Generator(device=device).manual_seed(0)  # leaves the global RNG stream untouched
    a = torch.randn(size, size, dtype=dtype, device=device, generator=generator)
    b = torch.randn(size, size, dtype=dtype, device=device, generator=generator)
    out = torch.empty(size, size, dtype=dtype, device=device)
    return 2 * size**3 * _calls_per_second(lambda: torch.matmul(a, b, out=out), device, seconds)


def _copy_rate(device: torch.device, buffer_bytes: int, seconds: float) -> float:
    """Achieved bytes/s (read + write) copying one buffer into another.

    copy_ into a preallocated buffer rather than clone(): a fresh CPU allocation of this size page-faults on
    every call and would measure the allocator. The source is filled so untouched pages are not all backed by
    the kernel's single zero page (which would be read from cache).
    """
    src = torch.full((buffer_bytes,), 1, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    return 2 * buffer_bytes * _calls_per_second(lambda: dst.copy_(src), device, seconds)


def _calls_per_second(call: Callable[[], object], device: torch.device, seconds: float) -> float:
    """Rate of `call` over at least `seconds` of batches timed by `timing.measure` (at least one batch)."""
    with _current(device):
        calls = _calls_per_iteration(call, device, min(_ITERATION_SECONDS, seconds / _MIN_ITERATIONS))
        # The calibration batches were the warm-up; min_seconds alone decides when to stop, hence no real cap.
        cfg = MeasureConfig(warmup=0, repeats=1, min_seconds=seconds, max_repeats=2**62)
        laps = measure(_batched(call, calls), device, cfg)[_STAGE]
    return calls * len(laps) / sum(laps)


def _calls_per_iteration(call: Callable[[], object], device: torch.device, target: float) -> int:
    """How many calls make one iteration last about `target` seconds.

    The batch doubles from one call until it takes a tenth of the target, then scales linearly: one lone GPU
    call is mostly launch gap and would overstate the time per call. The first batch is also the warm-up.
    """
    calls, warmup = 1, 1
    while True:
        cfg = MeasureConfig(warmup=warmup, repeats=1, min_seconds=0.0)
        took = measure(_batched(call, calls), device, cfg)[_STAGE][0]
        if took >= target / 10 and took > 0:
            return max(1, min(_MAX_CALLS, round(calls * target / took)))
        if calls >= _MAX_CALLS:
            return _MAX_CALLS
        calls, warmup = 2 * calls, 0


def _batched(call: Callable[[], object], calls: int) -> Callable[[StageClock], None]:
    """A timing iteration: `calls` calls, then one lap."""

    def iteration(clock: StageClock) -> None:
        for _ in range(calls):
            call()
        clock.lap(_STAGE)

    return iteration


def _current(device: torch.device) -> contextlib.AbstractContextManager:
    """Makes a CUDA `device` current: the clock records its events on the current device's stream, which
    for cuda:N must be the stream the work runs on."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _device_name(device: torch.device) -> str | None:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()
