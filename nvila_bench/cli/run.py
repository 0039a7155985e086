"""`nvila-bench run SUITE`: one command per registered suite, generated from the registry.

Every suite command takes the common options (the request as sweep axes, the device, measuring rules, the
output folder) and the suite's own (`Suite.options`). The flow is one way: options -> the suite's points ->
the runner measures each -> one writer appends its record.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections import Counter
from pathlib import Path

import click
from click.core import ParameterSource

from nvila_bench.model.engines import ENGINES
from nvila_bench.suites.registry import Suite, SuiteError, get_suite, jobs_of, suite_names

from .common import ImageSize, emit, one_line

MAX_SECONDS = 3600.0
MAX_ITERATIONS = 10**6  # warm-up or measured iterations of one point: a larger count would run for days
MAX_PROCESSES = 1000  # fresh subprocesses per point (each loads the model anew)


class SuiteGroup(click.Group):
    """Subcommands from the suite registry, each suite module imported only when it runs."""

    def list_commands(self, ctx) -> list[str]:
        return suite_names()

    def get_command(self, ctx, name):
        return suite_command(get_suite(name)) if name in suite_names() else None


class Seconds(click.ParamType):
    """Seconds from 0 (exclusive if `positive`) to MAX_SECONDS, finite: NaN or inf would never end."""

    name = "SECONDS"

    def __init__(self, positive: bool = False):
        self.positive = positive

    def convert(self, value, param, ctx):
        seconds = _float(value, self, param, ctx)
        if not (math.isfinite(seconds) and (seconds > 0 if self.positive else seconds >= 0) and seconds <= MAX_SECONDS):
            self.fail(
                f"{value!r} seconds: must be finite, {'> 0' if self.positive else '>= 0'} and <= {MAX_SECONDS:g}",
                param,
                ctx,
            )
        return seconds


class FiniteFloat(click.ParamType):
    name = "FLOAT"

    def convert(self, value, param, ctx):
        number = _float(value, self, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def _float(value, kind, param, ctx) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        kind.fail(f"{value!r} is not a number", param, ctx)


def _measure_options() -> list:
    return [
        click.option(
            "--warmup",
            default=2,
            show_default=True,
            type=click.IntRange(0, MAX_ITERATIONS),
            help="Minimum warm-up iterations.",
        ),
        click.option("--warmup-seconds", default=0.0, show_default=True, type=Seconds(), help="Minimum warm-up time."),
        click.option(
            "--repeats",
            default=5,
            show_default=True,
            type=click.IntRange(1, MAX_ITERATIONS),
            help="Minimum measured iterations.",
        ),
        click.option(
            "--min-seconds", default=1.0, show_default=True, type=Seconds(), help="Minimum measuring time per point."
        ),
        click.option(
            "--max-repeats",
            default=1000,
            show_default=True,
            type=click.IntRange(1, MAX_ITERATIONS),
            help="Cap on measured iterations.",
        ),
    ]


COMMON = [
    click.option("--preset", "presets", multiple=True, help="Preset(s); several make a sweep axis."),
    click.option("--device", default="cpu", show_default=True, help="cpu or cuda[:N]."),
    click.option(
        "--dtype", "dtypes", multiple=True, help="float32 / bfloat16 / float16 (default: bf16 on cuda, fp32 on cpu)."
    ),
    click.option(
        "--image", "images", type=ImageSize(), multiple=True, help="Image WxH; repeat for a multi-image request."
    ),
    click.option("--video-frames", "video_frames", type=int, multiple=True, help="Video frames (sweep axis)."),
    click.option("--no-temporal-pool", is_flag=True, help="Disable TSP temporal pooling."),
    click.option("--prompt-tokens", "prompt_tokens", type=int, multiple=True, help="Text tokens after the media [64]."),
    click.option("--new-tokens", "new_tokens", type=int, multiple=True, help="Tokens generated, EOS ignored [32]."),
    click.option("--batch-size", "batch_sizes", type=int, multiple=True, help="Identical requests per batch [1]."),
    click.option("--attn", default="sdpa", show_default=True, help="sdpa, eager or flash_attention_2."),
    click.option(
        "--cache",
        "caches",
        type=click.Choice(["dynamic", "static"]),
        multiple=True,
        help="Decode KV cache of the eager engine [dynamic].",
    ),
    click.option(
        "--engine",
        "engines",
        type=click.Choice(list(ENGINES)),
        multiple=True,
        help="How prefill / decode run (sweep axis): compiled (CUDA graphs; default on cuda), eager (default on cpu), "
        "and the transformers peers hf-generate, hf-static.",
    ),
    click.option(
        "--preprocess",
        "preprocess",
        type=click.Choice(["cpu", "gpu"]),
        multiple=True,
        help="Image tiling on the host with PIL (cpu) or by tensor ops on the point's device (gpu; default on cuda).",
    ),
    click.option(
        "--config", "suite_file", type=click.Path(dir_okay=False), help="TOML/YAML suite file; lists are sweep axes."
    ),
    click.option(
        "--hardware",
        help="Hardware table entry for analytic floors and MFU (default: the GPU's own, or measured ceilings).",
    ),
    click.option(
        "--ceilings",
        "ceilings_file",
        type=click.Path(dir_okay=False),
        help="ceilings.json from `nvila-bench ceilings`.",
    ),
    click.option("--isolate", is_flag=True, help="Run every point in its own subprocess."),
    click.option(
        "--processes",
        default=1,
        show_default=True,
        type=click.IntRange(1, MAX_PROCESSES),
        help="Measure every point in this many fresh subprocesses; the CI then covers run-to-run noise.",
    ),
    click.option("--quiet", is_flag=True, help="No progress output."),
    click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory."),
    *_measure_options(),
]
COMMON_NAMES = {
    "presets",
    "device",
    "dtypes",
    "images",
    "video_frames",
    "no_temporal_pool",
    "prompt_tokens",
    "new_tokens",
    "batch_sizes",
    "attn",
    "caches",
    "engines",
    "preprocess",
    "suite_file",
    "hardware",
    "ceilings_file",
    "isolate",
    "processes",
    "quiet",
    "out_dir",
    "warmup",
    "warmup_seconds",
    "repeats",
    "min_seconds",
    "max_repeats",
}


def _click_option(option) -> click.Option:
    flag = "--" + option.name.replace("_", "-")
    if option.type is bool:
        return click.option(flag, option.name, is_flag=True, default=bool(option.default), help=option.help)
    kind = click.Choice(list(option.type)) if isinstance(option.type, tuple) else option.type
    kind = FiniteFloat() if kind is float else kind
    return click.option(
        flag,
        option.name,
        type=kind,
        default=option.default,
        multiple=option.multiple,
        show_default=option.default is not None,
        help=option.help,
    )


def suite_command(suite: Suite) -> click.Command:
    def callback(**kw):
        ctx = click.get_current_context()
        common = {k: kw.pop(k) for k in list(kw) if k in COMMON_NAMES}
        defaults = (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)
        common["given"] = {k for k in common if ctx.get_parameter_source(k) not in defaults}  # what the user wrote
        return run_suite(suite, common, kw)

    command = callback
    for option in reversed([*COMMON, *map(_click_option, suite.options)]):
        command = option(command)
    return click.command(name=suite.name, help=suite.help)(command)


# sweep axis -> (the command-line option that sets it, its key in `c`)
AXIS_OPTIONS = {
    "preset": ("--preset", "presets"),
    "dtype": ("--dtype", "dtypes"),
    "video_frames": ("--video-frames", "video_frames"),
    "prompt_tokens": ("--prompt-tokens", "prompt_tokens"),
    "new_tokens": ("--new-tokens", "new_tokens"),
    "batch_size": ("--batch-size", "batch_sizes"),
    "cache": ("--cache", "caches"),
    "engine": ("--engine", "engines"),
    "preprocess": ("--preprocess", "preprocess"),
    "device": ("--device", "device"),
    "attn_implementation": ("--attn", "attn"),
    "images": ("--image", "images"),
    "temporal_pool": ("--no-temporal-pool", "no_temporal_pool"),
}


def _cli_axis(c: dict, name: str) -> list:
    value = c.get(AXIS_OPTIONS[name][1])
    if name == "images":
        return [tuple(value)] if value else []
    if name == "temporal_pool":
        return [False] if value else []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def sweep_axes(suite: Suite, c: dict) -> dict[str, list]:
    """The sweep axes of the common options and of a --config file; options given once are one-value axes. A
    value the file sets is used: a command-line default never replaces it, and the same setting given in both
    places with different values is refused (one line)."""
    from nvila_bench.runner.suite_file import load_suite_file

    axes, given = {}, c.get("given")  # given None: every option counts as written (the profile command)
    if c["suite_file"]:
        file_suite, axes = load_suite_file(c["suite_file"])
        if file_suite and file_suite != suite.name:
            raise click.UsageError(f"{c['suite_file']} is a {file_suite!r} suite file, not {suite.name!r}")
    for name, (option, key) in AXIS_OPTIONS.items():
        values = [v for v in _cli_axis(c, name) if v is not None]
        written = values and (given is None or key in given)
        if name in axes:
            if written and values != axes[name]:
                raise click.UsageError(
                    f"{option} {', '.join(map(_text, values))} on the command line and {name} = "
                    f"{', '.join(map(_text, axes[name]))} in {c['suite_file']}: give it in one place"
                )
        elif values:
            axes[name] = values
    if len(axes["device"]) > 1:
        raise click.UsageError(
            f"a run measures on one device, got {len(axes['device'])} in {c['suite_file']}: "
            f"{', '.join(axes['device'])}; run once per device"
        )
    if not suite.takes_presets and "preset" in axes:
        raise click.UsageError(f"{suite.name} picks its presets itself: drop --preset / presets in --config")
    return axes


def _text(value) -> str:
    return (
        "x".join(map(str, value[0]))
        if isinstance(value, tuple) and value and isinstance(value[0], tuple)
        else str(value)
    )


def plan(suite: Suite, c: dict, options: dict) -> tuple[list, dict]:
    """The jobs to run, checked before anything is measured (exit 2 on settings that cannot run), and the run's
    common options with the device and attention the sweep uses (a suite file's, where it sets them)."""
    try:
        axes = sweep_axes(suite, c)
        c = c | {"device": axes["device"][0], "attn": ", ".join(axes["attn_implementation"])}
        check_device(c["device"])
        jobs = jobs_of(suite, axes, options | {"hardware": c["hardware"]})
    except (SuiteError, ValueError) as e:
        raise click.UsageError(str(e)) from None
    if not jobs:
        raise click.UsageError("no points")
    return jobs, c


_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


def check_device(device: str) -> None:
    """cpu, or cuda[:N] of a device torch sees here."""
    if not _DEVICE.match(device):
        raise click.BadParameter(f"unknown device {device!r}; use cpu or cuda[:N]", param_hint="--device")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise click.BadParameter(f"{device}, but torch sees no CUDA device here", param_hint="--device")
        if int(device.partition(":")[2] or 0) >= torch.cuda.device_count():
            raise click.BadParameter(
                f"{device}: torch sees {torch.cuda.device_count()} CUDA device(s)", param_hint="--device"
            )


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


def summary_line(name: str, records: list, path) -> str:
    """e.g. "finetune-memory: 6 record(s) (4 ok, 2 skipped: QLoRA needs a CUDA GPU) -> OUT/results.jsonl"."""
    from nvila_bench.core.measuring.results import STATUSES

    counts = Counter(r.status for r in records)
    parts = [f"{counts[status]} {status}" for status in STATUSES if counts[status]]
    reasons = "; ".join(dict.fromkeys(r.error for r in records if r.status == "skipped" and r.error))
    parts = [f"{part}: {reasons}" if part.endswith(" skipped") and reasons else part for part in parts]
    return f"{name}: {len(records)} record(s) ({', '.join(parts)}) -> {path}"


def run_suite(suite: Suite, c: dict, options: dict) -> int:
    from nvila_bench.core.analysis.hardware import resolve_peaks
    from nvila_bench.core.measuring.env import capture_environment
    from nvila_bench.core.measuring.result_files import ResultWriter
    from nvila_bench.core.measuring.results import new_run_id
    from nvila_bench.core.measuring.session import Session
    from nvila_bench.core.measuring.timing import MeasureConfig
    from nvila_bench.runner.sweep import run_sweep

    measure = MeasureConfig(c["warmup"], c["warmup_seconds"], c["repeats"], c["min_seconds"], c["max_repeats"])
    jobs, c = plan(suite, c, options)
    device = c["device"]
    if os.environ.get("WORLD_SIZE", "1") != "1":
        if suite.name != "train":
            raise click.UsageError("under torchrun only the train suite runs (the others measure one device)")
        from nvila_bench.model.presets import get_preset, is_peer, preset_names
        from nvila_bench.runner.distributed import run_distributed

        for job in jobs:  # FSDP2 units are NVILA's modules (runner/distributed.py)
            if job.point.preset in preset_names() and is_peer(get_preset(job.point.preset)):
                raise click.UsageError(
                    f"torchrun data-parallel training (FSDP2) covers NVILA and VILA1.5 presets "
                    f"only; {job.point.preset} is a peer VLM (run it in one process)"
                )
        return run_distributed(jobs, measure, c["out_dir"], c["quiet"])
    ceilings = ceilings_of(c)
    check_ceilings_device(c, device, ceilings)
    writer, run_id = ResultWriter(c["out_dir"]), new_run_id()
    dtypes = {j.point.dtype for j in jobs} | (
        {"bfloat16"} if any(j.point.extra.get("autocast") for j in jobs) else set()
    )
    dtypes |= {"int8", "fp8"}  # tensor-core peaks of quantized (W8A8) stages (core/analysis/hardware.toml; None on CPU)
    peaks = {dtype: resolve_peaks(device, dtype, c["hardware"], ceilings) for dtype in dtypes}
    session = Session(measure, peaks, Path(c["out_dir"]))
    environment = capture_environment(c["attn"], device)
    show = not c["quiet"] and sys.stderr.isatty()
    bar = (
        click.progressbar(
            length=len(jobs),
            label=f"{suite.name}: {len(jobs)} points",
            file=sys.stderr,
            show_eta=True,
            item_show_func=lambda job: f"{job.suite} {job.point.label}" if job else "",
        )
        if show
        else None
    )

    records = []

    def on_record(job, record):
        records.append(record)
        if bar is not None:
            bar.update(1, job)
        line = suite.describe(record) if suite.describe and not c["quiet"] else None
        if line:
            click.echo(line, err=True)

    try:
        if bar is not None:
            bar.__enter__()
        run_sweep(jobs, writer, session, run_id, environment, c["isolate"], c["processes"], on_record)
    except KeyboardInterrupt:
        click.echo(f"nvila-bench: interrupted: {writer.count} completed point(s) kept in {writer.path}", err=True)
        return 130
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if not c["quiet"]:
        click.echo(summary_line(suite.name, records, writer.path), err=True)
    return 1 if suite.fail_on_error and any(r.status != "ok" for r in records) else 0


run = SuiteGroup(
    name="run", help="Measure a suite over the cartesian product of the given settings; writes OUT/results.jsonl."
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
