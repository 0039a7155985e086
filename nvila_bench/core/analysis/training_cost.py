"""Training cost estimate: GPU-hours of NVILA-8B vs VILA1.5-8B on one GPU type, and where the difference
comes from (paper: "training cost 4.5x lower", from fewer visual tokens, FP8 training and data pruning).

    GPU-hours = samples x training FLOPs per sample / (peak FLOP/s x MFU) / 3600

Training FLOPs per sample come from the cost model (every part learns: the SFT stage). The three factors:
- tokens: VILA1.5-8B's FLOPs per sample over NVILA-8B's at the same image size (NVILA scales the
  resolution up, then compresses: at high resolution it can cost *more* per sample than VILA1.5);
- FP8: measured train-suite samples/s, FP8 over BF16 (same preset, hardware), else the paper's Table 5
  ratio 390.1 / 199.2 (provenance "paper");
- pruning: DeltaLoss keeps 50% of the SFT data (docs/reference.md#training-and-fine-tuning-recipes) -> 2x.
Sample counts: the reference gives the SFT stage's (~10M samples, pruned to 5M); other stages need
`--samples stage=N`. The MFU is an assumption of the estimate (default 40%), recorded with it.
The VILA1.5 model compared is NVILA-8B's `baseline` role in the preset registry; FP8 and pruning apply to the
NVILA side only (`NVILAConfig.is_nvila`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from nvila_bench.core.analysis import costmodel
from nvila_bench.core.analysis.hardware import get_hardware
from nvila_bench.model import count_visual_tokens, get_preset
from nvila_bench.model.presets import UnknownPresetError

if TYPE_CHECKING:
    from nvila_bench.core.measuring.results import Record

NVILA = "nvila-8b"  # the model whose cost the paper states; its baseline comes from the preset's roles

SFT_SAMPLES = 10_000_000  # docs/reference.md#training-and-fine-tuning-recipes: "~10M SFT mix pruned to 5M by DeltaLoss"
PRUNE_KEEP = 0.5  # docs/reference.md#training-and-fine-tuning-recipes: DeltaLoss rho = 50%
PAPER_FP8 = (
    390.1 / 199.2
)  # docs/reference.md#published-efficiency-numbers, FP8 training table (no gradient checkpointing)
ALL_LEARN = {"vision": "weights", "projector": "weights", "llm": "weights"}


@dataclass(frozen=True)
class CostEstimate:
    hardware: str
    image: tuple[int, int]
    text_tokens: int
    samples: dict[str, int]
    mfu: float
    tokens: dict[str, int]  # LLM positions per sample
    flops: dict[str, int]  # training FLOPs per sample
    fp8_factor: float
    fp8_source: str
    prune_factor: float

    def gpu_hours(self, preset: str) -> float:
        peak = get_hardware(self.hardware).peak_flops("bfloat16")
        nvila = is_nvila(preset)
        speed = peak * self.mfu * (self.fp8_factor if nvila else 1.0)
        kept = 1 / self.prune_factor if nvila else 1.0
        return sum(self.samples.values()) * kept * self.flops[preset] / speed / 3600

    @property
    def nvila(self) -> str:
        return NVILA

    @property
    def baseline(self) -> str:
        return baseline_preset()

    @property
    def token_factor(self) -> float:
        return self.flops[self.baseline] / self.flops[self.nvila]

    @property
    def cost_ratio(self) -> float:
        return self.gpu_hours(self.baseline) / self.gpu_hours(self.nvila)


def baseline_preset() -> str:
    """The VILA1.5 model NVILA-8B is compared with (its registered `baseline` role)."""
    return get_preset(NVILA).baseline


def is_nvila(preset: str | None) -> bool:
    """NVILA (any variant) rather than VILA1.5, by the registered preset's family; a name the registry does not
    know (a checkpoint directory) has no role and counts as NVILA."""
    try:
        return get_preset(preset).is_nvila
    except (UnknownPresetError, KeyError, TypeError):
        return True


def estimate(
    hardware: str,
    image=(1920, 1080),
    text_tokens: int = 128,
    samples: dict[str, int] | None = None,
    mfu: float = 0.4,
    fp8_factor: float | None = None,
    fp8_source: str = "",
) -> CostEstimate:
    if not 0 < mfu <= 1:
        raise ValueError(f"--mfu must be in (0, 1], got {mfu}")
    get_hardware(hardware)  # clear error for an unknown name
    samples = samples or {"sft": SFT_SAMPLES}
    if any(n < 1 for n in samples.values()):
        raise ValueError("sample counts must be positive")
    tokens, flops = {}, {}
    for preset in (NVILA, baseline_preset()):
        cfg = get_preset(preset)
        tokens[preset] = count_visual_tokens(cfg, [tuple(image)]).total_tokens + text_tokens
        flops[preset] = costmodel.train_step_flops(cfg, ALL_LEARN, [tuple(image)], prompt_tokens=text_tokens)
    if fp8_factor is None:
        fp8_factor, fp8_source = PAPER_FP8, "paper: FP8 training table (v3 Table 5), 390.1 / 199.2"
    return CostEstimate(
        hardware, tuple(image), text_tokens, dict(samples), mfu, tokens, flops, fp8_factor, fp8_source, 1 / PRUNE_KEEP
    )


def fp8_speedup(records: list[Record]) -> tuple[float, str, str] | None:
    """(FP8 over BF16 samples/s, preset, hardware) from measured train records of the same preset and
    hardware (the latest of each), or None when no such pair was measured."""
    from nvila_bench.core.measuring.results import hardware_of

    latest = {}
    for r in records:
        if r.suite == "train" and r.ok and r.provenance == "measured" and "samples_per_s" in r.metrics:
            latest[(r.preset, hardware_of(r), bool(r.extra.get("fp8")))] = r
    for (preset, hw, fp8), r in latest.items():
        base = latest.get((preset, hw, False))
        if fp8 and base and base.value("samples_per_s") and r.value("samples_per_s"):
            return r.value("samples_per_s") / base.value("samples_per_s"), preset, hw
    return None


def measured_fp8_factor(records: list[Record]) -> tuple[float, str] | None:
    """The FP8 speed-up and where it was measured, for `estimate`."""
    found = fp8_speedup(records)
    return (found[0], f"measured: train suite, {found[1]} on {found[2]}") if found else None
