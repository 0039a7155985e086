"""Commands about the models, no measuring: presets, info, tokens, summary, cost."""

from __future__ import annotations

from dataclasses import asdict

import click

from nvila_bench.model.peer_config import PeerConfig
from nvila_bench.model.presets import Preset, get_preset, preset_names
from nvila_bench.model.tokens import count_visual_tokens

from .common import PresetName, check_request, emit, table
from .options import request_options


def register(cli: click.Group) -> None:
    for command in (presets, info, tokens, summary, cost):
        cli.add_command(command)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def presets(as_json):
    """List the model presets."""
    rows = [preset_row(get_preset(n)) for n in preset_names()]
    columns = ("name", "family", "llm", "vision", "projector", "image_mode", "tokens_rule")
    emit(rows, as_json, table([{k: r[k] for k in columns} for r in rows]))


def preset_row(cfg: Preset) -> dict:
    if isinstance(cfg, PeerConfig):
        return peer_row(cfg)
    return {
        "name": cfg.name,
        "family": cfg.family,
        "tiny": cfg.is_tiny,
        "llm": f"{cfg.llm.arch} {cfg.llm.hidden_size}x{cfg.llm.num_layers}",
        "vision": f"SigLIP {cfg.vision.hidden_size}x{cfg.vision.num_layers}, {cfg.vision.image_size} px",
        "vision_px": cfg.vision.image_size,
        "projector": cfg.projector.type,
        "image_mode": cfg.media.image_mode,
        "tokens_per_tile": cfg.tokens_per_tile,
        "tokens_rule": f"{cfg.tokens_per_tile} per {cfg.tile_size}-px tile",
        "temporal_pool": list(cfg.media.temporal_pool) if cfg.media.temporal_pool else None,
        "description": cfg.description,
    }


def peer_row(cfg: PeerConfig) -> dict:
    """A peer VLM in the same fields: its vision tower, how its processor turns an image into tokens."""
    v, llava = cfg.vision_config, cfg.kind == "llava-onevision"
    merge = v.get("spatial_merge_size")
    if llava:
        vision = f"SigLIP {v['hidden_size']}x{v['num_hidden_layers']}, {v['image_size']} px"
    else:
        vision = f"ViT {v.get('embed_dim', v['hidden_size'])}x{v['depth']}, native resolution"
    return {
        "name": cfg.name,
        "family": cfg.family,
        "tiny": cfg.is_tiny,
        "llm": f"{cfg.llm.arch} {cfg.llm.hidden_size}x{cfg.llm.num_layers}",
        "vision": vision,
        "vision_px": v["image_size"] if llava else None,
        "projector": "mlp2x_gelu + image newline" if llava else f"patch merger {merge}x{merge}",
        "image_mode": cfg.image_processor["vision_aspect_ratio"] if llava else "smart_resize",
        "tokens_per_tile": cfg.image_processor["num_image_tokens"] if llava else None,
        "tokens_rule": tokens_rule(cfg),
        "temporal_pool": None,
        "description": cfg.description,
    }


def tokens_rule(cfg: PeerConfig) -> str:
    p = cfg.image_processor
    if cfg.kind == "llava-onevision":
        return f"{p['num_image_tokens']} per {p['size']['height']}-px view, plus its crops unpadded, a newline per row"
    side = p["patch_size"] * p["merge_size"]
    return f"1 per {side}x{side} px after smart resize to {p['min_pixels']:,}..{p['max_pixels']:,} px"


def model_info(cfg: Preset) -> dict:
    """Exact parameter counts in closed form (`model/params.py`, `model/peer_params.py`, tested against the
    built modules): nothing is built, so a checkpoint's config is described at once whatever its size."""
    from nvila_bench.model.params import param_counts

    counts = param_counts(cfg)
    if isinstance(cfg, PeerConfig):
        return {
            "preset": cfg.name,
            "family": cfg.family,
            "kind": cfg.kind,
            "description": cfg.description,
            "stands_in_for": cfg.stands_in_for,
            "params": counts,
            "tokens_rule": tokens_rule(cfg),
            "config": {
                "hf_config": cfg.hf_config,
                "image_processor": cfg.image_processor,
                "video_processor": cfg.video_processor,
            },
        }
    return {
        "preset": cfg.name,
        "family": cfg.family,
        "description": cfg.description,
        "params": counts,
        "tokens_per_tile": cfg.tokens_per_tile,
        "vision_layers_used": cfg.vision.layers_used,
        "config": asdict(cfg),
    }


@click.command()
@click.option("--preset", "cfg", type=PresetName(), help="A preset name (see `nvila-bench presets`).")
@click.option("--checkpoint", type=click.Path(file_okay=False), help="A checkpoint directory in the official layout.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(cfg, checkpoint, as_json):
    """Architecture and exact parameter counts of a preset or a checkpoint."""
    if (cfg is None) == (checkpoint is None):
        raise click.UsageError("give exactly one of --preset or --checkpoint")
    if checkpoint:
        from nvila_bench.model.peer_checkpoint_config import peer_config_from_checkpoint, peer_model_type

        if peer_model_type(checkpoint):  # a transformers-saved Qwen2-VL, Qwen2.5-VL or LLaVA-OneVision
            cfg = peer_config_from_checkpoint(checkpoint)
        else:
            from nvila_bench.model.checkpoint_config import config_from_checkpoint

            cfg = config_from_checkpoint(checkpoint)
    data = model_info(cfg)
    p = data["params"]
    if isinstance(cfg, PeerConfig):
        last = f"  visual tokens: {data['tokens_rule']}"
    else:
        vit = cfg.vision
        last = f"  {cfg.tokens_per_tile} visual tokens per tile; ViT runs {vit.layers_used} of {vit.num_layers} layers"
    text = "\n".join(
        [f"{cfg.name} ({cfg.family}): {cfg.description}"] + [f"  {k:<9} {v:>15,} params" for k, v in p.items()] + [last]
    )
    emit(data, as_json, text)


@click.command()
@request_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def tokens(preset, images, video_frames, temporal_pool, as_json):
    """Visual token counts of one request, computed without building a model."""
    check_request(images, video_frames)
    cfg = preset
    count = count_visual_tokens(cfg, list(images), video_frames, temporal_pool=temporal_pool)
    data = count.to_dict()
    lines = [f"{cfg.name}: {data['total_tokens']} LLM positions for media"]
    if data["images"]:
        lines.append(
            table(
                [
                    {
                        "image": f"{i['width']}x{i['height']}",
                        "grid": "x".join(map(str, i["grid"])),
                        "vit_tiles": i["vit_tiles"],
                        "visual_tokens": i["visual_tokens"],
                        "tokens": i["tokens"],
                    }
                    for i in data["images"]
                ]
            )
        )
    if data["images"] and isinstance(cfg, PeerConfig):
        unit = "384-px crops" if cfg.kind == "llava-onevision" else "14-px patches"
        lines.append(f"grid: {unit} (cols x rows)")
    if data["video"]:
        v = data["video"]
        if "sampling" in v:  # a peer: its frames' size, as given and as its processor resizes them
            how = f"{v['frame_size']} px resized to {v['frame_resized']}, {v['sampling']}"
        else:
            how = "TSP-pooled" if v["pooled"] else "not pooled"
        lines.append(f"video: {v['frames']} frames, {how}, {v['visual_tokens']} visual tokens, {v['tokens']} positions")
    emit(data, as_json, "\n".join(lines))


@click.command()
def summary():
    """Model summary: exact parameter counts, token tables, every tiny preset end to end."""
    from nvila_bench.cli.summary import print_summary

    print_summary(click.echo)


@click.command()
@request_options
@click.option("--prompt-tokens", default=64, show_default=True, help="Text tokens after the media.")
@click.option("--context", type=int, help="Decode context length [prefill length].")
@click.option("--batch-size", default=1, show_default=True, help="Identical requests per batch.")
@click.option("--dtype", default="bfloat16", show_default=True, help="Weights and activations dtype.")
@click.option("--hardware", help="Hardware table entry for the time floor, e.g. h100-sxm.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def cost(preset, images, video_frames, temporal_pool, prompt_tokens, context, batch_size, dtype, hardware, as_json):
    """Analytic FLOPs (model: full N x N attention; executed: causal attention once per kept key), minimum bytes and
    time floor (executed FLOPs) per stage."""
    from nvila_bench.core.analysis import costmodel
    from nvila_bench.core.analysis.hardware import get_hardware, hardware_keys
    from nvila_bench.core.measuring.point import canonical_dtype

    check_request(images, video_frames)
    cfg = preset
    for name, value in (("--prompt-tokens", prompt_tokens), ("--batch-size", batch_size), ("--context", context)):
        if value is not None and value < (0 if name == "--prompt-tokens" else 1):
            raise click.BadParameter(f"out of range: {value}", param_hint=name)
    dtype = canonical_dtype(dtype)
    hw = get_hardware(hardware) if hardware else None
    costs = costmodel.request_costs(cfg, images, video_frames, temporal_pool, prompt_tokens, context, batch_size, dtype)
    stages = {name: c.to_dict() for name, c in costs.items()}
    data = {"preset": cfg.name, "dtype": dtype, "batch_size": batch_size, "provenance": "analytic"} | stages
    lines = [f"{cfg.name} ({dtype}, batch {batch_size}), analytic:"]
    if hw is not None:
        data["hardware"] = hw.key
        for name, c in costs.items():
            stages[name]["time_floor_s"] = costmodel.time_floor(c, hw.peak_flops(dtype), hw.bandwidth)
    from nvila_bench.reports.render import small  # the report's rule: a tiny preset's 1.4 MFLOP is not "0.00"

    for name, st in stages.items():
        floor = f"  floor {small(st['time_floor_s'] * 1e3, 3):>9} ms on {hw.key}" if hw is not None else ""
        lines.append(
            f"  {name:<12} {small(st['flops'] / 1e9, 2):>12} GFLOP {small(st['bytes'] / 1e6, 2):>12} MB{floor}"
        )
    if hw is None:
        lines.append(f"  (add --hardware for time floors: {', '.join(hardware_keys())})")
    emit(data, as_json, "\n".join(lines))
