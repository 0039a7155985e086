"""Which SDPA kernel PyTorch runs for given q, k and v: the records name it (a fused kernel, or math, which
would be a finding)."""

from __future__ import annotations

import torch


def sdpa_backend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool = False, **kwargs) -> str:
    """PyTorch's own choice for these tensors (their shapes, strides, dtype and device) and `kwargs` (scale,
    enable_gqa): "cudnn_attention", "flash_attention", "efficient_attention", "math", or "unknown"."""
    from torch.nn.attention import SDPBackend

    try:  # private, but the function SDPA dispatches with
        return SDPBackend(torch._fused_sdp_choice(q, k, v, None, 0.0, is_causal, **kwargs)).name.lower()
    except (AttributeError, RuntimeError, TypeError, ValueError):
        return "unknown"
