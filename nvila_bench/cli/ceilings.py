"""`nvila-bench ceilings` (this device's achieved GEMM rate and copy bandwidth), and the checks of a ceilings.json
a run divides by (`--ceilings`, or OUT/ceilings.json)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from .common import check_device, emit, one_line
from .options import Seconds


def check_ceilings(path: Path) -> str:
    """A ceilings.json fit to divide by: a JSON object with positive finite peaks (else exit 2, one line)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise click.UsageError(f"{path}: not a ceilings file: {one_line(e)}") from None
    if not isinstance(data, dict):
        raise click.UsageError(f"{path}: not a ceilings file: expected a JSON object (from `nvila-bench ceilings`)")
    for key in ("gemm_tflops", "copy_gbs"):
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
            raise click.UsageError(
                f"{path}: {key} must be a positive finite number, got {value!r}; "
                "measure again with `nvila-bench ceilings`"
            )
    for key in ("device", "dtype"):
        if not isinstance(data.get(key), str):
            raise click.UsageError(f"{path}: {key} must be a string, got {data.get(key)!r}")
    return str(path)


def ceilings_of(c: dict) -> str | None:
    """--ceilings (which must exist), else OUT/ceilings.json where present; checked either way."""
    if c["ceilings_file"] and not Path(c["ceilings_file"]).is_file():
        why = "not a regular file" if Path(c["ceilings_file"]).exists() else "no such file"  # a FIFO would never end
        raise click.BadParameter(f"{c['ceilings_file']}: {why}", param_hint="--ceilings")
    path = Path(c["ceilings_file"] or Path(c["out_dir"]) / "ceilings.json")
    return check_ceilings(path) if path.is_file() else None


def check_ceilings_device(c: dict, device: str, ceilings: str | None) -> None:
    """Refuse, before measuring, a --ceilings file measured on another kind of device than this run's: its
    peaks would be ignored without a word (a ceilings.json found in OUT is used only where it fits)."""
    if c["ceilings_file"] and ceilings:
        from nvila_bench.core.analysis.hardware import load_ceilings

        measured_on = str(load_ceilings(ceilings).get("device", ""))
        if measured_on.split(":")[0] != device.split(":")[0]:
            raise click.UsageError(
                f"{c['ceilings_file']} was measured on {measured_on}, and this run measures on "
                f"{device}: measure this device's with `nvila-bench ceilings --device {device}`"
            )


@click.command()
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda[:N].")
@click.option("--dtype", default="bfloat16", show_default=True, help="GEMM dtype.")
@click.option("--size", default=4096, show_default=True, help="Square GEMM size (16 to 16384).")
@click.option("--seconds", default=2.0, show_default=True, type=Seconds(positive=True), help="Time per measurement.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Writes OUT/ceilings.json.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def ceilings(device, dtype, size, seconds, out_dir, as_json):
    """Measure the achieved GEMM rate and copy bandwidth of this device (rooflines use them)."""
    import torch

    from nvila_bench.core.analysis.hardware import save_ceilings
    from nvila_bench.suites.ceilings import measure_ceilings

    check_device(device)
    try:
        result = measure_ceilings(device=device, dtype=dtype, size=size, seconds=seconds)
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and "can't allocate memory" not in str(e):  # torch's CPU allocator
            raise
        raise click.UsageError(
            f"--size {size} does not fit in memory here ({one_line(e)[:200]}); use a smaller --size"
        ) from None
    for key in ("gemm_tflops", "copy_gbs"):  # a zero rate would make every later point's utilisation an error
        if not (math.isfinite(result[key]) and result[key] > 0):
            raise click.ClickException(f"measured {key} = {result[key]}: not saved; try a larger --size or --seconds")
    path = save_ceilings(result, out_dir)
    rates = f"GEMM {result['gemm_tflops']:.2f} TFLOP/s ({result['dtype']}), copy {result['copy_gbs']:.1f} GB/s"
    text = f"{result['device_name']}: {rates} -> {path}"
    emit(result, as_json, text)
