"""Which parameters learn: NVILA's training stages and the fine-tuning recipes
(docs/reference.md#training-and-fine-tuning-recipes), as plain data. Importing it loads no torch, so the suites
declare their options and the memory model predicts without it; model/training.py applies a recipe to a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

VISION_MODES = ("frozen", "ln", "lora", "full")
LLM_MODES = ("frozen", "lora", "qlora", "full")
# NVILA's training stages (docs/reference.md#training-and-fine-tuning-recipes): what learns in each.
STAGES = {"projector": ("frozen", "frozen"), "projector-llm": ("frozen", "full"), "full": ("full", "full")}
# Named fine-tuning recipes; "nvila" is the paper's: ViT LayerNorms + LLM LoRA, ViT LR 5x lower.
NAMED = {"nvila": ("ln", "lora"), "full-full": ("full", "full")}
VIT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
LLM_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraSettings:
    """peft LoraConfig fields; defaults from the fine-tuning README (r 64, alpha 16, dropout 0.05)."""

    rank: int = 64
    alpha: int = 16
    dropout: float = 0.05
    llm_targets: tuple[str, ...] = LLM_LORA_TARGETS
    vision_targets: tuple[str, ...] = VIT_LORA_TARGETS

    def __post_init__(self):
        if self.rank < 1 or self.alpha <= 0 or not 0 <= self.dropout < 1:
            raise ValueError(
                f"LoRA needs rank >= 1, alpha > 0, 0 <= dropout < 1; got {self.rank}, {self.alpha}, {self.dropout}"
            )


@dataclass(frozen=True)
class Recipe:
    """What learns: vision tower mode x LLM mode (the projector always learns), and the ViT's learning rate
    relative to the LLM's."""

    name: str
    vision: str
    llm: str
    vit_lr_ratio: float = 1.0  # ViT LR = LLM LR * ratio (NVILA: 1/5)
    lora: LoraSettings = field(default_factory=LoraSettings)

    @classmethod
    def parse(cls, name: str, lora: LoraSettings | None = None) -> Recipe:
        """ "nvila", "full-full", a training stage ("projector", "projector-llm", "full") or VISION-LLM, e.g.
        "ln-lora", "frozen-qlora"."""
        lora = lora or LoraSettings()
        if name in STAGES:
            return cls(name, *STAGES[name], lora=lora)
        if name in NAMED:
            return cls(name, *NAMED[name], vit_lr_ratio=0.2 if name == "nvila" else 1.0, lora=lora)
        vision, _, llm = name.partition("-")
        if vision not in VISION_MODES or llm not in LLM_MODES or llm == "frozen":
            grid = ", ".join(f"{v}-{m}" for v in VISION_MODES for m in LLM_MODES[1:])
            raise ValueError(f"unknown recipe {name!r}; known: nvila, full-full, {', '.join(STAGES)}, or {grid}")
        return cls(name, vision, llm, lora=lora)

    @property
    def uses_lora(self) -> bool:
        return self.vision == "lora" or self.llm in ("lora", "qlora")


def flop_modes(recipe: Recipe) -> dict[str, str]:
    """For the cost model: does each part's backward compute weight gradients, only input gradients, or
    nothing (LayerNorm-only and LoRA count as input: their weight gradients are a rounding error)."""
    vision = {"frozen": "none", "full": "weights"}.get(recipe.vision, "input")
    return {"vision": vision, "projector": "weights", "llm": "weights" if recipe.llm == "full" else "input"}
