"""The compiled engine's vision tower: SigLIP's encoder up to the layer NVILA reads, written for speed like
model/fast_llm.py's prefill, on the transformers tower's own modules (docs/architecture.md#engines).

Why not transformers' layers, each compiled (the first H100 runs: NVILA-8B's 17 tiles in 41.3 ms, 56% MFU):
- q/k/v are three matmuls with K = 1,152 on the same input; here one (N = 3,456), the input read once and
  fewer partial waves of GEMM tiles (the weights become row slices of one tensor: no memory is added).
- fc1 then GELU writes and reads the MLP's widest activation twice (17,408 x 4,304 in bf16: 150 MB, ~0.1 ms
  per layer on an H100, 2.6 ms a tower); on CUDA the GELU (tanh, SigLIP's `gelu_pytorch_tanh`) runs in the
  GEMM's epilogue (`torch._addmm_activation`, cuBLASLt's GELU_BIAS), which inductor keeps as one kernel.
- The whole tower is one compiled function, so each layer's last residual add fuses with the next layer's
  LayerNorm.
Supported: SDPA attention (the tower's `attn_implementation`); quantized or otherwise non-plain linears run
one by one as they are. Tests compare the features with transformers' tower (tests/test_fast_vision.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .fast_llm import Fused, _plain

GELU_TANH = "gelu_pytorch_tanh"


def _gelu_fc1(fc1: nn.Module, act, x: torch.Tensor, epilogue: bool) -> torch.Tensor:
    """GELU(fc1(x)). With `epilogue` (CUDA, plain weights, SigLIP's tanh GELU) the GELU runs inside the GEMM:
    torch._addmm_activation is the tanh approximation on CUDA (on CPU it is the exact GELU, so not used there)."""
    if not epilogue:
        return act(fc1(x))
    flat = torch._addmm_activation(fc1.bias, x.reshape(-1, x.shape[-1]), fc1.weight.t(), use_gelu=True)
    return flat.view(*x.shape[:-1], -1)


@dataclass
class _VisionLayer:
    norm1: nn.Module
    qkv: Fused
    out_proj: nn.Module
    norm2: nn.Module
    fc1: nn.Module
    act: nn.Module
    fc2: nn.Module
    epilogue: bool  # fc1's GELU in its GEMM (see _gelu_fc1)

    @classmethod
    def of(cls, layer: nn.Module, hidden_act: str) -> "_VisionLayer":
        attn, mlp = layer.self_attn, layer.mlp
        fc1 = mlp.fc1
        epilogue = fc1.weight.device.type == "cuda" and hidden_act == GELU_TANH and _plain([fc1])
        epilogue = epilogue and fc1.bias is not None
        return cls(
            layer.layer_norm1,
            Fused.of(attn.q_proj, attn.k_proj, attn.v_proj),
            attn.out_proj,
            layer.layer_norm2,
            fc1,
            mlp.activation_fn,
            mlp.fc2,
            epilogue,
        )


class FastVision:
    """`features(pixels (T, 3, S, S))` -> (T, patches, C): the output of encoder layer `layers_used`, before
    post_layernorm, as model/vision.py `vision_features` computes it with transformers' modules."""

    def __init__(self, tower: nn.Module, layers_used: int):
        from .vision import vision_body

        body, config = vision_body(tower), tower.config
        implementation = getattr(config, "_attn_implementation", None) or "sdpa"
        if implementation != "sdpa":
            raise ValueError(f"the fast vision tower runs SDPA attention, not the tower's {implementation!r}")
        self.embeddings = body.embeddings
        self.layers = [_VisionLayer.of(layer, config.hidden_act) for layer in body.encoder.layers[:layers_used]]
        self.heads = config.num_attention_heads
        self.head_dim = config.hidden_size // self.heads
        self.scale = self.head_dim**-0.5

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        """(tiles, patches, C) -> (tiles, heads, patches, head dim), a view."""
        return t.view(*t.shape[:2], self.heads, self.head_dim).transpose(1, 2)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(pixels)
        tiles, patches, width = x.shape
        for layer in self.layers:
            q, k, v = map(self._split, layer.qkv(layer.norm1(x)))
            attended = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
            x = x + layer.out_proj(attended.transpose(1, 2).reshape(tiles, patches, width))
            x = x + layer.fc2(_gelu_fc1(layer.fc1, layer.act, layer.norm2(x), layer.epilogue))
        return x


def fast_vision_attention_kernel(tower: nn.Module) -> str:
    """The SDPA backend FastVision's attention gets for one tile in the tower's dtype and device: q, k and v as
    their strided slices of the fused q/k/v output. E.g. "cudnn_attention", "flash_attention", "math"."""
    from .attention import sdpa_backend
    from .vision import vision_body

    config = tower.config
    heads, width = config.num_attention_heads, config.hidden_size
    patches = (config.image_size // config.patch_size) ** 2
    weight = vision_body(tower).embeddings.patch_embedding.weight
    fused = torch.empty(1, patches, 3 * width, dtype=weight.dtype, device=weight.device)
    q, k, v = (t.view(1, patches, heads, -1).transpose(1, 2) for t in fused.split(width, -1))
    return sdpa_backend(q, k, v, scale=(width // heads) ** -0.5)
