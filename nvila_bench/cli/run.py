"""`nvila-bench run SUITE`: one command per registered suite, generated from the registry.

Every suite command takes the common options (a point's settings as sweep axes and the measuring rules, both
generated from their declarations by options.py; the run's own: --config, --out, ...) and the suite's own
(`Suite.options`). The flow is one way: options -> the suite's points -> the runner measures each -> one writer
appends its record.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from .ceilings import ceilings_of, check_ceilings_device
from .common import check_device
from .options import RUN_OPTIONS, FiniteFloat, axes_given, measure_config, measure_options, point_options

if TYPE_CHECKING:  # the registry loads when a suite's command is asked for: `nvila-bench --help` needs none
    from nvila_bench.suites.registry import Suite

PROGRESS_DELAY = 3.0  # seconds before the progress bar shows: a sweep of a few seconds needs none


class SuiteGroup(click.Group):
    """Subcommands from the suite registry, each suite module imported only when it runs."""

    def list_commands(self, ctx) -> list[str]:
        from nvila_bench.suites.registry import suite_names

        return suite_names()

    def get_command(self, ctx, name):
        from nvila_bench.suites.registry import get_suite, suite_names

        return suite_command(get_suite(name)) if name in suite_names() else None


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
    own = [option.name for option in suite.options]

    def callback(**kw):
        ctx = click.get_current_context()
        options = {name: kw.pop(name) for name in own}
        defaults = (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)
        kw["given"] = {k for k in kw if ctx.get_parameter_source(k) not in defaults}  # what the user wrote
        return run_suite(suite, kw, options)

    command = callback
    common = [*point_options(), *RUN_OPTIONS, *measure_options()]
    for option in reversed([*common, *map(_click_option, suite.options)]):
        command = option(command)
    return click.command(name=suite.name, help=suite.help, epilog=metrics_epilog(suite))(command)


def metrics_epilog(suite: Suite) -> str | None:
    """What the suite writes, from its declarations: the metrics the gate compares by default and the headline."""
    if not suite.metrics:
        return None
    gated = [m.name for m in suite.metrics if m.gated]
    headline = [m.name for m in suite.metrics if m.headline and not m.gated]
    parts = [
        f"Gated by default: {', '.join(gated)}." if gated else "",
        f"Headline: {', '.join(headline)}." if headline else "",
    ]
    return " ".join([*filter(None, parts), f"{len(suite.metrics)} metrics in all, with units: docs/cli.md."])


def sweep_axes(suite: Suite, c: dict) -> dict[str, list]:
    """The sweep axes of the command line's settings and of a --config file; options given once are one-value
    axes. A value the file sets is used: a command-line default never replaces it, and the same setting given in
    both places with different values is refused (one line)."""
    from nvila_bench.runner.suite_file import load_suite_file

    axes = {}
    if c["suite_file"]:
        file_suite, axes = load_suite_file(c["suite_file"])
        if file_suite and file_suite != suite.name:
            raise click.UsageError(f"{c['suite_file']} is a {file_suite!r} suite file, not {suite.name!r}")
    # c["given"] None: every option counts as written (the profile command)
    for name, (flag, values, written) in axes_given(c, c.get("given")).items():
        if name not in axes:
            axes[name] = values
        elif written and values != axes[name]:
            raise click.UsageError(
                f"{flag} {', '.join(map(_text, values))} on the command line and {name} = "
                f"{', '.join(map(_text, axes[name]))} in {c['suite_file']}: give it in one place"
            )
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
    from nvila_bench.suites.registry import SuiteError, jobs_of

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


def summary_line(name: str, records: list, path) -> str:
    """e.g. "finetune-memory: 6 record(s) (4 ok, 2 skipped: QLoRA needs a CUDA GPU) -> OUT/results.jsonl"."""
    from nvila_bench.core.measuring.results import STATUSES

    counts = Counter(r.status for r in records)
    parts = [f"{counts[status]} {status}" for status in STATUSES if counts[status]]
    reasons = "; ".join(dict.fromkeys(r.error for r in records if r.status == "skipped" and r.error))
    parts = [f"{part}: {reasons}" if part.endswith(" skipped") and reasons else part for part in parts]
    return f"{name}: {len(records)} record(s) ({', '.join(parts)}) -> {path}"


def progress_bar(name: str, total: int, c: dict):
    """A tqdm bar on stderr (point i of N, its settings, an ETA), or None: off with --quiet, and where stderr is
    not a terminal unless --progress is given (then it shows at once; on a terminal after PROGRESS_DELAY)."""
    if c["quiet"] or not (c.get("progress") or sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    delay = 0.0 if c.get("progress") else PROGRESS_DELAY
    return tqdm(total=total, desc=name, unit="point", file=sys.stderr, delay=delay, dynamic_ncols=True)


def announced(jobs: list, bar):
    """The jobs, each named on the bar as it starts: "prefill point 2/6" and its settings."""
    for i, job in enumerate(jobs, 1):
        if bar is not None:
            bar.set_description_str(f"{job.suite} point {i}/{len(jobs)}", refresh=False)
            bar.set_postfix_str(getattr(job.point, "label", ""))
        yield job


def run_suite(suite: Suite, c: dict, options: dict) -> int:
    from nvila_bench.core.analysis.hardware import resolve_peaks
    from nvila_bench.core.measuring.env import capture_environment
    from nvila_bench.core.measuring.result_files import ResultWriter
    from nvila_bench.core.measuring.results import new_run_id
    from nvila_bench.core.measuring.session import Session
    from nvila_bench.runner.sweep import run_sweep

    measure = measure_config(c)
    jobs, c = plan(suite, c, options)
    device = c["device"]
    if os.environ.get("WORLD_SIZE", "1") != "1":
        return run_torchrun(suite, jobs, measure, c)
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
    bar = progress_bar(suite.name, len(jobs), c)
    records = []

    def on_record(job, record):
        records.append(record)
        line = suite.describe(record) if suite.describe and not c["quiet"] else None
        if bar is not None:
            bar.update(1)
            if line:
                bar.write(line, file=sys.stderr)
        elif line:
            click.echo(line, err=True)

    try:
        run_sweep(announced(jobs, bar), writer, session, run_id, environment, c["isolate"], c["processes"], on_record)
    except KeyboardInterrupt:
        click.echo(f"nvila-bench: interrupted: {writer.count} completed point(s) kept in {writer.path}", err=True)
        return 130
    finally:
        if bar is not None:
            bar.close()
    if not c["quiet"]:
        click.echo(summary_line(suite.name, records, writer.path), err=True)
    return 1 if suite.fail_on_error and any(r.status != "ok" for r in records) else 0


def run_torchrun(suite: Suite, jobs: list, measure, c: dict) -> int:
    """Under torchrun: the train suite's points, data-parallel (FSDP2; runner/distributed.py)."""
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


run = SuiteGroup(
    name="run", help="Measure a suite over the cartesian product of the given settings; writes OUT/results.jsonl."
)
