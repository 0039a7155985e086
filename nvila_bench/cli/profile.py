"""`nvila-bench profile`: torch.profiler traces, per-stage top operators, memory and energy of one point
(suites/profile.py measures it). torch and the profiler load only when the command runs."""

from __future__ import annotations

from pathlib import Path

import click

from .common import ImageSize, PresetName
from .run import MAX_ITERATIONS

MAX_STEPS = 1000  # profiled steps of one schedule phase: every traced step's events are kept in memory


@click.command(name="profile")
@click.option(
    "--preset",
    "cfgs",
    type=PresetName(),
    required=True,
    multiple=True,
    help="A preset name (one: a profile is of one point).",
)
@click.option(
    "--stage", required=True, type=click.Choice(["prefill", "decode", "train"]), help="What one profiled step runs."
)
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda[:N].")
@click.option("--dtype", help="float32 / bfloat16 / float16 (default: bf16 on cuda, fp32 on cpu).")
@click.option(
    "--image", "images", type=ImageSize(), multiple=True, help="Image WxH; repeat for a multi-image request [448x448]."
)
@click.option("--video-frames", type=int, help="Frames of one video in the request.")
@click.option("--no-temporal-pool", is_flag=True, help="Disable TSP temporal pooling.")
@click.option("--prompt-tokens", default=64, show_default=True, help="Text tokens after the media.")
@click.option("--new-tokens", default=32, show_default=True, help="decode: tokens generated per step, EOS ignored.")
@click.option("--batch-size", default=1, show_default=True, help="Identical requests per batch.")
@click.option("--attn", default="sdpa", show_default=True, help="sdpa, eager or flash_attention_2.")
@click.option(
    "--cache", type=click.Choice(["dynamic", "static"]), help="decode: the eager engine's KV cache [dynamic]."
)
@click.option(
    "--wait", default=1, show_default=True, type=click.IntRange(0, MAX_STEPS), help="Schedule: steps before tracing."
)
@click.option(
    "--warmup",
    default=1,
    show_default=True,
    type=click.IntRange(0, MAX_STEPS),
    help="Schedule: traced steps discarded.",
)
@click.option(
    "--active", default=3, show_default=True, type=click.IntRange(1, MAX_STEPS), help="Schedule: traced steps kept."
)
@click.option(
    "--repeats",
    default=5,
    show_default=True,
    type=click.IntRange(1, MAX_ITERATIONS),
    help="Unprofiled steps timed (the overhead's reference).",
)
@click.option("--top", default=10, show_default=True, type=click.IntRange(min=1), help="Operators kept per stage.")
@click.option("--with-stack", is_flag=True, help="Record Python stacks (larger traces, more overhead).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
def profile(
    cfgs,
    stage,
    device,
    dtype,
    images,
    video_frames,
    no_temporal_pool,
    prompt_tokens,
    new_tokens,
    batch_size,
    attn,
    cache,
    wait,
    warmup,
    active,
    repeats,
    top,
    with_stack,
    out_dir,
):
    """Profile a prefill, decode or train step (--stage): TensorBoard and Chrome traces, top operators per
    stage, the profiler's overhead; on CUDA also a memory snapshot and energy. Appends a "profile" record to
    OUT/results.jsonl. (The `profile` suite of `nvila-bench run`, with the profiler's option names.)"""
    from nvila_bench.core.measuring.result_files import read_results
    from nvila_bench.suites.registry import get_suite

    from .run import run_suite

    if len(cfgs) > 1:  # `run` sweeps several; a profile would keep the last one without a word
        raise click.BadParameter(
            f"a profile is of one preset, got {len(cfgs)}: {', '.join(c.name for c in cfgs)}", param_hint="--preset"
        )
    (cfg,) = cfgs
    if video_frames is not None and video_frames < 1:
        raise click.BadParameter(f"must be a positive integer, got {video_frames}", param_hint="--video-frames")
    common = {
        "presets": (cfg.name,),
        "device": device,
        "dtypes": (dtype,) if dtype else (),
        "images": images,
        "video_frames": (video_frames,) if video_frames else (),
        "no_temporal_pool": no_temporal_pool,
        "prompt_tokens": (prompt_tokens,),
        "new_tokens": (new_tokens,),
        "batch_sizes": (batch_size,),
        "attn": attn,
        "caches": (cache,) if cache else (),
        "suite_file": None,
        "hardware": None,
        "ceilings_file": None,
        "isolate": False,
        "processes": 1,
        "quiet": True,
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
