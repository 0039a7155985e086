"""Accelerator peak rates (from vendor documents) and measured ceilings (from this machine).

Peaks turn measured throughput into utilisation (MFU, bandwidth utilisation). They are DENSE tensor-core
rates: NVIDIA datasheets often print structured-sparsity figures (marked with an asterisk), which no dense
model reaches, so those are halved here. Half-precision rates are with FP32 accumulate, which is what PyTorch
matmuls use. Measured ceilings (`measure_ceilings`) complement the paper peaks with what a plain square GEMM
and a device copy actually reach, a more honest denominator than the datasheet.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from nvila_bench.core.env import cpu_model

CEILINGS_FILE = "ceilings.json"

# Requested dtype name -> Hardware field holding its dense peak (tera-ops per second).
_PEAK_FIELDS = {"bfloat16": "bf16_tflops", "float16": "fp16_tflops", "fp8": "fp8_tflops", "int8": "int8_tops"}


@dataclass(frozen=True)
class Hardware:
    """One accelerator's dense tensor-core peaks and memory system, with where the numbers come from."""

    name: str
    key: str
    bf16_tflops: float
    fp16_tflops: float
    fp8_tflops: float | None  # None: no FP8 tensor cores
    int8_tops: float
    memory_bandwidth_gbs: float  # GB/s, 1e9 bytes
    memory_gb: float
    source: str

    def peak_flops(self, dtype: str) -> float:
        """Dense peak in FLOP/s (OP/s for int8) for `dtype`; ValueError when the table has no such rate."""
        field = _PEAK_FIELDS.get(dtype)
        if field is None:
            raise ValueError(f"no peak rate for dtype {dtype!r}; known: {', '.join(_PEAK_FIELDS)}")
        tera = getattr(self, field)
        if tera is None:
            raise ValueError(f"{self.name} has no {dtype} tensor cores")
        return tera * 1e12

    @property
    def bandwidth(self) -> float:
        """Peak memory bandwidth in bytes/s."""
        return self.memory_bandwidth_gbs * 1e9


_H100_WHITEPAPER = "NVIDIA H100 Tensor Core GPU Architecture whitepaper (spec comparison table, dense columns)"
_ADA_WHITEPAPER = "NVIDIA Ada Lovelace GPU Architecture whitepaper v2.1 (appendix spec tables, dense columns)"

HARDWARE: dict[str, Hardware] = {
    hw.key: hw
    for hw in (
        Hardware(
            name="NVIDIA H100 SXM5 80GB", key="h100-sxm",
            bf16_tflops=989.4, fp16_tflops=989.4, fp8_tflops=1978.9, int8_tops=1978.9,
            memory_bandwidth_gbs=3350, memory_gb=80,
            source=(
                f"{_H100_WHITEPAPER}; NVIDIA H100 datasheet https://www.nvidia.com/en-us/data-center/h100/ "
                "(its BF16 1979 / FP8 3958 / INT8 3958 figures are with sparsity, halved here)"
            ),
        ),
        Hardware(
            name="NVIDIA H100 PCIe 80GB", key="h100-pcie",
            bf16_tflops=756.5, fp16_tflops=756.5, fp8_tflops=1513, int8_tops=1513,
            memory_bandwidth_gbs=2000, memory_gb=80,
            source=(
                "NVIDIA H100 datasheet https://www.nvidia.com/en-us/data-center/h100/ (PCIe column; BF16 1513 / "
                "FP8 3026 / INT8 3026 are with sparsity, halved here); not the H100 NVL (94 GB, 3.9 TB/s)"
            ),
        ),
        Hardware(
            name="NVIDIA H200 SXM 141GB", key="h200",
            bf16_tflops=989.4, fp16_tflops=989.4, fp8_tflops=1978.9, int8_tops=1978.9,
            memory_bandwidth_gbs=4800, memory_gb=141,
            source=(
                "NVIDIA H200 datasheet https://www.nvidia.com/en-us/data-center/h200/ (SXM column; sparse figures "
                "halved; same tensor cores and clocks as H100 SXM, more and faster HBM3e); not the H200 NVL"
            ),
        ),
        Hardware(
            name="NVIDIA A100 SXM4 80GB", key="a100-80gb",
            bf16_tflops=312, fp16_tflops=312, fp8_tflops=None, int8_tops=624,
            memory_bandwidth_gbs=2039, memory_gb=80,
            source=(
                "NVIDIA A100 datasheet https://www.nvidia.com/en-us/data-center/a100/ (80GB SXM column; 624 BF16 / "
                "1248 INT8 are with sparsity, halved here); no FP8 tensor cores (Ampere)"
            ),
        ),
        Hardware(
            name="NVIDIA GeForce RTX 4090", key="rtx-4090",
            bf16_tflops=165.2, fp16_tflops=165.2, fp8_tflops=330.3, int8_tops=660.6,
            memory_bandwidth_gbs=1008, memory_gb=24,
            source=(
                f"{_ADA_WHITEPAPER}; GeForce runs FP16/BF16/FP8 at half rate with FP32 accumulate (330.3 FP16 and "
                "660.6 FP8 dense are FP16-accumulate only, which PyTorch matmuls do not use)"
            ),
        ),
        Hardware(
            name="NVIDIA RTX 6000 Ada Generation", key="rtx-6000-ada",
            bf16_tflops=364.2, fp16_tflops=364.2, fp8_tflops=728.5, int8_tops=728.5,
            memory_bandwidth_gbs=960, memory_gb=48,
            source=(
                f"{_ADA_WHITEPAPER}; NVIDIA RTX 6000 Ada datasheet https://www.nvidia.com/en-us/design-visualization/"
                "rtx-6000/ (its 1457 TFLOPS FP8 is with sparsity, halved here)"
            ),
        ),
        Hardware(
            name="NVIDIA L40S", key="l40s",
            bf16_tflops=362.05, fp16_tflops=362.05, fp8_tflops=733, int8_tops=733,
            memory_bandwidth_gbs=864, memory_gb=48,
            source=(
                "NVIDIA L40S datasheet https://www.nvidia.com/en-us/data-center/l40s/ (asterisked sparse figures "
                "BF16 733 / FP8 1466 / INT8 1466 halved here)"
            ),
        ),
        Hardware(
            name="NVIDIA Jetson AGX Orin 64GB (GPU)", key="jetson-orin",
            bf16_tflops=42.5, fp16_tflops=42.5, fp8_tflops=None, int8_tops=85,
            memory_bandwidth_gbs=204.8, memory_gb=64,
            source=(
                "NVIDIA Jetson AGX Orin Series Technical Brief v1.2 https://www.nvidia.com/content/dam/en-zz/"
                "Solutions/gtcf21/jetson-orin/nvidia-jetson-agx-orin-technical-brief.pdf. The headline 275 TOPS is "
                "INT8 sparse for the whole module: 170 from the GPU plus 105 from the two DLAs, which PyTorch cannot "
                "use. GPU only: 170 sparse -> 85 dense INT8; FP16/BF16 derived as half the INT8 rate (Ampere tensor "
                "cores), not published per dtype. Memory is 64 GB LPDDR5 shared with the CPU; MAXN power mode"
            ),
        ),
    )
}

# (pattern over the lower-cased device name, key). First match wins, so narrower variants come first; names of
# different products that merely contain a known one (GH200, H100 NVL, RTX 4090 D/Laptop, Orin Nano) match none.
_NAME_PATTERNS = (
    (r"\bh100\b.*\bpcie\b", "h100-pcie"),
    (r"\bh100\b(?!.*\bnvl\b)", "h100-sxm"),
    (r"\bh200\b(?!.*\bnvl\b)", "h200"),
    (r"\ba100\b.*\bsxm\d?\b.*\b80gb\b", "a100-80gb"),
    (r"\brtx 4090$", "rtx-4090"),
    (r"\brtx 6000 ada\b", "rtx-6000-ada"),
    (r"\bl40s\b", "l40s"),
    (r"\borin\b(?!.*\b(nano|nx)\b)", "jetson-orin"),  # a Jetson reports just "Orin"; assumed AGX Orin 64GB
)


def hardware_keys() -> list[str]:
    return list(HARDWARE)


def get_hardware(key: str) -> Hardware:
    try:
        return HARDWARE[key]
    except KeyError:
        raise ValueError(f"unknown hardware {key!r}; known: {', '.join(HARDWARE)}") from None


def match_hardware(gpu_name: str) -> Hardware | None:
    """The table entry for a device name as NVML or torch.cuda.get_device_name reports it, None if unknown."""
    name = gpu_name.strip().lower()
    for pattern, key in _NAME_PATTERNS:
        if re.search(pattern, name):
            return HARDWARE[key]
    return None


# ----------------------------------------------------------------------------------------------- measured ceilings

_GEMM_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
_SLOW_CPU_FACTOR = 2.0  # a half-precision CPU matmul this much slower than float32 is emulated, not native
_COPY_BYTES_PER_GEMM_ELEMENT = 64  # copy buffer = 64 * size^2 bytes: 1 GiB at size 4096, far beyond any L2


def measure_ceilings(device: str = "cpu", dtype: str = "bfloat16", size: int = 4096, seconds: float = 1.0) -> dict:
    """What this device actually reaches on a square dense GEMM and on a device-to-device copy.

    GEMM: FLOPs = 2 * size^3 per matmul. Copy: `copy_bytes` counts both the read and the write of the buffer
    (2 x buffer size), the convention of bandwidth datasheets. On CPU, half precision falls back to float32
    when the CPU has no fast path for it; `dtype` records the dtype actually used.
    """
    if dtype not in _GEMM_DTYPES:
        raise ValueError(f"unsupported GEMM dtype {dtype!r}; known: {', '.join(_GEMM_DTYPES)}")
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
    count, elapsed = _repeat_for(lambda: torch.matmul(a, b, out=out), device, seconds)
    return 2 * size**3 * count / elapsed


def _copy_rate(device: torch.device, buffer_bytes: int, seconds: float) -> float:
    """Achieved bytes/s (read + write) copying one buffer into another.

    copy_ into a preallocated buffer rather than clone(): a fresh CPU allocation of this size page-faults on
    every call and would measure the allocator. The source is filled so untouched pages are not all backed by
    the kernel's single zero page (which would be read from cache).
    """
    src = torch.full((buffer_bytes,), 1, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    count, elapsed = _repeat_for(lambda: dst.copy_(src), device, seconds)
    return 2 * buffer_bytes * count / elapsed


def _repeat_for(fn: Callable[[], object], device: torch.device, seconds: float) -> tuple[int, float]:
    """(calls, seconds) of running `fn` in batches until at least `seconds` have been measured.

    One warm-up call first, then at least one measured call. Batches grow towards the remaining time, and GPU
    work is timed between two events with one synchronize per batch, keeping host launch gaps out of it.
    """
    fn()
    _synchronize(device)
    count, elapsed, batch = 0, 0.0, 1
    while count == 0 or elapsed < seconds:
        elapsed += _time_batch(fn, batch, device)
        count += batch
        per_call = elapsed / count
        batch = max(1, min(2 * count, int((seconds - elapsed) / per_call) + 1))
    return count, elapsed


def _time_batch(fn: Callable[[], object], batch: int, device: torch.device) -> float:
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        stream = torch.cuda.current_stream(device)  # `device`'s stream, not the current device's, for cuda:N
        start.record(stream)
        for _ in range(batch):
            fn()
        end.record(stream)
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    began = time.perf_counter()
    for _ in range(batch):
        fn()
    _synchronize(device)
    return time.perf_counter() - began


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device: torch.device) -> str | None:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def save_ceilings(ceilings: dict, out_dir: str | Path) -> Path:
    """Write `ceilings.json` into `out_dir` atomically, so a concurrent reader never sees a half-written file."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CEILINGS_FILE
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{CEILINGS_FILE}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(ceilings, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_ceilings(path: str | Path) -> dict | None:
    """Ceilings saved by `save_ceilings` (path to the file or its directory); None when none were saved."""
    path = Path(path)
    if path.is_dir():
        path = path / CEILINGS_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------------------------- peaks of a run
@dataclass(frozen=True)
class Peaks:
    """Peak FLOP/s and bytes/s the analytic floor uses, and where they come from."""

    flops: float
    bandwidth: float
    source: str  # e.g. "table:h100-sxm" or "measured:ceilings.json"


def resolve_peaks(device: str, dtype: str, hardware: str | None = None, ceilings: str | None = None) -> Peaks | None:
    """Peaks for the analytic floor, best source first: measured ceilings (a ceilings.json from
    `nvila-bench ceilings` on this device kind and dtype), a named hardware entry, the table entry
    matching the current GPU's name. None on a CPU with no measured ceilings of the run's dtype."""
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
