"""`nvila-bench profile`: torch.profiler traces, per-stage top operators, memory and energy of one point.

cli.py builds the command with its own option types (`profile_command(ImageSize(), PresetName())`), so this
module never imports cli.py. torch and the profiler load only when the command runs.
"""

from __future__ import annotations

import click


def profile_command(image_size: click.ParamType, preset: click.ParamType) -> click.Command:
    """The `profile` click command; `image_size` parses WxH, `preset` a preset name (as in `run`)."""
    options = [
        click.option("--preset", "cfg", type=preset, required=True, help="A preset name."),
        click.option("--stage", required=True, type=click.Choice(["prefill", "decode", "train"]), help="What one profiled step runs."),
        click.option("--device", default="cpu", show_default=True, help="cpu or cuda[:N]."),
        click.option("--dtype", help="float32 / bfloat16 / float16 (default: bf16 on cuda, fp32 on cpu)."),
        click.option("--image", "images", type=image_size, multiple=True, help="Image WxH; repeat for a multi-image request [448x448]."),
        click.option("--video-frames", type=int, help="Frames of one video in the request."),
        click.option("--no-temporal-pool", is_flag=True, help="Disable TSP temporal pooling."),
        click.option("--prompt-tokens", default=64, show_default=True, help="Text tokens after the media."),
        click.option("--new-tokens", default=32, show_default=True, help="decode: tokens generated per step, EOS ignored."),
        click.option("--batch-size", default=1, show_default=True, help="Identical requests per batch."),
        click.option("--attn", default="sdpa", show_default=True, help="sdpa, eager or flash_attention_2."),
        click.option("--cache", type=click.Choice(["dynamic", "static"]), default="dynamic", show_default=True, help="decode: KV cache."),
        click.option("--wait", default=1, show_default=True, type=click.IntRange(min=0), help="Schedule: steps before tracing."),
        click.option("--warmup", default=1, show_default=True, type=click.IntRange(min=0), help="Schedule: traced steps discarded."),
        click.option("--active", default=3, show_default=True, type=click.IntRange(min=1), help="Schedule: traced steps kept."),
        click.option("--repeats", default=5, show_default=True, type=click.IntRange(min=1), help="Unprofiled steps timed (the overhead's reference)."),
        click.option("--top", default=10, show_default=True, type=click.IntRange(min=1), help="Operators kept per stage."),
        click.option("--with-stack", is_flag=True, help="Record Python stacks (larger traces, more overhead)."),
        click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory."),
    ]  # fmt: skip
    command = profile
    for option in reversed(options):
        command = option(command)
    return click.command(name="profile")(command)


def profile(cfg, stage, device, dtype, images, video_frames, no_temporal_pool, prompt_tokens, new_tokens, batch_size,
            attn, cache, wait, warmup, active, repeats, top, with_stack, out_dir):
    """Profile a prefill, decode or train step (--stage): TensorBoard and Chrome traces, top operators per
    stage, the profiler's overhead; on CUDA also a memory snapshot and energy. Appends a "profile" record to
    OUT/results.jsonl."""
    import torch

    from nvila_bench.core.env import capture_environment
    from nvila_bench.core.point import BenchPoint
    from nvila_bench.suites.profile import Schedule, profile_point
    from nvila_bench.core.results import ResultWriter, make_record, new_run_id

    if video_frames is not None and video_frames < 1:
        raise click.BadParameter(f"must be a positive integer, got {video_frames}", param_hint="--video-frames")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise click.UsageError("--device cuda, but torch sees no CUDA device here")
    schedule = Schedule(wait, warmup, active)
    point = BenchPoint(
        cfg.name, device, dtype, tuple(images) or (() if video_frames else ((448, 448),)), video_frames,
        not no_temporal_pool, prompt_tokens, batch_size, new_tokens, attn, cache,
        extra={"stage": stage, "schedule": {"wait": wait, "warmup": warmup, "active": active}, "with_stack": with_stack},
    )  # fmt: skip
    metrics = profile_point(point, stage, schedule, out_dir, repeats, top, with_stack)
    writer = ResultWriter(out_dir)
    writer.write(make_record("profile", point.to_config(), metrics, new_run_id(), capture_environment(attn, device)))
    click.echo(profile_text(metrics))
    click.echo(f"profile: {point.label} {stage} -> {writer.path}, traces in {writer.path.parent / 'tb'}", err=True)


def profile_text(metrics: dict) -> str:
    """The terminal summary: time per stage, top operators, overhead, energy where measured."""
    import pandas as pd

    ms = lambda s: "" if s is None else f"{s * 1e3:.3f}"  # noqa: E731
    gflop = lambda f: "" if f is None else f"{f / 1e9:.3f}"  # noqa: E731
    stages = [{"stage": r["stage"], "ms/step": ms(r["seconds"]), "self CPU ms": ms(r["self_cpu_s"]),
               "self CUDA ms": ms(r["self_cuda_s"]), "GFLOP": gflop(r["flops"])} for r in metrics["stage_times"]["value"]]
    ops = [{"stage": r["stage"], "op": r["op"], "self CPU ms": ms(r["self_cpu_s"]), "self CUDA ms": ms(r["self_cuda_s"]),
            "calls": f"{r['calls']:g}", "GFLOP": gflop(r["flops"])} for r in metrics["top_ops"]["value"]]
    plain, prof = metrics["unprofiled_step_time"]["value"], metrics["profiled_step_time"]["value"]
    overhead = metrics["profiler_overhead"]["value"]
    lines = [pd.DataFrame(stages).to_string(index=False), "", pd.DataFrame(ops).to_string(index=False), "",
             f"step: {ms(plain)} ms without the profiler, {ms(prof)} ms with it ({overhead:.2f}x)"]
    if "energy_j" in metrics:
        lines.append(f"energy: {metrics['joules_per_token']['value']:.4g} J/token, {metrics['avg_power_w']['value']:.1f} W average")
    return "\n".join(lines)
