"""`nvila-bench run SUITE`: one command per registered suite, generated from the registry.

Every suite command takes the common options (the request as sweep axes, the device, measuring rules, the
output folder) and the suite's own (`Suite.options`). The flow is one way: options -> the suite's points ->
the runner measures each -> one writer appends its record.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from nvila_bench.suites.registry import Suite, SuiteError, get_suite, jobs_of, suite_names

from .common import ImageSize, emit


class SuiteGroup(click.Group):
    """Subcommands from the suite registry, each suite module imported only when it runs."""

    def list_commands(self, ctx) -> list[str]:
        return suite_names()

    def get_command(self, ctx, name):
        return suite_command(get_suite(name)) if name in suite_names() else None


def _measure_options() -> list:
    return [
        click.option("--warmup", default=2, show_default=True, help="Minimum warm-up iterations."),
        click.option("--warmup-seconds", default=0.0, show_default=True, help="Minimum warm-up time."),
        click.option("--repeats", default=5, show_default=True, help="Minimum measured iterations."),
        click.option("--min-seconds", default=1.0, show_default=True, help="Minimum measuring time per point."),
        click.option("--max-repeats", default=1000, show_default=True, help="Cap on measured iterations."),
    ]


COMMON = [
    click.option("--preset", "presets", multiple=True, help="Preset(s); several make a sweep axis."),
    click.option("--device", default="cpu", show_default=True, help="cpu or cuda[:N]."),
    click.option("--dtype", "dtypes", multiple=True, help="float32 / bfloat16 / float16 (default: bf16 on cuda, fp32 on cpu)."),
    click.option("--image", "images", type=ImageSize(), multiple=True, help="Image WxH; repeat for a multi-image request."),
    click.option("--video-frames", "video_frames", type=int, multiple=True, help="Video frames (sweep axis)."),
    click.option("--no-temporal-pool", is_flag=True, help="Disable TSP temporal pooling."),
    click.option("--prompt-tokens", "prompt_tokens", type=int, multiple=True, help="Text tokens after the media [64]."),
    click.option("--new-tokens", "new_tokens", type=int, multiple=True, help="Tokens generated, EOS ignored [32]."),
    click.option("--batch-size", "batch_sizes", type=int, multiple=True, help="Identical requests per batch [1]."),
    click.option("--attn", default="sdpa", show_default=True, help="sdpa, eager or flash_attention_2."),
    click.option("--cache", "caches", type=click.Choice(["dynamic", "static"]), multiple=True, help="Decode KV cache [dynamic]."),
    click.option("--config", "suite_file", type=click.Path(dir_okay=False), help="TOML/YAML suite file; lists are sweep axes."),
    click.option("--hardware", help="Hardware table entry for analytic floors and MFU (default: the GPU's own, or measured ceilings)."),
    click.option("--ceilings", "ceilings_file", type=click.Path(dir_okay=False), help="ceilings.json from `nvila-bench ceilings`."),
    click.option("--isolate", is_flag=True, help="Run every point in its own subprocess."),
    click.option("--processes", default=1, show_default=True, type=click.IntRange(min=1),
                 help="Measure every point in this many fresh subprocesses; the CI then covers run-to-run noise."),
    click.option("--quiet", is_flag=True, help="No progress output."),
    click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory."),
    *_measure_options(),
]  # fmt: skip
COMMON_NAMES = {"presets", "device", "dtypes", "images", "video_frames", "no_temporal_pool", "prompt_tokens", "new_tokens",
                "batch_sizes", "attn", "caches", "suite_file", "hardware", "ceilings_file", "isolate", "processes", "quiet",
                "out_dir", "warmup", "warmup_seconds", "repeats", "min_seconds", "max_repeats"}  # fmt: skip


def _click_option(option) -> click.Option:
    flag = "--" + option.name.replace("_", "-")
    if option.type is bool:
        return click.option(flag, option.name, is_flag=True, default=bool(option.default), help=option.help)
    kind = click.Choice(list(option.type)) if isinstance(option.type, tuple) else option.type
    return click.option(flag, option.name, type=kind, default=option.default, multiple=option.multiple,
                        show_default=option.default is not None, help=option.help)  # fmt: skip


def suite_command(suite: Suite) -> click.Command:
    def callback(**kw):
        common = {k: kw.pop(k) for k in list(kw) if k in COMMON_NAMES}
        return run_suite(suite, common, kw)

    command = callback
    for option in reversed([*COMMON, *map(_click_option, suite.options)]):
        command = option(command)
    return click.command(name=suite.name, help=suite.help)(command)


def sweep_axes(suite: Suite, c: dict) -> dict[str, list]:
    """The sweep axes of the common options (and of a --config file); options given once are one-value axes."""
    from nvila_bench.runner.suite_file import load_suite_file

    axes = {}
    if c["suite_file"]:
        file_suite, axes = load_suite_file(c["suite_file"])
        if file_suite and file_suite != suite.name:
            raise click.UsageError(f"{c['suite_file']} is a {file_suite!r} suite file, not {suite.name!r}")
    cli_axes = {
        "preset": list(c["presets"]), "dtype": list(c["dtypes"]), "video_frames": list(c["video_frames"]),
        "prompt_tokens": list(c["prompt_tokens"]), "new_tokens": list(c["new_tokens"]), "batch_size": list(c["batch_sizes"]),
        "cache": list(c["caches"]),
    }  # fmt: skip
    axes |= {k: v for k, v in cli_axes.items() if v}
    axes |= {"device": [c["device"]], "attn_implementation": [c["attn"]]}
    if c["images"]:
        axes["images"] = [tuple(c["images"])]
    if c["no_temporal_pool"]:
        axes["temporal_pool"] = [False]
    if not suite.takes_presets and "preset" in axes:
        raise click.UsageError(f"{suite.name} picks its presets itself: drop --preset / presets in --config")
    return axes


def plan(suite: Suite, c: dict, options: dict) -> list:
    """The jobs to run, checked before anything is measured; jobs this machine cannot run are skipped with a
    one-line reason each (exit 2 when nothing is left)."""
    try:
        jobs = jobs_of(suite, sweep_axes(suite, c), options | {"hardware": c["hardware"]})
    except (SuiteError, ValueError) as e:
        raise click.UsageError(str(e)) from None
    runnable = []
    for job in jobs:
        reason = get_suite(job.suite).cannot_run(job.point)
        if reason:
            click.echo(f"nvila-bench: skip: {job.suite} {job.point.label}: {reason}", err=True)
        else:
            runnable.append(job)
    if not runnable:
        raise click.UsageError(f"nothing to run here: {reason}" if jobs else "no points")
    return runnable


def run_suite(suite: Suite, c: dict, options: dict) -> int:
    from nvila_bench.core.env import capture_environment
    from nvila_bench.core.hardware import resolve_peaks
    from nvila_bench.core.results import ResultWriter, new_run_id
    from nvila_bench.core.session import Session
    from nvila_bench.core.timing import MeasureConfig
    from nvila_bench.runner.sweep import run_sweep

    measure = MeasureConfig(c["warmup"], c["warmup_seconds"], c["repeats"], c["min_seconds"], c["max_repeats"])
    device = c["device"]
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise click.UsageError("--device cuda, but torch sees no CUDA device here")
    jobs = plan(suite, c, options)
    if os.environ.get("WORLD_SIZE", "1") != "1":
        if suite.name != "train":
            raise click.UsageError("under torchrun only the train suite runs (the others measure one device)")
        from nvila_bench.runner.distributed import run_distributed

        return run_distributed([j.point for j in jobs], measure, c["out_dir"], c["quiet"])
    writer, run_id = ResultWriter(c["out_dir"]), new_run_id()
    ceilings = c["ceilings_file"] or _existing(Path(c["out_dir"]) / "ceilings.json")
    dtypes = {j.point.dtype for j in jobs} | ({"bfloat16"} if any(j.point.extra.get("autocast") for j in jobs) else set())
    peaks = {dtype: resolve_peaks(device, dtype, c["hardware"], ceilings) for dtype in dtypes}
    session = Session(measure, peaks, Path(c["out_dir"]))
    environment = capture_environment(c["attn"], device)
    show = not c["quiet"] and sys.stderr.isatty()
    bar = click.progressbar(length=len(jobs), label=f"{suite.name}: {len(jobs)} points", file=sys.stderr, show_eta=True,
                            item_show_func=lambda job: f"{job.suite} {job.point.label}" if job else "") if show else None  # fmt: skip

    def on_record(job, record):
        if bar is not None:
            bar.update(1, job)
        line = suite.describe(record) if suite.describe and not c["quiet"] else None
        if line:
            click.echo(line, err=True)

    try:
        if bar is not None:
            bar.__enter__()
        counts = run_sweep(jobs, writer, session, run_id, environment, c["isolate"], c["processes"], on_record)
    except KeyboardInterrupt:
        click.echo(f"nvila-bench: interrupted: {writer.count} completed point(s) kept in {writer.path}", err=True)
        return 130
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if not c["quiet"]:
        summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
        click.echo(f"{suite.name}: {writer.count} record(s) ({summary}) -> {writer.path}", err=True)
    return 1 if suite.fail_on_error and counts["ok"] < writer.count else 0


def _existing(path: Path) -> str | None:
    return str(path) if path.is_file() else None


run = SuiteGroup(name="run", help="Measure a suite over the cartesian product of the given settings; writes OUT/results.jsonl.")


@click.command()
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda[:N].")
@click.option("--dtype", default="bfloat16", show_default=True, help="GEMM dtype.")
@click.option("--size", default=4096, show_default=True, help="Square GEMM size.")
@click.option("--seconds", default=2.0, show_default=True, help="Time per measurement.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Writes OUT/ceilings.json.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def ceilings(device, dtype, size, seconds, out_dir, as_json):
    """Measure the achieved GEMM rate and copy bandwidth of this device (rooflines use them)."""
    from nvila_bench.core.hardware import save_ceilings
    from nvila_bench.suites.ceilings import measure_ceilings

    result = measure_ceilings(device=device, dtype=dtype, size=size, seconds=seconds)
    path = save_ceilings(result, out_dir)
    text = f"{result['device_name']}: GEMM {result['gemm_tflops']:.2f} TFLOP/s ({result['dtype']}), copy {result['copy_gbs']:.1f} GB/s -> {path}"
    emit(result, as_json, text)


