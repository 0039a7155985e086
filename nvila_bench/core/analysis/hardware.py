"""Accelerator peak rates, the table of vendor-document numbers turned into utilisation denominators.

Peaks turn measured throughput into utilisation (MFU, bandwidth utilisation). The table lives in the package
data file `core/analysis/hardware.toml`, each entry citing its vendor document; the rates are DENSE tensor-core rates
with FP32 accumulate (the file's header says why). Measured ceilings complement the paper peaks with what a
plain square GEMM and a device copy actually reach (`nvila_bench.suites.ceilings.measure_ceilings`, a more
honest denominator than the datasheet); this module only saves, loads and prefers them (`resolve_peaks`).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import tomllib

from nvila_bench.core.measuring.files import write_atomic

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


@dataclass(frozen=True)
class _Table:
    """hardware.toml as lookups."""

    entries: dict[str, Hardware]  # in file order, which `hardware_keys` and error messages keep
    patterns: tuple[tuple[re.Pattern, str], ...]  # (name pattern, key) in file order: first match wins


@functools.cache
def _table() -> _Table:
    """hardware.toml, parsed and checked once per process."""
    text = resources.files("nvila_bench.core.analysis").joinpath("hardware.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    # fp8_tflops is left out of the file for GPUs without FP8 tensor cores; any other missing or extra field
    # is a typo in the file and fails here rather than as a wrong utilisation later.
    entries = {entry["key"]: Hardware(**({"fp8_tflops": None} | entry)) for entry in data["hardware"]}
    patterns = tuple((re.compile(p["regex"]), p["key"]) for p in data["pattern"])
    unknown = sorted({key for _, key in patterns} - entries.keys())
    if unknown:
        raise ValueError(f"hardware.toml: patterns name unknown hardware {', '.join(unknown)}")
    return _Table(entries, patterns)


def hardware_keys() -> list[str]:
    return list(_table().entries)


def get_hardware(key: str) -> Hardware:
    entries = _table().entries
    try:
        return entries[key]
    except KeyError:
        raise ValueError(f"unknown hardware {key!r}; known: {', '.join(entries)}") from None


def match_hardware(gpu_name: str) -> Hardware | None:
    """The table entry for a device name as NVML or torch.cuda.get_device_name reports it, None if unknown."""
    name = gpu_name.strip().lower()
    table = _table()
    for pattern, key in table.patterns:
        if pattern.search(name):
            return table.entries[key]
    return None


# ----------------------------------------------------------------------------------------------- measured ceilings
# Measured by nvila_bench.suites.ceilings (`nvila-bench ceilings`); stored next to the results they serve.
def save_ceilings(ceilings: dict, out_dir: str | Path) -> Path:
    """Write `ceilings.json` into `out_dir` atomically, so a concurrent reader never sees a half-written file."""
    return write_atomic(Path(out_dir) / CEILINGS_FILE, json.dumps(ceilings, indent=2, sort_keys=True) + "\n")


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
    if entry is None and device.startswith("cuda"):
        import torch  # here, not at the top: the report reads this table and never loads torch

        if not torch.cuda.is_available():
            return None
        entry = match_hardware(torch.cuda.get_device_name(torch.device(device)))
    if entry is None:
        return None
    try:
        return Peaks(entry.peak_flops(dtype), entry.bandwidth, f"table:{entry.key}")
    except ValueError:  # no tensor-core peak for this dtype (e.g. float32): no floor rather than a wrong one
        return None
