"""Weight formats as plain data: the formats, the components they apply to, a `QuantPlan` (a format per
component), which int4 kernel a plan runs with and whether it can run here. Importing it loads no torch (the
suites declare their options and the reports name the components without it); model/quantize.py applies a plan.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

FORMATS = ("bf16", "w4a16", "w8a8-int8", "w8a8-fp8")
COMPONENTS = ("vision", "projector", "llm")
SCALES = ("none", "activation-aware")
INT4_KERNELS = ("auto", "gemlite", "tinygemm", "opaque", "intx")  # w4a16 kernels: CUDA's two, then CPU's two
CUDA_INT4 = ("gemlite", "tinygemm")  # opaque is CPU-only; intx (dequantize + matmul) runs anywhere
UNFUSED_INT4 = (
    "tinygemm",
    "opaque",
)  # (groups, rows, 2) scales: a row slice is not contiguous, their kernels refuse it


@dataclass(frozen=True)
class QuantPlan:
    """A weight format per component; `group_size` for the group-wise (int4) formats."""

    llm: str = "bf16"
    vision: str = "bf16"
    projector: str = "bf16"
    group_size: int = 128
    scales: str = "none"  # "activation-aware": AWQ (int4) / SmoothQuant (int8, fp8) scales from calibration
    int4_kernel: str = (
        "auto"  # w4a16: gemlite / tinygemm (CUDA), opaque / intx (CPU); auto: gemlite where installed, opaque on CPU
    )
    lm_head: bool = (
        False  # the LM head in the LLM's format too (a decode step reads it whole: 1.09 GB in bf16 for Qwen2-7B)
    )

    def __post_init__(self):
        for component in COMPONENTS:
            if getattr(self, component) not in FORMATS:
                raise ValueError(
                    f"unknown {component} weight format {getattr(self, component)!r}; known: {', '.join(FORMATS)}"
                )
        if self.lm_head and self.llm == "bf16":
            raise ValueError("a quantized LM head needs a quantized LLM format (llm is bf16)")
        if self.int4_kernel not in INT4_KERNELS:
            raise ValueError(f"unknown int4 kernel {self.int4_kernel!r}; known: {', '.join(INT4_KERNELS)}")
        if self.scales not in SCALES:
            raise ValueError(f"unknown scales {self.scales!r}; known: {', '.join(SCALES)}")
        if self.group_size not in (32, 64, 128, 256):
            raise ValueError(f"group_size must be 32, 64, 128 or 256, got {self.group_size}")

    def format_of(self, component: str) -> str:
        return getattr(self, component)

    @property
    def is_bf16(self) -> bool:
        return all(self.format_of(c) == "bf16" for c in COMPONENTS)


def int4_kernel(plan: QuantPlan, device: str) -> str:
    """The kernel `plan`'s int4 weights run with on `device`: the plan's choice; "auto" is gemlite on CUDA where
    it is installed (else tinygemm, in PyTorch) and opaque (PyTorch's CPU int4 GEMM) elsewhere."""
    if plan.int4_kernel != "auto":
        return plan.int4_kernel
    if not str(device).startswith("cuda"):
        return "opaque"
    return "gemlite" if importlib.util.find_spec("gemlite") else "tinygemm"


def unavailable(plan: QuantPlan, device: str) -> str | None:
    """Why `plan` cannot run on `device` here, or None."""
    if plan.is_bf16:
        return None
    if importlib.util.find_spec("torchao") is None:
        return "quantized weights need torchao (pip install 'nvila-bench[quant]')"
    uses = {plan.format_of(c) for c in COMPONENTS}
    kernel = int4_kernel(plan, device) if "w4a16" in uses else None
    cuda = str(device).startswith("cuda")
    if kernel in CUDA_INT4 and not cuda:
        return f"the {kernel} int4 kernel runs on CUDA GPUs only"
    if kernel == "opaque" and cuda:
        return "the opaque int4 kernel runs on CPUs only"
    if kernel == "opaque" and plan.group_size > 128:
        return f"the opaque int4 kernel takes groups of 32, 64 or 128 inputs, not {plan.group_size}"
    if kernel == "gemlite" and importlib.util.find_spec("gemlite") is None:
        return "the gemlite int4 kernel needs gemlite (pip install gemlite)"
    if "w8a8-fp8" in uses:
        import torch

        if not (cuda and torch.cuda.is_available()) or torch.cuda.get_device_capability(torch.device(device)) < (8, 9):
            return "w8a8-fp8 needs a CUDA GPU with FP8 (compute capability 8.9+: Ada / Hopper)"
    return None
