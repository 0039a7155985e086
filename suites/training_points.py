"""Sweep points of the train and finetune-memory suites: the latency suites' points times each stage or
recipe, with the suite's settings in `extra`; points this machine cannot run are dropped with a reason."""

from __future__ import annotations

from dataclasses import replace

import click

from nvila_bench.model import count_visual_tokens, get_preset
from nvila_bench.core.point import BenchPoint
from nvila_bench.model.training import Recipe

from .finetune_memory import PAPER_CONTEXT, PAPER_RECIPES


def training_points(suite: str, points: list[BenchPoint], kw: dict, paper_context: bool = False) -> list[BenchPoint]:
    """Expand `points` over --stage (train) or --recipe (finetune-memory); raise UsageError (exit 2) on bad
    settings or when nothing can run here."""
    if suite == "train":
        if kw["recipes"] or kw["paper_table"]:
            raise click.UsageError("--recipe / --paper-table belong to finetune-memory; train takes --stage")
        extras = [{"stage": stage, "grad_accum": kw["grad_accum"], "grad_ckpt": kw["grad_ckpt"], "fp8": kw["fp8"],
                   "compile": kw["compile_"], "autocast": kw["autocast"], "lr": kw["lr"]}
                  for stage in (kw["stages"] or ("full",))]  # fmt: skip
    else:
        if kw["stages"] or kw["fp8"] or kw["compile_"] or kw["autocast"] or kw["grad_ckpt"] or kw["grad_accum"] != 1:
            raise click.UsageError("finetune-memory measures the paper's setting: no --stage / --fp8 / --compile / --autocast / --grad-ckpt / --grad-accum")
        names = kw["recipes"] or (PAPER_RECIPES if kw["paper_table"] else ("nvila",))
        extras = []
        for name in names:
            try:
                recipe = Recipe.parse(name)
            except ValueError as e:
                raise click.UsageError(str(e)) from None
            extra = {"recipe": recipe.name, "lr": kw["lr"]}
            if recipe.uses_lora:
                extra |= {"lora_rank": kw["lora_rank"], "lora_alpha": kw["lora_alpha"], "lora_dropout": kw["lora_dropout"]}
            extras.append(extra)
    out, skipped = [], []
    for point in points:
        if paper_context:  # the paper's context of 300 positions: the prompt fills what the media leave
            media = count_visual_tokens(get_preset(point.preset), list(point.images), point.video_frames, point.temporal_pool)
            point = replace(point, prompt_tokens=max(0, PAPER_CONTEXT - media.total_tokens))
        for extra in extras:
            p = replace(point, extra=extra)
            reason = _cannot_run(p)
            (skipped if reason else out).append((p, reason))
    for p, reason in skipped:
        click.echo(f"nvila-bench: skip: {suite} {p.label} {_extra_label(p.extra)}: {reason}", err=True)
    if not out:
        raise click.UsageError(f"nothing to run here: {skipped[0][1]}" if skipped else "no points")
    return [p for p, _ in out]


def _cannot_run(point: BenchPoint) -> str | None:
    """Why this machine cannot run the point (None when it can)."""
    on_cuda = point.device.startswith("cuda")
    if point.extra.get("recipe", "").endswith("-qlora") and not on_cuda:
        return "QLoRA needs a CUDA GPU (bitsandbytes 4-bit kernels)"
    if point.extra.get("fp8"):
        import torch

        if not on_cuda or not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9):
            return "FP8 training needs a CUDA GPU with compute capability 8.9+ (Ada / Hopper) and torchao"
    return None


def _extra_label(extra: dict) -> str:
    return extra.get("recipe") or extra.get("stage") or ""


