"""`nvila-bench summary`: what the reference models are, what media cost them in tokens, and a check that
every tiny preset runs end to end. No timings: measuring is the suites' job."""

from __future__ import annotations

from typing import Callable

import pandas as pd
import torch

from nvila_bench.model import build_model, count_visual_tokens, get_preset, preset_names
from nvila_bench.model.params import param_counts
from nvila_bench.model.pipeline import generate, media_blocks, synthetic_request
from nvila_bench.model.presets import is_peer

EXAMPLE_IMAGES = [(448, 448), (1920, 1080), (800, 1200)]


def params_table(names: list[str]) -> pd.DataFrame:
    rows = []
    for name in names:
        cfg = get_preset(name)
        # A peer's closed form equals transformers' model on the meta device (tests/test_peer_params.py).
        counts = param_counts(cfg) if is_peer(cfg) else build_model(cfg, device="meta", seed=None).param_counts()
        rows.append({"preset": name} | {k: f"{v / 1e6:,.1f}M" for k, v in counts.items()})
    return pd.DataFrame(rows)


def tokens_table(names: list[str]) -> pd.DataFrame:
    rows = []
    for name in names:
        cfg = get_preset(name)
        row = {"preset": name}
        for w, h in EXAMPLE_IMAGES:
            row[f"{w}x{h}"] = count_visual_tokens(cfg, [(w, h)]).total_tokens
        row["8 frames"] = count_visual_tokens(cfg, video_frames=8).total_tokens
        row["256 frames"] = count_visual_tokens(cfg, video_frames=256).total_tokens
        row["LLM context"] = cfg.llm.max_position_embeddings  # VILA1.5-3B's 4096 caps its frames (upstream #83)
        rows.append(row)
    return pd.DataFrame(rows)


def smoke_run(name: str, size=(1920, 1080), new_tokens: int = 8) -> dict:
    """Build a tiny preset, run one image request through every stage, check the sequence length."""
    cfg = get_preset(name)
    model = build_model(cfg)
    request = synthetic_request(cfg, (size,), prompt_tokens=32)
    with torch.inference_mode():
        blocks = media_blocks(model, request)
        embeds = model.embed(request.input_ids, blocks)
        out = generate(model, embeds, new_tokens)
    expected = count_visual_tokens(cfg, [size]).total_tokens
    return {
        "preset": name,
        "image": f"{size[0]}x{size[1]}",
        "vit_tiles": count_visual_tokens(cfg, [size]).vit_tiles,
        "media_positions": blocks[0].shape[0],
        "counted": expected,
        "sequence": embeds.shape[1],
        "generated": out.shape[1],
        "ok": blocks[0].shape[0] == expected and out.shape[1] == new_tokens,
    }


def print_summary(echo: Callable[[str], None] = print) -> None:
    real = [n for n in preset_names() if not get_preset(n).is_tiny]
    tiny = [n for n in preset_names() if get_preset(n).is_tiny and not is_peer(get_preset(n))]
    echo("Parameters (exact, from the modules on the meta device; peer VLMs in closed form, equal to transformers')")
    echo(params_table(real).to_string(index=False))
    echo(
        "\nLLM positions per request (analytic: tokens.count_visual_tokens; videos with the preset's TSP, "
        "a peer's frames at 640x360 as its processor counts them)"
    )
    echo(tokens_table(real).to_string(index=False))
    echo(
        "\nTiny NVILA / VILA1.5 presets end to end on CPU (random weights): "
        "vision -> projector -> prefill -> 8 decode steps"
    )
    echo(pd.DataFrame([smoke_run(n) for n in tiny]).to_string(index=False))
