"""What the training and fine-tuning suites share: which parameters learn (NVILA's training stages and the
fine-tuning recipes of docs/reference.md#training-and-fine-tuning-recipes), LoRA / QLoRA through peft, the optimizer, a
synthetic batch with the real token
geometry, one optimizer step, and byte counts of weights, gradients, optimizer state and activations.

A recipe names what learns in each part: vision tower x LLM, the projector always trains (as in every
NVILA stage and in the fine-tuning README). `Recipe.parse("ln-lora")` is the NVILA fine-tuning recipe;
the training stages are recipes too ("projector", "projector-llm", "full"): model/recipes.py, torch-free.
"""

from __future__ import annotations

import contextlib
import importlib.util
from dataclasses import dataclass

import torch
from torch import nn

from .nvila import NVILAModel
from .peer_training import (
    apply_peer_recipe,
    enable_peer_gradient_checkpointing,
    peer_loss,
    peer_parts,
    peer_synthetic_batch,
)
from .pipeline import no_sections
from .preprocess import preprocess_media
from .recipes import LoraSettings, Recipe
from .stages import BACKWARD, OPTIMIZER
from .vision import vision_body


def unused_vision_parameters(model: NVILAModel) -> list[nn.Parameter]:
    """ViT parameters the model never runs: layers after the feature layer, post_layernorm, the head."""
    body = vision_body(model.vision_tower)
    used = set(map(id, body.embeddings.parameters()))
    for layer in body.encoder.layers[: model.config.vision.layers_used]:
        used |= set(map(id, layer.parameters()))
    return [p for p in model.vision_tower.parameters() if id(p) not in used]


def is_peer_model(model) -> bool:
    return getattr(model, "is_peer", False)


def apply_recipe(model: NVILAModel, recipe: Recipe) -> NVILAModel:
    """Freeze / unfreeze in place and add LoRA adapters (peft) where the recipe says; returns the model.
    QLoRA quantises the LLM's linear layers to 4-bit NF4 with bitsandbytes (CUDA only). A peer VLM takes the
    training stages only (model/peer_training.py)."""
    if is_peer_model(model):
        return apply_peer_recipe(model, recipe)
    model.requires_grad_(False)
    model.mm_projector.requires_grad_(True)
    unused = set(map(id, unused_vision_parameters(model)))
    if recipe.llm == "qlora":
        _quantize_llm_4bit(model)
    if recipe.vision == "full":
        for p in model.vision_tower.parameters():
            p.requires_grad_(id(p) not in unused)
    elif recipe.vision == "ln":
        for module in model.vision_tower.modules():
            if isinstance(module, nn.LayerNorm):
                for p in module.parameters():
                    p.requires_grad_(id(p) not in unused)
    elif recipe.vision == "lora":
        _inject_lora(
            model.vision_tower, recipe.lora, recipe.lora.vision_targets, used_layers=model.config.vision.layers_used
        )
    if recipe.llm == "full":
        model.llm.requires_grad_(True)
    elif recipe.llm in ("lora", "qlora"):
        _inject_lora(model.llm, recipe.lora, recipe.lora.llm_targets)
    return model


def _inject_lora(
    module: nn.Module, lora: LoraSettings, targets: tuple[str, ...], used_layers: int | None = None
) -> None:
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise ValueError("LoRA recipes need peft: pip install 'nvila-bench[finetune]'") from None
    names = list(targets)
    if used_layers is not None:  # the ViT: only the layers that run (regex over full module names)
        layers = "|".join(str(i) for i in range(used_layers))
        names = rf".*\.layers\.({layers})\..*\.({'|'.join(targets)})$"
    config = LoraConfig(
        r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=names, bias="none"
    )
    inject_adapter_in_model(config, module)
    for name, p in module.named_parameters():
        p.requires_grad_("lora_" in name)


def _quantize_llm_4bit(model: NVILAModel) -> None:
    """Replace the LLM decoder's nn.Linear layers by bitsandbytes Linear4bit (NF4, bf16 compute)."""
    if not next(model.parameters()).is_cuda:
        raise ValueError("QLoRA needs a CUDA device (bitsandbytes 4-bit kernels); skipped on CPU")
    try:
        import bitsandbytes as bnb
    except ImportError:
        raise ValueError("QLoRA needs bitsandbytes: pip install bitsandbytes") from None
    for parent in list(model.llm.model.layers.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                q = bnb.nn.Linear4bit(
                    child.in_features,
                    child.out_features,
                    bias=child.bias is not None,
                    compute_dtype=torch.bfloat16,
                    quant_type="nf4",
                    device="cpu",
                )
                q.weight = bnb.nn.Params4bit(child.weight.data.cpu(), requires_grad=False, quant_type="nf4")
                if child.bias is not None:
                    q.bias = nn.Parameter(child.bias.data.cpu(), requires_grad=False)
                setattr(parent, child_name, q.to(child.weight.device))


def model_parts(model: NVILAModel) -> dict[str, list[nn.Parameter]]:
    """Parameters per part: vision tower, projector, LLM (a peer's as model/peer_training.py splits them)."""
    if is_peer_model(model):
        return peer_parts(model)
    parts = {"vision": model.vision_tower, "projector": model.mm_projector, "llm": model.llm}
    return {k: list(m.parameters()) for k, m in parts.items()}


def trainable_counts(model: NVILAModel) -> dict[str, int]:
    """Trainable parameters per part (and total)."""
    counts = {k: sum(p.numel() for p in ps if p.requires_grad) for k, ps in model_parts(model).items()}
    return counts | {"total": sum(counts.values())}


def build_optimizer(
    model: NVILAModel, recipe: Recipe, lr: float = 2e-5, fused: bool | None = None
) -> torch.optim.AdamW:
    """AdamW, no weight decay (docs/reference.md#training-and-fine-tuning-recipes); the ViT's group at lr *
    vit_lr_ratio. Fused kernel on CUDA."""
    parts = model_parts(model)
    vision = [p for p in parts["vision"] if p.requires_grad]
    rest = [p for p in parts["projector"] + parts["llm"] if p.requires_grad]
    groups = [
        g for g in ({"params": rest, "lr": lr}, {"params": vision, "lr": lr * recipe.vit_lr_ratio}) if g["params"]
    ]
    if not groups:
        raise ValueError(f"recipe {recipe.name!r} trains no parameter")
    if fused is None:
        fused = next(model.parameters()).is_cuda
    return torch.optim.AdamW(groups, lr=lr, weight_decay=0.0, fused=fused)


@dataclass
class Batch:
    """One micro-batch: each row's preprocessed media and the prompt ids (rows, length)."""

    media: list
    input_ids: torch.Tensor
    temporal_pool: bool = True

    @property
    def rows(self) -> int:
        return self.input_ids.shape[0]


def synthetic_batch(point, step: int = 0, first_row: int = 0) -> Batch:
    """`point.batch_size` samples with the point's media sizes and prompt length (the real token geometry),
    each with its own synthetic images / frames, seeded by step and global row (`first_row`: where this
    data-parallel rank's rows start), so N ranks of batch b see the rows one process of batch N*b sees."""
    from .preprocess import synthetic_image, synthetic_video
    from .presets import get_preset, is_peer
    from .prompt import synthetic_prompt

    cfg = get_preset(point.preset)
    if is_peer(cfg):
        return peer_synthetic_batch(point, step, first_row)
    media = []
    for row in range(first_row, first_row + point.batch_size):
        seed = point.seed + 1000 * step + 100 * row
        images = [synthetic_image(w, h, seed=seed + i) for i, (w, h) in enumerate(point.images)]
        video = synthetic_video(point.video_frames, seed=seed) if point.video_frames else None
        media.append(preprocess_media(cfg, images, video))
    ids = synthetic_prompt(cfg, len(point.images), bool(point.video_frames), point.prompt_tokens, point.seed + step)
    return Batch(media, ids.expand(point.batch_size, -1).contiguous(), point.temporal_pool)


def loss_of(model: NVILAModel, batch: Batch, autocast_dtype: torch.dtype | None = None, section=None) -> torch.Tensor:
    device = next(model.parameters()).device
    ctx = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
    with ctx:
        if is_peer_model(model):
            return peer_loss(model, batch, section)
        return model.training_loss(batch.media, batch.input_ids, batch.temporal_pool, section=section)


def train_step(
    model, batches: list[Batch], optimizer, section=None, autocast_dtype=None, clip: float | None = None
) -> float:
    """One optimizer step over `batches` (gradient accumulation: the loss of each micro-batch is scaled by
    1/len(batches)); returns the mean loss. Each stage runs inside `section(name)` when given (see
    pipeline.py): vision, projector, llm_forward per micro-batch, backward, then optimizer."""
    section = section or no_sections
    total = 0.0
    for batch in batches:
        loss = loss_of(model, batch, autocast_dtype, section) / len(batches)
        with section(BACKWARD):
            loss.backward()
        total += float(loss.detach())
    with section(OPTIMIZER):
        if clip:
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return total


# ---- byte counts (the "measured" side of the memory model) -----------------------------------------------
def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def weight_bytes(model: nn.Module) -> int:
    """Parameter bytes (tied weights once; buffers such as rotary tables are not weights)."""
    return sum(_nbytes(p) for p in model.parameters())  # parameters() yields a tied weight once


def gradient_bytes(model: nn.Module) -> int:
    return sum(_nbytes(p.grad) for p in model.parameters() if p.grad is not None)


def optimizer_bytes(optimizer: torch.optim.Optimizer) -> int:
    return sum(_nbytes(v) for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor))


class SavedTensors:
    """Counts the bytes autograd saves for backward during a forward pass (the activations a training step
    holds at its peak), each storage once, parameters excluded (they are weights, counted already).

        with SavedTensors(model) as saved:
            loss = model.training_loss(...)
        saved.bytes
    """

    def __init__(self, model: nn.Module):
        self._params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self._seen: dict[int, int] = {}
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self._params and ptr not in self._seen:
            self._seen[ptr] = storage.nbytes()
        return t

    @property
    def bytes(self) -> int:
        return sum(self._seen.values())

    def __enter__(self) -> SavedTensors:
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._ctx.__exit__(*exc)


def enable_gradient_checkpointing(model: NVILAModel) -> None:
    """Recompute each ViT and LLM layer in backward instead of keeping its activations (transformers'
    per-layer checkpointing, non-reentrant)."""
    if is_peer_model(model):
        return enable_peer_gradient_checkpointing(model)
    for module in (model.llm, model.vision_tower):  # transformers 5.2x renamed it; 5.17 has only the old name
        if hasattr(module, "activation_checkpointing_enable"):
            module.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def unavailable(recipe: Recipe, device: str, fp8: bool = False) -> str | None:
    """Why `recipe` (with FP8 training if `fp8`) cannot run on `device` here, or None: QLoRA needs a CUDA GPU
    and bitsandbytes, LoRA needs peft, FP8 a GPU of compute capability 8.9+ and torchao."""
    cuda = device.startswith("cuda") and torch.cuda.is_available()
    if recipe.llm == "qlora" and not cuda:
        return "QLoRA needs a CUDA GPU (bitsandbytes 4-bit kernels)"
    if recipe.llm == "qlora" and not _installed("bitsandbytes"):
        return "QLoRA needs bitsandbytes (pip install bitsandbytes)"
    if recipe.uses_lora and not _installed("peft"):
        return "LoRA recipes need peft (pip install 'nvila-bench[finetune]')"
    if fp8 and (not cuda or torch.cuda.get_device_capability(torch.device(device)) < (8, 9)):
        return "FP8 training needs a CUDA GPU with compute capability 8.9+ (Ada / Hopper)"
    if fp8 and not _installed("torchao"):
        return "FP8 training needs torchao (pip install torchao)"
    return None


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def enable_fp8(model: NVILAModel) -> None:
    """torchao's float8 training recipe (dynamic tensorwise scaling) on the LLM's linear layers. Needs a GPU
    with FP8 tensor cores (compute capability 8.9+: Ada, Hopper, Blackwell)."""
    device = next(model.parameters()).device
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 9):
        raise ValueError("FP8 training needs a CUDA GPU with compute capability 8.9+ (Ada / Hopper); skipped here")
    try:
        from torchao.float8 import convert_to_float8_training
    except ImportError:
        raise ValueError("FP8 training needs torchao: pip install torchao") from None
    # Dimensions must be multiples of 16 for the FP8 GEMMs; the LM head stays in bf16 (as COAT keeps it).
    convert_to_float8_training(
        model.llm.model, module_filter_fn=lambda mod, name: mod.in_features % 16 == 0 and mod.out_features % 16 == 0
    )
