"""The `nvila-bench` command line (click).

Bad input never shows a traceback: it prints one line `nvila-bench: error: ...` and exits with code 2.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import asdict, replace
from pathlib import Path

import click

from nvila_bench.model.config import NVILAConfig
from nvila_bench.model.presets import get_preset, is_tiny, preset_names
from nvila_bench.model.tokens import count_visual_tokens
from nvila_bench.cli.profile import profile_command

EXIT_USAGE = 2
_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


class ImageSize(click.ParamType):
    """WxH, e.g. 1920x1080, both positive."""

    name = "WxH"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        m = _SIZE.match(str(value))
        if not m or int(m[1]) < 1 or int(m[2]) < 1:
            self.fail(f"{value!r} is not an image size: expected WxH with positive integers, e.g. 1920x1080", param, ctx)
        return int(m[1]), int(m[2])


class PresetName(click.ParamType):
    name = "PRESET"

    def convert(self, value, param, ctx):
        if isinstance(value, NVILAConfig):
            return value
        try:
            return get_preset(value)
        except KeyError as e:
            self.fail(str(e), param, ctx)


def _emit(data, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2) if as_json else text)


def _table(rows: list[dict]) -> str:
    import pandas as pd

    return pd.DataFrame(rows).to_string(index=False)


def _request_options(f):
    """--preset, --image (repeatable: one multi-image request), --video-frames, --no-temporal-pool."""
    for option in reversed([
        click.option("--preset", "cfg", type=PresetName(), required=True, help="A preset name."),
        click.option("--image", "images", type=ImageSize(), multiple=True, help="Image WxH; repeat for a multi-image request."),
        click.option("--video-frames", type=int, help="Frames of one video in the request."),
        click.option("--no-temporal-pool", is_flag=True, help="Disable TSP temporal pooling (presets that have it)."),
    ]):
        f = option(f)
    return f


def _check_request(images, video_frames) -> None:
    if video_frames is not None and video_frames < 1:
        raise click.BadParameter(f"must be a positive integer, got {video_frames}", param_hint="--video-frames")
    if not images and video_frames is None:
        raise click.UsageError("give at least one --image WxH or --video-frames N")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nvila-bench")
def cli():
    """Benchmark NVILA against VILA1.5: token counts, latency, training cost, accuracy."""


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def presets(as_json):
    """List the model presets."""
    rows = [preset_row(get_preset(n)) for n in preset_names()]
    _emit(rows, as_json, _table([{k: r[k] for k in ("name", "family", "llm", "vision_px", "projector", "image_mode", "tokens_per_tile")} for r in rows]))


def preset_row(cfg: NVILAConfig) -> dict:
    return {
        "name": cfg.name,
        "family": cfg.family,
        "tiny": is_tiny(cfg),
        "llm": f"{cfg.llm.arch} {cfg.llm.hidden_size}x{cfg.llm.num_layers}",
        "vision_px": cfg.vision.image_size,
        "projector": cfg.projector.type,
        "image_mode": cfg.media.image_mode,
        "tokens_per_tile": cfg.tokens_per_tile,
        "temporal_pool": list(cfg.media.temporal_pool) if cfg.media.temporal_pool else None,
        "description": cfg.description,
    }


def model_info(cfg: NVILAConfig) -> dict:
    """Exact parameter counts from the modules transformers builds on the meta device (no memory)."""
    from nvila_bench.model.nvila import build_model

    counts = build_model(cfg, device="meta", seed=None).param_counts()
    return {
        "preset": cfg.name,
        "family": cfg.family,
        "description": cfg.description,
        "params": counts,
        "tokens_per_tile": cfg.tokens_per_tile,
        "vision_layers_used": cfg.vision.layers_used,
        "config": asdict(cfg),
    }


@cli.command()
@click.option("--preset", "cfg", type=PresetName(), help="A preset name (see `nvila-bench presets`).")
@click.option("--checkpoint", type=click.Path(file_okay=False), help="A checkpoint directory in the official layout.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(cfg, checkpoint, as_json):
    """Architecture and exact parameter counts of a preset or a checkpoint."""
    if (cfg is None) == (checkpoint is None):
        raise click.UsageError("give exactly one of --preset or --checkpoint")
    if checkpoint:
        from nvila_bench.model.checkpoint import config_from_checkpoint

        cfg = config_from_checkpoint(checkpoint)
    data = model_info(cfg)
    p = data["params"]
    text = "\n".join(
        [f"{cfg.name} ({cfg.family}): {cfg.description}"]
        + [f"  {k:<9} {v:>15,} params" for k, v in p.items()]
        + [f"  {cfg.tokens_per_tile} visual tokens per tile; ViT runs {cfg.vision.layers_used} of {cfg.vision.num_layers} layers"]
    )
    _emit(data, as_json, text)


@cli.command()
@_request_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def tokens(cfg, images, video_frames, no_temporal_pool, as_json):
    """Visual token counts of one request, computed without building a model."""
    _check_request(images, video_frames)
    count = count_visual_tokens(cfg, list(images), video_frames, temporal_pool=not no_temporal_pool)
    data = count.to_dict()
    lines = [f"{cfg.name}: {data['total_tokens']} LLM positions for media"]
    if data["images"]:
        lines.append(_table([{"image": f"{i['width']}x{i['height']}", "grid": "x".join(map(str, i["grid"])), "vit_tiles": i["vit_tiles"], "visual_tokens": i["visual_tokens"], "tokens": i["tokens"]} for i in data["images"]]))
    if data["video"]:
        v = data["video"]
        lines.append(f"video: {v['frames']} frames, {'TSP-pooled' if v['pooled'] else 'not pooled'}, {v['visual_tokens']} visual tokens, {v['tokens']} positions")
    _emit(data, as_json, "\n".join(lines))


@cli.command()
def summary():
    """Model summary: exact parameter counts, token tables, every tiny preset end to end."""
    from nvila_bench.cli.summary import print_summary

    print_summary(click.echo)


def _measure_options(f):
    for option in reversed([
        click.option("--warmup", default=2, show_default=True, help="Minimum warm-up iterations."),
        click.option("--warmup-seconds", default=0.0, show_default=True, help="Minimum warm-up time."),
        click.option("--repeats", default=5, show_default=True, help="Minimum measured iterations."),
        click.option("--min-seconds", default=1.0, show_default=True, help="Minimum measuring time per point."),
        click.option("--max-repeats", default=1000, show_default=True, help="Cap on measured iterations."),
    ]):
        f = option(f)
    return f


def _training_options(f):
    """Options of the train and finetune-memory suites (collected into `train_kw`)."""
    for option in reversed([
        click.option("--stage", "stages", multiple=True, type=click.Choice(["projector", "projector-llm", "full"]),
                     help="train: what learns (NVILA stage 1, 3, 4) [full]; a sweep axis."),
        click.option("--recipe", "recipes", multiple=True,
                     help="finetune-memory: VISION-LLM recipe, e.g. ln-lora, full-full, frozen-qlora, or nvila [nvila]; a sweep axis."),
        click.option("--paper-table", is_flag=True,
                     help="finetune-memory: the paper's fine-tuning table (batch 1, 448 px, context 300, its six recipes)."),
        click.option("--grad-accum", default=1, show_default=True, type=click.IntRange(min=1), help="train: micro-batches per step."),
        click.option("--grad-ckpt", is_flag=True, help="train: gradient checkpointing of every ViT and LLM layer."),
        click.option("--fp8", is_flag=True, help="train: torchao float8 training of the LLM (Ada / Hopper GPUs)."),
        click.option("--compile", "compile_", is_flag=True, help="train: torch.compile every ViT and LLM layer."),
        click.option("--autocast", is_flag=True, help="train: fp32 weights under bf16 autocast (default: weights in --dtype)."),
        click.option("--lr", default=2e-5, show_default=True, type=float, help="train / finetune-memory: learning rate."),
        click.option("--lora-rank", default=64, show_default=True, type=click.IntRange(min=1), help="LoRA rank."),
        click.option("--lora-alpha", default=16.0, show_default=True, type=float, help="LoRA alpha."),
        click.option("--lora-dropout", default=0.05, show_default=True, type=float, help="LoRA dropout."),
        click.option("--checkpoint", type=click.Path(), help="accuracy: official-layout checkpoint directory (else --preset, random weights)."),
        click.option("--tasks", "tasks", help="accuracy: synthetic, paper-image, paper-video or lmms-eval task names, comma-separated."),
        click.option("--limit", type=click.IntRange(min=1), help="accuracy: at most this many samples per task."),
        click.option("--data-dir", type=click.Path(file_okay=False), help="accuracy: where the synthetic tasks live [~/.cache/nvila-bench/synthetic]."),
    ]):
        f = option(f)
    return f


@cli.command(name="run")
@click.argument("suite", type=click.Choice(["prefill", "decode", "scale-then-compress", "overhead", "train", "finetune-memory", "accuracy"]))
@click.option("--preset", "presets", multiple=True, help="Preset(s); several make a sweep axis.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda[:N].")
@click.option("--dtype", "dtypes", multiple=True, help="float32 / bfloat16 / float16 (default: bf16 on cuda, fp32 on cpu).")
@click.option("--image", "images", type=ImageSize(), multiple=True, help="Image WxH; repeat for a multi-image request.")
@click.option("--video-frames", "video_frames", type=int, multiple=True, help="Video frames (sweep axis).")
@click.option("--no-temporal-pool", is_flag=True, help="Disable TSP temporal pooling.")
@click.option("--prompt-tokens", "prompt_tokens", type=int, multiple=True, help="Text tokens after the media [64].")
@click.option("--new-tokens", "new_tokens", type=int, multiple=True, help="Decode: tokens generated, EOS ignored [32].")
@click.option("--batch-size", "batch_sizes", type=int, multiple=True, help="Identical requests per batch [1].")
@click.option("--attn", "attn", default="sdpa", show_default=True, help="sdpa, eager or flash_attention_2.")
@click.option("--cache", "caches", type=click.Choice(["dynamic", "static"]), multiple=True, help="Decode KV cache [dynamic].")
@click.option("--config", "suite_file", type=click.Path(dir_okay=False), help="TOML/YAML suite file; lists are sweep axes.")
@click.option("--tiny", is_flag=True, help="scale-then-compress: the tiny stand-ins, measurable on CPU.")
@click.option("--hardware", help="Hardware table entry for analytic floors [scale-then-compress: h100-sxm].")
@click.option("--ceilings", "ceilings_file", type=click.Path(dir_okay=False), help="ceilings.json from `nvila-bench ceilings`.")
@click.option("--isolate", is_flag=True, help="Run every point in its own subprocess.")
@click.option("--processes", default=1, show_default=True, type=click.IntRange(min=1),
              help="Measure every point in this many fresh subprocesses; the CI then covers run-to-run noise.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@_measure_options
@_training_options
@click.pass_context
def run_suite(ctx, suite, presets, device, dtypes, images, video_frames, no_temporal_pool, prompt_tokens, new_tokens,
              batch_sizes, attn, caches, suite_file, tiny, hardware, ceilings_file, isolate, processes, quiet, out_dir,
              warmup, warmup_seconds, repeats, min_seconds, max_repeats, **train_kw):
    """Measure a suite over the cartesian product of the given settings; writes OUT/results.jsonl.

    SUITE: prefill (TTFT and its stages), decode (time per output token), scale-then-compress (VILA1.5 vs
    NVILA scaled-only vs NVILA, one image and one video), overhead (the harness's own cost per iteration),
    train (optimizer steps of an NVILA training stage), finetune-memory (memory and speed per tuning recipe,
    measured and predicted). Run train under `torchrun --nproc-per-node N` for FSDP2 data parallel.
    """
    measure_kw = dict(warmup=warmup, warmup_seconds=warmup_seconds, repeats=repeats, min_seconds=min_seconds, max_repeats=max_repeats)
    if suite == "accuracy":
        return _run_accuracy(ctx, presets, device, dtypes, no_temporal_pool, out_dir, quiet, train_kw)
    if train_kw["checkpoint"] or train_kw["tasks"] or train_kw["limit"] or train_kw["data_dir"]:
        raise click.UsageError("--checkpoint / --tasks / --limit / --data-dir belong to the accuracy suite")
    from nvila_bench.core.env import capture_environment
    from nvila_bench.core.results import ResultWriter, new_run_id
    from nvila_bench.suites.common import Session, resolve_peaks
    from nvila_bench.runner.sweep import run_sweep
    from nvila_bench.core.timing import MeasureConfig

    mcfg = MeasureConfig(**measure_kw)
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise click.UsageError("--device cuda, but torch sees no CUDA device here")
    if suite == "scale-then-compress":
        if presets or suite_file:
            raise click.UsageError("scale-then-compress compares fixed presets: drop --preset / --config (use --tiny on CPU)")
        measured_suites, points = _comparison(device, dtypes, images, video_frames, prompt_tokens, new_tokens, tiny)
    else:
        measured_suites = [suite]
        if suite == "finetune-memory" and train_kw["paper_table"]:
            images, prompt_tokens = images or ((448, 448),), prompt_tokens or (None,)
        points = _sweep_points(suite, presets, device, dtypes, images, video_frames, no_temporal_pool,
                               tuple(p for p in prompt_tokens if p is not None), new_tokens, batch_sizes, attn, caches,
                               suite_file)  # fmt: skip
        if suite in ("train", "finetune-memory"):
            from nvila_bench.suites.training_points import training_points

            points = training_points(suite, points, train_kw, paper_context=None in prompt_tokens)
            if os.environ.get("WORLD_SIZE", "1") != "1":
                from nvila_bench.runner.distributed import run_distributed

                return run_distributed(points, MeasureConfig(**measure_kw), out_dir, quiet)
    writer, run_id = ResultWriter(out_dir), new_run_id()
    if suite == "scale-then-compress":
        from nvila_bench.suites.scale_then_compress import analytic_record

        analytic_points = [replace(p, dtype=p.dtype if dtypes else "bfloat16") for p in points]
        for point in analytic_points:
            writer.write(analytic_record(point, hardware or "h100-sxm", run_id))
    ceilings_file = ceilings_file or _existing(Path(out_dir) / "ceilings.json")
    dtypes_run = {p.dtype for p in points} | ({"bfloat16"} if any(p.extra.get("autocast") for p in points) else set())
    session = Session({dtype: resolve_peaks(device, dtype, hardware, ceilings_file) for dtype in dtypes_run})
    environment = capture_environment(attn, device)
    counts = {"ok": 0, "oom": 0, "error": 0}
    total = len(points) * len(measured_suites)
    show = not quiet and sys.stderr.isatty()
    bar = click.progressbar(length=total, label=f"{suite}: {total} points", file=sys.stderr, show_eta=True,
                            item_show_func=lambda p: p.label if p else "") if show and total else None
    try:
        if bar is not None:
            bar.__enter__()
        for name in measured_suites:
            done = run_sweep(name, points, writer, mcfg, run_id, environment, session, isolate,
                             lambda point, record: bar.update(1, point) if bar is not None else None, processes)
            counts = {k: counts[k] + done[k] for k in counts}
    except KeyboardInterrupt:
        click.echo(f"nvila-bench: interrupted: {writer.count} completed point(s) kept in {writer.path}", err=True)
        ctx.exit(130)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if not quiet:
        summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "analytic only"
        click.echo(f"{suite}: {writer.count} record(s) ({summary}) -> {writer.path}", err=True)


def _run_accuracy(ctx, presets, device, dtypes, no_temporal_pool, out_dir, quiet, kw):
    """`run accuracy`: lmms-eval over our adapter, one record per task; exit 1 when a task failed."""
    from nvila_bench.core.env import capture_environment
    from nvila_bench.core.results import ResultWriter, new_run_id
    from nvila_bench.suites.accuracy import AccuracyRun, evaluate, expand_tasks

    if not kw["tasks"]:
        raise click.UsageError("accuracy needs --tasks (e.g. --tasks synthetic)")
    if bool(kw["checkpoint"]) == bool(presets) or len(presets) > 1:
        raise click.UsageError("accuracy takes one --preset (random weights) or --checkpoint DIR")
    if kw["checkpoint"] and not Path(kw["checkpoint"]).is_dir():
        raise click.UsageError(f"--checkpoint {kw['checkpoint']}: no such directory")
    if len(dtypes) > 1:
        raise click.UsageError("accuracy takes one --dtype")
    run = AccuracyRun(presets[0] if presets else None, kw["checkpoint"], tuple(expand_tasks(kw["tasks"])), kw["limit"],
                      device, dtypes[0] if dtypes else None, not no_temporal_pool, kw["data_dir"])  # fmt: skip
    writer, run_id = ResultWriter(out_dir), new_run_id()
    environment = capture_environment("sdpa", device)

    def show(record):
        if quiet:
            return
        task = record["config"]["task"]
        if record["status"] == "ok":
            m = record["metrics"]
            stderr = f" ± {m['stderr']['value']:.3f}" if "stderr" in m else ""
            chance = f" (chance {m['chance']['value']:.3f})" if "chance" in m else ""
            click.echo(f"accuracy: {task}: {m['metric']['value']} {m['score']['value']:.3f}{stderr}, n={m['n']['value']}{chance}", err=True)
        else:
            click.echo(f"accuracy: {task}: error: {record['error']}", err=True)

    try:
        records = evaluate(run, run_id, environment, lambda r: (writer.write(r), show(r)))
    except KeyboardInterrupt:
        click.echo(f"nvila-bench: interrupted: {writer.count} completed task(s) kept in {writer.path}", err=True)
        ctx.exit(130)
    failed = [r for r in records if r["status"] != "ok"]
    if not quiet:
        click.echo(f"accuracy: {writer.count} record(s) ({len(records) - len(failed)} ok, {len(failed)} error) -> {writer.path}", err=True)
    if failed:
        ctx.exit(1)


@cli.command(name="synthetic-data")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Directory for the data.")
@click.option("--seed", default=0, show_default=True, type=int)
def synthetic_data(out_dir, seed):
    """Write the synthetic tasks (images, splits, lmms-eval task YAMLs) to OUT."""
    from nvila_bench.core.synthetic_tasks import generate, write_lmms_tasks

    root = generate(out_dir, seed)
    click.echo(f"synthetic tasks -> {root}; lmms-eval include path {write_lmms_tasks(root)}", err=True)


@cli.command(name="train-synthetic")
@click.option("--preset", required=True, help="A tiny preset to train (e.g. vila-tiny).")
@click.option("--tasks", default="synthetic_colour,synthetic_count", show_default=True, help="Synthetic tasks to train on.")
@click.option("--steps", default=200, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--lr", default=1e-3, show_default=True, type=float)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--no-temporal-pool", is_flag=True, help="Train the video task without TSP.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Synthetic data [~/.cache/nvila-bench/synthetic].")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Checkpoint directory (official layout).")
def train_synthetic_command(preset, tasks, steps, batch_size, lr, seed, no_temporal_pool, data_dir, out_dir):
    """Train a tiny preset on the synthetic tasks' train split; save a checkpoint for `run accuracy --checkpoint`."""
    from nvila_bench.suites.accuracy import default_data_dir
    from nvila_bench.core.synthetic_tasks import TASKS
    from nvila_bench.suites.synthetic_train import save_trained, train_synthetic

    names = [t.strip() for t in tasks.split(",") if t.strip()]
    bad = [t for t in names if t not in TASKS]
    if bad or not names:
        raise click.UsageError(f"unknown synthetic task(s) {', '.join(bad) or '(none)'}; known: {', '.join(TASKS)}")
    if not is_tiny(get_preset(preset)):
        raise click.UsageError(f"train-synthetic trains tiny presets on CPU; {preset!r} is not one")
    model, tokenizer, losses = train_synthetic(preset, data_dir or default_data_dir(), names, steps, batch_size, lr, seed,
                                               not no_temporal_pool, log=lambda m: click.echo(m, err=True))  # fmt: skip
    path = save_trained(model, tokenizer, out_dir)
    click.echo(f"trained {preset} {steps} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}; checkpoint -> {path}", err=True)


def _sweep_points(suite, presets, device, dtypes, images, video_frames, no_temporal_pool, prompt_tokens, new_tokens,
                  batch_sizes, attn, caches, suite_file):
    from nvila_bench.runner.sweep import expand, load_suite_file

    axes = {}
    if suite_file:
        file_suite, axes = load_suite_file(suite_file)
        if file_suite and file_suite != suite:
            raise click.UsageError(f"{suite_file} is a {file_suite!r} suite file, not {suite!r}")
    cli_axes = {
        "preset": list(presets), "dtype": list(dtypes), "video_frames": list(video_frames),
        "prompt_tokens": list(prompt_tokens), "new_tokens": list(new_tokens), "batch_size": list(batch_sizes),
        "cache": list(caches),
    }  # fmt: skip
    axes |= {k: v for k, v in cli_axes.items() if v}
    axes |= {"device": [device], "attn_implementation": [attn]}
    if images:
        axes["images"] = [tuple(images)]
    if no_temporal_pool:
        axes["temporal_pool"] = [False]
    if "preset" not in axes:
        raise click.UsageError("give at least one --preset (or a --config file that lists presets)")
    if "images" not in axes and "video_frames" not in axes:
        axes["images"] = [((448, 448),)]
    return expand(axes)


def _comparison(device, dtypes, images, video_frames, prompt_tokens, new_tokens, tiny):
    """(suites to measure, points) of the scale-then-compress comparison; measured on a GPU, or on CPU for
    the tiny stand-ins; analytic only otherwise."""
    from nvila_bench.suites.scale_then_compress import comparison_points

    if len(images) > 1 or len(video_frames) > 1 or len(dtypes) > 1 or len(prompt_tokens) > 1 or len(new_tokens) > 1:
        raise click.UsageError("scale-then-compress takes one --image, --video-frames, --dtype, --prompt-tokens, --new-tokens")
    points = comparison_points(
        "tiny" if tiny else "real", images[0] if images else (1920, 1080), video_frames[0] if video_frames else 32,
        device, dtypes[0] if dtypes else None, prompt_tokens[0] if prompt_tokens else 64,
        new_tokens[0] if new_tokens else 32,
    )  # fmt: skip
    measurable = tiny or device.startswith("cuda")
    return (["prefill", "decode"] if measurable else []), points


def _existing(path: Path) -> str | None:
    return str(path) if path.is_file() else None


@cli.command()
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda[:N].")
@click.option("--dtype", default="bfloat16", show_default=True, help="GEMM dtype.")
@click.option("--size", default=4096, show_default=True, help="Square GEMM size.")
@click.option("--seconds", default=2.0, show_default=True, help="Time per measurement.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Writes OUT/ceilings.json.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def ceilings(device, dtype, size, seconds, out_dir, as_json):
    """Measure the achieved GEMM rate and copy bandwidth of this device (rooflines use them)."""
    from nvila_bench.core.hardware import measure_ceilings, save_ceilings

    result = measure_ceilings(device=device, dtype=dtype, size=size, seconds=seconds)
    path = save_ceilings(result, out_dir)
    text = f"{result['device_name']}: GEMM {result['gemm_tflops']:.2f} TFLOP/s ({result['dtype']}), copy {result['copy_gbs']:.1f} GB/s -> {path}"
    _emit(result, as_json, text)


@cli.command()
@_request_options
@click.option("--prompt-tokens", default=64, show_default=True, help="Text tokens after the media.")
@click.option("--context", type=int, help="Decode context length [prefill length].")
@click.option("--batch-size", default=1, show_default=True, help="Identical requests per batch.")
@click.option("--dtype", default="bfloat16", show_default=True, help="Weights and activations dtype.")
@click.option("--hardware", help="Hardware table entry for the time floor, e.g. h100-sxm.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def cost(cfg, images, video_frames, no_temporal_pool, prompt_tokens, context, batch_size, dtype, hardware, as_json):
    """Analytic FLOPs, minimum bytes and time floor per stage (multiply-add = 2 FLOPs, full N x N attention)."""
    from nvila_bench.core import costmodel
    from nvila_bench.core.hardware import get_hardware, hardware_keys
    from nvila_bench.core.point import canonical_dtype

    _check_request(images, video_frames)
    for name, value in (("--prompt-tokens", prompt_tokens), ("--batch-size", batch_size), ("--context", context)):
        if value is not None and value < (0 if name == "--prompt-tokens" else 1):
            raise click.BadParameter(f"out of range: {value}", param_hint=name)
    dtype = canonical_dtype(dtype)
    hw = get_hardware(hardware) if hardware else None
    costs = costmodel.request_costs(cfg, images, video_frames, not no_temporal_pool, prompt_tokens, context, batch_size, dtype)
    stages = {name: c.to_dict() for name, c in costs.items()}
    data = {"preset": cfg.name, "dtype": dtype, "batch_size": batch_size, "provenance": "analytic"} | stages
    lines = [f"{cfg.name} ({dtype}, batch {batch_size}), analytic:"]
    if hw is not None:
        data["hardware"] = hw.key
        for name, c in costs.items():
            stages[name]["time_floor_s"] = costmodel.time_floor(c, hw.peak_flops(dtype), hw.bandwidth)
    for name, st in stages.items():
        floor = f"  floor {st['time_floor_s'] * 1e3:9.3f} ms on {hw.key}" if hw is not None else ""
        lines.append(f"  {name:<12} {st['flops'] / 1e9:12.2f} GFLOP {st['bytes'] / 1e6:12.2f} MB{floor}")
    if hw is None:
        lines.append(f"  (add --hardware for time floors: {', '.join(hardware_keys())})")
    _emit(data, as_json, "\n".join(lines))


@cli.command()
@click.argument("results", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False), help="The HTML file to write.")
@click.option("--title", default="nvila-bench report", show_default=True, help="Page title.")
def report(results, out_file, title):
    """One self-contained HTML report from RESULTS (results files or directories)."""
    from nvila_bench.reports.render import render_report, write_atomic
    from nvila_bench.core.results import load_results

    records = load_results(results)
    path = write_atomic(out_file, render_report(records, list(results), title))
    click.echo(f"report: {len(records)} record(s) -> {path}", err=True)


@cli.command()
@click.argument("results_dir", type=click.Path())
@click.option("--out", "site_dir", required=True, type=click.Path(file_okay=False), help="Directory of the static site.")
@click.option("--threshold", default="5%", show_default=True, help="Smallest change flagged, as in `gate`.")
def dashboard(results_dir, site_dir, threshold):
    """History over many runs (each *.jsonl under RESULTS_DIR is one run): trends, flagged changes, reports."""
    from nvila_bench.core.gate import parse_threshold
    from nvila_bench.reports.dashboard import build_site

    path = build_site(results_dir, site_dir, parse_threshold(threshold))
    click.echo(f"dashboard -> {path}", err=True)


@cli.command(name="gate")
@click.option("--baseline", "baseline", required=True, multiple=True, type=click.Path(), help="Baseline results file or directory.")
@click.option("--candidate", "candidate", required=True, multiple=True, type=click.Path(), help="Candidate results file or directory.")
@click.option("--threshold", default="5%", show_default=True, help="Smallest change that counts, e.g. 5% or 0.05.")
@click.option("--metrics", "metrics", multiple=True, help="Metrics to gate (repeat or comma-separate) [ttft, tpot, decode_tokens_per_s, ...].")
@click.option("--summary-md", type=click.Path(dir_okay=False), help="Also write the Markdown summary here (e.g. $GITHUB_STEP_SUMMARY).")
@click.pass_context
def gate_command(ctx, baseline, candidate, threshold, metrics, summary_md):
    """Exit 0 when the candidate did not regress against the baseline, 1 when it did, 2 when the two cannot be
    compared. A point regresses only when the 95% CI of its change lies beyond the threshold."""
    from nvila_bench.core.gate import gate, markdown_summary, parse_threshold
    from nvila_bench.core.results import load_results

    base, cand = load_results(baseline), load_results(candidate)
    names = tuple(m.strip() for item in metrics for m in item.split(",") if m.strip()) or None
    result = gate(base, cand, parse_threshold(threshold), names)
    text = markdown_summary(result, base, cand)
    if summary_md:
        with open(summary_md, "a") as f:  # append: $GITHUB_STEP_SUMMARY may already hold other steps' output
            f.write(text)
    click.echo(text)
    if result.passed:
        click.echo(f"nvila-bench gate: pass ({len(result.comparisons)} comparison(s))", err=True)
        return 0
    worst = result.regressions[0]
    click.echo(f"nvila-bench gate: regression: {worst.label} {worst.metric} {worst.change_text}"
               f"{' and ' + str(len(result.regressions) - 1) + ' more' if len(result.regressions) > 1 else ''}", err=True)
    ctx.exit(1)


cli.add_command(profile_command(ImageSize(), PresetName()))


@cli.group()
def estimate():
    """Analytic estimates (no measurement)."""


@estimate.command(name="training-cost")
@click.option("--hardware", default="h100-sxm", show_default=True, help="Hardware table entry (its bf16 peak).")
@click.option("--image", type=ImageSize(), default="1920x1080", show_default=True, help="Image size of a training sample.")
@click.option("--text-tokens", default=128, show_default=True, type=click.IntRange(min=0), help="Text tokens per sample (an assumption).")
@click.option("--samples", "samples", multiple=True, help="STAGE=N samples (repeat); default: the SFT stage's 10M (§7).")
@click.option("--mfu", default=0.4, show_default=True, type=float, help="Model FLOPs utilisation assumed for both models.")
@click.option("--results", "results", multiple=True, type=click.Path(), help="Results with train records: measured FP8 speed-up.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Also write an analytic record to OUT/results.jsonl.")
def training_cost(hardware, image, text_tokens, samples, mfu, results, as_json, out_dir):
    """GPU-hours of NVILA-8B vs VILA1.5-8B and the factors behind the ratio: tokens, FP8, data pruning."""
    from nvila_bench.core import training_cost as tc

    counts = {}
    for item in samples:
        stage, _, n = item.partition("=")
        if not stage or not n.strip().replace("_", "").isdigit():
            raise click.UsageError(f"--samples {item!r}: expected STAGE=N, e.g. sft=5000000")
        counts[stage] = int(n.replace("_", ""))
    fp8 = None
    if results:
        from nvila_bench.core.results import load_results

        fp8 = tc.measured_fp8_factor(load_results(results))
    est = tc.estimate(hardware, image, text_tokens, counts or None, mfu, *(fp8 or (None, "")))
    data = {
        "hardware": est.hardware, "image": f"{image[0]}x{image[1]}", "text_tokens": text_tokens, "samples": est.samples,
        "mfu_assumed": mfu, "tokens_per_sample": est.tokens, "train_flops_per_sample": est.flops,
        "gpu_hours": {p: est.gpu_hours(p) for p in est.flops},
        "factors": {"tokens": est.token_factor, "fp8": est.fp8_factor, "pruning": est.prune_factor},
        "fp8_source": est.fp8_source, "cost_ratio": est.cost_ratio, "paper_claim": 4.5,
    }  # fmt: skip
    lines = [
        f"training cost on {est.hardware} at {mfu:.0%} MFU, {sum(est.samples.values()):,} samples ({image[0]}x{image[1]} + {text_tokens} text tokens)",
        f"  {'':<12}{'tokens/sample':>14}{'TFLOP/sample':>14}{'GPU-hours':>12}",
    ]
    for p in est.flops:
        lines.append(f"  {p:<12}{est.tokens[p]:>14,}{est.flops[p] / 1e12:>14.1f}{est.gpu_hours(p):>12,.0f}")
    lines += [
        f"  VILA1.5-8B / NVILA-8B = {est.cost_ratio:.2f}x (paper: 4.5x) = tokens {est.token_factor:.2f}x"
        f" x FP8 {est.fp8_factor:.2f}x x pruning {est.prune_factor:.1f}x",
        f"  FP8 from {est.fp8_source}",
    ]
    _emit(data, as_json, "\n".join(lines))
    if out_dir:
        from nvila_bench.core.results import ResultWriter, make_record, metric, new_run_id

        m = {
            "cost_ratio": metric(est.cost_ratio, "x", "analytic"),
            "token_factor": metric(est.token_factor, "x", "analytic"),
            "fp8_factor": metric(est.fp8_factor, "x", "measured" if est.fp8_source.startswith("measured") else "paper"),
            "pruning_factor": metric(est.prune_factor, "x", "paper"),
            "nvila_gpu_hours": metric(est.gpu_hours("nvila-8b"), "GPU-h", "analytic"),
            "vila_gpu_hours": metric(est.gpu_hours("vila1.5-8b"), "GPU-h", "analytic"),
        }
        config = {"preset": "nvila-8b", "device": "cuda", "hardware": est.hardware, "dtype": "bfloat16", "images": [data["image"]],
                  "prompt_tokens": text_tokens, "extra": {"baseline": "vila1.5-8b", "mfu": mfu, "samples": est.samples}}  # fmt: skip
        writer = ResultWriter(out_dir)
        writer.write(make_record("training-cost", config, m, new_run_id(), provenance="analytic"))
        click.echo(f"training-cost: 1 record -> {writer.path}", err=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point: click in non-standalone mode so every user error becomes one line and exit code 2."""
    if not (sys.argv[1:] if argv is None else argv):
        argv = ["--help"]  # no arguments: the help, not an error
    try:
        result = cli.main(args=argv, prog_name="nvila-bench", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("nvila-bench: interrupted", err=True)
        return 130
    except click.ClickException as e:
        click.echo(f"nvila-bench: error: {_one_line(e.format_message())}", err=True)
        return EXIT_USAGE if isinstance(e, click.UsageError) else e.exit_code
    except ValueError as e:  # invalid configs / inputs rejected by the model package (incl. CheckpointError)
        click.echo(f"nvila-bench: error: {_one_line(str(e))}", err=True)
        return EXIT_USAGE
    return result if isinstance(result, int) else 0


def _one_line(message: str) -> str:
    return " ".join(message.split())


if __name__ == "__main__":
    sys.exit(main())
