"""`nvila-bench profile`: torch.profiler traces, per-stage top operators, memory and energy of one point
(suites/profile.py measures it). torch and the profiler load only when the command runs."""

from __future__ import annotations

from pathlib import Path

import click

from nvila_bench.core.measuring.settings import declared
from nvila_bench.core.measuring.timing import MeasureConfig

from .common import PresetName
from .options import point_options

MAX_STEPS = 1000  # profiled steps of one schedule phase: every traced step's events are kept in memory
# A profile is of one point: these settings, each given once (the declared options of `run`, generated alike).
SETTINGS = (
    "preset",
    "device",
    "dtype",
    "images",
    "video_frames",
    "temporal_pool",
    "prompt_tokens",
    "new_tokens",
    "batch_size",
    "attn_implementation",
    "cache",
)
OVERRIDES = {
    "preset": {
        "type": PresetName(),
        "required": True,
        "multiple": True,
        "help": "A preset name (one: a profile is of one point).",
    },
    "images": {"help": "Image WxH; repeat for a multi-image request [448x448]."},
    "new_tokens": {"help": "decode: tokens generated per step, EOS ignored."},
    "cache": {"default": None, "show_default": False, "help": "decode: the eager engine's KV cache [dynamic]."},
}


def _options(f):
    repeats = declared(MeasureConfig)["repeats"].setting
    steps = click.IntRange(0, MAX_STEPS)
    for option in reversed(
        [
            *point_options(names=SETTINGS, once=True, **OVERRIDES),
            click.option(
                "--stage",
                required=True,
                type=click.Choice(["prefill", "decode", "train"]),
                help="What one profiled step runs.",
            ),
            click.option("--wait", default=1, show_default=True, type=steps, help="Schedule: steps before tracing."),
            click.option(
                "--warmup", default=1, show_default=True, type=steps, help="Schedule: traced steps discarded."
            ),
            click.option(
                "--active",
                default=3,
                show_default=True,
                type=click.IntRange(1, MAX_STEPS),
                help="Schedule: traced steps kept.",
            ),
            click.option(
                "--repeats",
                default=5,
                show_default=True,
                type=click.IntRange(repeats.minimum, repeats.maximum),
                help="Unprofiled steps timed (the overhead's reference).",
            ),
            click.option(
                "--top", default=10, show_default=True, type=click.IntRange(min=1), help="Operators kept per stage."
            ),
            click.option("--with-stack", is_flag=True, help="Record Python stacks (larger traces, more overhead)."),
            click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory."),
        ]
    ):
        f = option(f)
    return f


@click.command(name="profile")
@_options
def profile(stage, wait, warmup, active, repeats, top, with_stack, out_dir, **settings):
    """Profile a prefill, decode or train step (--stage): TensorBoard and Chrome traces, top operators per
    stage, the profiler's overhead; on CUDA also a memory snapshot and energy. Appends a "profile" record to
    OUT/results.jsonl. (The `profile` suite of `nvila-bench run`, with the profiler's option names.)"""
    from nvila_bench.core.measuring.result_files import read_results
    from nvila_bench.suites.registry import get_suite

    from .run import run_suite

    cfgs = settings["preset"]
    if len(cfgs) > 1:  # `run` sweeps several; a profile would keep the last one without a word
        raise click.BadParameter(
            f"a profile is of one preset, got {len(cfgs)}: {', '.join(c.name for c in cfgs)}", param_hint="--preset"
        )
    (cfg,) = cfgs
    if settings["video_frames"] is not None and settings["video_frames"] < 1:
        raise click.BadParameter(
            f"must be a positive integer, got {settings['video_frames']}", param_hint="--video-frames"
        )
    common = settings | {
        "preset": cfg.name,
        "given": None,  # every setting counts as written
        "suite_file": None,
        "hardware": None,
        "ceilings_file": None,
        "isolate": False,
        "processes": 1,
        "quiet": True,
        "progress": False,
        "out_dir": out_dir,
        "warmup": 0,
        "warmup_seconds": 0.0,
        "repeats": repeats,
        "min_seconds": 0.0,
        "max_repeats": repeats,
    }
    options = {
        "stage": stage,
        "wait": wait,
        "schedule_warmup": warmup,
        "active": active,
        "top": top,
        "with_stack": with_stack,
    }
    code = run_suite(get_suite("profile"), common, options)
    record = read_results(out_dir)[-1]
    if not record.ok:
        raise click.ClickException(f"profile failed: {record.error}")
    click.echo(profile_text({k: m.to_dict() for k, m in record.metrics.items()}))
    click.echo(
        f"profile: {cfg.name} {stage} -> {Path(out_dir) / 'results.jsonl'}, traces in {Path(out_dir) / 'tb'}", err=True
    )
    return code


def profile_text(metrics: dict) -> str:
    """The terminal summary: time per stage, top operators, overhead, energy where measured."""
    import pandas as pd

    def ms(s):
        return "" if s is None else f"{s * 1e3:.3f}"

    def gflop(f):
        return "" if f is None else f"{f / 1e9:.3f}"

    stages = [
        {
            "stage": r["stage"],
            "ms/step": ms(r["seconds"]),
            "self CPU ms": ms(r["self_cpu_s"]),
            "self CUDA ms": ms(r["self_cuda_s"]),
            "GFLOP": gflop(r["flops"]),
        }
        for r in metrics["stage_times"]["value"]
    ]
    ops = [
        {
            "stage": r["stage"],
            "op": r["op"],
            "self CPU ms": ms(r["self_cpu_s"]),
            "self CUDA ms": ms(r["self_cuda_s"]),
            "calls": f"{r['calls']:g}",
            "GFLOP": gflop(r["flops"]),
        }
        for r in metrics["top_ops"]["value"]
    ]
    plain, prof = metrics["unprofiled_step_time"]["value"], metrics["profiled_step_time"]["value"]
    overhead = metrics["profiler_overhead"]["value"]
    lines = [
        pd.DataFrame(stages).to_string(index=False),
        "",
        pd.DataFrame(ops).to_string(index=False),
        "",
        f"step: {ms(plain)} ms without the profiler, {ms(prof)} ms with it ({overhead:.2f}x)",
    ]
    if "energy_j" in metrics:
        lines.append(
            f"energy: {metrics['joules_per_token']['value']:.4g} J/token, {metrics['avg_power_w']['value']:.1f} W "
            "average"
        )
    return "\n".join(lines)
