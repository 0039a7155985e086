"""The `nvila-bench` command line (click).

Bad input never shows a traceback: it prints one line `nvila-bench: error: ...` and exits with code 2.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import asdict

import click

from nvila_bench.model.config import NVILAConfig
from nvila_bench.model.presets import get_preset, is_tiny, preset_names
from nvila_bench.model.tokens import count_visual_tokens

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
@click.option("--preset", "cfg", type=PresetName(), required=True, help="A preset name.")
@click.option("--image", "images", type=ImageSize(), multiple=True, help="Image size WxH; repeat for a multi-image request.")
@click.option("--video-frames", type=int, help="Frames of one video in the request.")
@click.option("--no-temporal-pool", is_flag=True, help="Disable TSP temporal pooling (presets that have it).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def tokens(cfg, images, video_frames, no_temporal_pool, as_json):
    """Visual token counts of one request, computed without building a model."""
    if video_frames is not None and video_frames < 1:
        raise click.BadParameter(f"must be a positive integer, got {video_frames}", param_hint="--video-frames")
    if not images and video_frames is None:
        raise click.UsageError("give at least one --image WxH or --video-frames N")
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
    """Model summary (the default `make run` job until benchmark suites exist)."""
    from nvila_bench.summary import print_summary

    print_summary(click.echo)


def main(argv: list[str] | None = None) -> int:
    """Entry point: click in non-standalone mode so every user error becomes one line and exit code 2."""
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
