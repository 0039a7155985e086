"""A peer VLM's training step (model/peer_model.py): transformers' own forward with labels, on a synthetic batch
with the real token geometry. Nothing here re-implements a layer or the loss.

    batch (data prep, before any clock): each sample its own random images or video (`peer_request`, seeded by
        step and row) and its own prompt ids; the peer's processor over the whole batch; labels = the prompt ids
        with -100 on the media placeholders (Qwen: with their vision_start / vision_end)
    loss: hf(input_ids, pixel_values, image_grid_thw / image_sizes, mm_token_type_ids, labels).loss, one call,
        split into the stages vision | projector | llm_forward by forward pre-hooks: the projector starts where
        the boundary module (Qwen's merger, LLaVA-OV's projector) runs, llm_forward where the language model does

What learns in each of model/training.py's STAGES: "projector" Qwen's patch merger (a module inside `visual`) or
LLaVA-OneVision's multi_modal_projector and image newline; "projector-llm" that and the language model (input
embeddings and LM head included); "full" everything that runs (SigLIP's post_layernorm, whose output LLaVA-OV
never reads, stays frozen).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from .stages import LLM_FORWARD, PROJECTOR, VISION

PEER_STAGES = ("projector", "projector-llm", "full")
IGNORE_INDEX = -100


def peer_parts(model) -> dict[str, list[nn.Parameter]]:
    """Parameters per part, as PeerModel.param_counts splits them: vision tower, projector, LLM."""
    hf = model.hf
    projector = list(model.boundary.parameters()) + ([] if model.mrope else [hf.model.image_newline])
    taken = set(map(id, projector))
    tower = hf.model.visual if model.mrope else hf.model.vision_tower
    vision = [p for p in tower.parameters() if id(p) not in taken]
    llm = list(dict.fromkeys([*hf.model.language_model.parameters(), *hf.lm_head.parameters()]))  # tied: once
    return {"vision": vision, "projector": projector, "llm": llm}


def unused_parameters(model) -> list[nn.Parameter]:
    """Parameters the training forward never reads: LLaVA-OV takes SigLIP's hidden states before post_layernorm."""
    if model.mrope:
        return []
    return [p for name, p in model.hf.model.vision_tower.named_parameters() if "post_layernorm" in name]


def apply_peer_recipe(model, recipe):
    """Freeze / unfreeze in place for one of the training stages (the fine-tuning recipes are NVILA's)."""
    if recipe.name not in PEER_STAGES:
        raise ValueError(f"a peer VLM trains the stages {', '.join(PEER_STAGES)}, not the recipe {recipe.name!r}")
    learns = {"vision": recipe.vision == "full", "projector": True, "llm": recipe.llm == "full"}
    model.requires_grad_(False)
    unused = set(map(id, unused_parameters(model)))
    for part, params in peer_parts(model).items():
        for p in params:
            p.requires_grad_(learns[part] and id(p) not in unused)
    return model


def enable_peer_gradient_checkpointing(model) -> None:
    """transformers' per-layer checkpointing (non-reentrant) of the whole model: ViT blocks and decoder layers."""
    kwargs = {"use_reentrant": False}
    if hasattr(model.hf, "activation_checkpointing_enable"):  # transformers 5.2x's name; 5.17 has only the old one
        model.hf.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


@dataclass
class PeerBatch:
    """One micro-batch: the keyword arguments of transformers' forward (processor tensors, ids, labels)."""

    inputs: dict

    @property
    def rows(self) -> int:
        return self.inputs["input_ids"].shape[0]

    @property
    def input_ids(self) -> torch.Tensor:
        return self.inputs["input_ids"]


def media_mask(cfg, ids: torch.Tensor) -> torch.Tensor:
    """True on the media placeholders of prompt ids (Qwen: each span's vision_start and vision_end too)."""
    mask = (ids == cfg.image_token_id) | (ids == cfg.video_token_id)
    if cfg.kind != "llava-onevision":
        mask |= (ids == cfg.hf_config["vision_start_token_id"]) | (ids == cfg.hf_config["vision_end_token_id"])
    return mask


def peer_labels(cfg, ids: torch.Tensor) -> torch.Tensor:
    """The text tokens predict themselves (transformers shifts them); the media placeholders are ignored."""
    return ids.masked_fill(media_mask(cfg, ids), IGNORE_INDEX)


def peer_batch(cfg, requests) -> PeerBatch:
    """The processor over every sample's media at once, as a data loader collates: Qwen concatenates the patches of
    all images in prompt order; LLaVA-OV takes one sample per row (a list of its images where it has several)."""
    from .peer_model import MROPE_KINDS, peer_processor

    mrope = cfg.kind in MROPE_KINDS
    ids = torch.cat([r.input_ids for r in requests])
    inputs = {"input_ids": ids, "labels": peer_labels(cfg, ids)}
    if any(r.images for r in requests):
        if mrope:
            images = [im for r in requests for im in r.images]
        else:
            images = [r.images if len(r.images) > 1 else r.images[0] for r in requests]
        inputs |= dict(peer_processor(cfg, "image")(images=images, return_tensors="pt"))
    if any(r.video for r in requests):
        inputs |= dict(peer_processor(cfg, "video")(videos=[r.video for r in requests], return_tensors="pt"))
    if mrope:  # transformers' mm_token_type_ids (the processor's): text 0, image 1, video 2, for M-RoPE
        types = torch.zeros_like(ids, dtype=torch.int)
        types[ids == cfg.image_token_id], types[ids == cfg.video_token_id] = 1, 2
        inputs["mm_token_type_ids"] = types
    return PeerBatch(inputs)


def peer_synthetic_batch(point, step: int = 0, first_row: int = 0) -> PeerBatch:
    """`point.batch_size` samples of the point's media sizes and prompt length, seeded by step and global row (as
    model/training.py's synthetic_batch), each from `peer_request`; ValueError where the processors cannot run."""
    from .pipeline import peer_request
    from .presets import get_preset

    cfg = get_preset(point.preset)
    seeds = [point.seed + 1000 * step + 100 * row for row in range(first_row, first_row + point.batch_size)]
    requests = [peer_request(cfg, point.images, point.video_frames, point.prompt_tokens, 1, seed) for seed in seeds]
    return peer_batch(cfg, requests)


def peer_loss(model, batch: PeerBatch, section=None) -> torch.Tensor:
    """Mean next-token cross-entropy of the text tokens: transformers' forward with labels, every stage inside
    `section(name)` when given (vision, projector, llm_forward)."""
    device, dtype = model.device, model.hf.lm_head.weight.dtype
    inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.inputs.items()}
    for key in ("pixel_values", "pixel_values_videos"):
        if key in inputs:  # the model's dtype, as its pipelines cast
            inputs[key] = inputs[key].to(dtype)
    starts = [(PROJECTOR, model.boundary), (LLM_FORWARD, model.hf.model.language_model)]
    with _stages(section, VISION, starts):
        return model.hf(**inputs, use_cache=False).loss


@contextlib.contextmanager
def _stages(section, first: str, starts: list[tuple[str, nn.Module]]):
    """section(first) from now; each later stage from its module's first call; the last one ends with the block.
    A module that never runs (text only: no projector) leaves its stage out."""
    if section is None:
        yield
        return
    current = [section(first)]
    current[0].__enter__()
    handles = []

    def starter(name):
        def hook(module, args):
            if name not in begun:
                begun.add(name)
                current[0].__exit__(None, None, None)
                current[0] = section(name)
                current[0].__enter__()

        return hook

    begun: set[str] = set()
    handles = [module.register_forward_pre_hook(starter(name)) for name, module in starts]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
    current[0].__exit__(None, None, None)
