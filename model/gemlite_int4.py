"""W4A16 on CUDA with gemlite's Triton kernels (model/quantize.py's "gemlite" int4 kernel): the packed weight,
and the linear layer that runs it, with a GEMV / GEMM below `DEQUANT_MIN_TOKENS` tokens and, from there,
dequantize-then-cuBLAS, as vLLM's AWQ layer does from 256 tokens (vllm/model_executor/layers/quantization/
awq.py, `FP16_MATMUL_HEURISTIC_CONDITION`; AutoAWQ from 1024): a prefill is compute-bound, where a Triton GEMM
that unpacks int4 in its inner loop runs well below cuBLAS on Hopper, while dequantizing a layer costs one
pass over its weight (2.5 bytes per weight: 4 bits read, bf16 written) before cuBLAS reads it.

gemlite's layout (gemlite 0.6 `GemLiteLinearTriton.pack` with `A16Wn.from_weights`): `qdata` (K / 8, N) int32,
eight 4-bit weights per int32 along K (weight k = 8 * row + j in bits 4j..4j+3), `scale` and `zero` (K / group,
N); W_group_mode 4 (its FMA mode, the default) stores `zero` as -zero * scale, so W = q * scale + zero, and
mode 3 stores it as is, W = (q - zero) * scale. tests/gemlite_interpreter.py checks `dequantize` against
gemlite's own kernels (Triton's interpreter, on CPU).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

DEQUANT_MIN_TOKENS = 256  # from here a layer's input runs dequantize + cuBLAS (vLLM's AWQ threshold)


def gemlite_weight(weight: torch.Tensor, group_size: int):
    """gemlite's packed int4 of a bf16 weight, as torchao's tensor for it (UIntxBitPackedTensor, whose linear
    calls gemlite's kernels). What torchao's prototype `UIntxWeightOnlyConfig` does, but with bf16 scales: that
    config rounds with HQQ in fp16, and gemlite then runs the layer in fp16 (fp16 outputs inside a bf16 model)."""
    import gemlite
    from torchao.prototype.quantization.uintx.uintx_bit_packed_tensor import UIntxBitPackedTensor
    from torchao.quantization.quant_primitives import _choose_qparams_and_quantize_affine_hqq

    q, scale, zero, _ = _choose_qparams_and_quantize_affine_hqq(
        weight, nbits=4, group_size=group_size, raw_output=True, compute_dtype=weight.dtype, device=weight.device
    )
    layer = gemlite.helper.A16Wn(device=weight.device, dtype=weight.dtype).from_weights(q, scale, zero, 4, group_size)
    # gemlite 0.6 returns [W_q, scales, zeros, meta_scale] as Parameters; meta_scale is only read for NVFP4 or
    # scaled activations (and torchao 0.18's own from_hp, which unpacks three, fails on it)
    qdata, scale, zero = (t.detach() for t in layer.get_tensor_args()[:3])
    kwargs = {
        "in_features": weight.shape[1],
        "out_features": weight.shape[0],
        "packing_bitwidth": None,
        "data_contiguous": layer.data_contiguous,
        "elements_per_sample": layer.elements_per_sample,
        "W_group_mode": layer.W_group_mode,
        "meta_args": layer.get_meta_args(),
    }
    return UIntxBitPackedTensor(qdata, scale, zero, kwargs, 4, group_size, weight.dtype)


def _unpack(qdata: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, fma: bool) -> torch.Tensor:
    """(K, N) weights of gemlite's int4 (see the module's docstring), in the scales' dtype."""
    rows, n = qdata.shape
    shifts = torch.arange(0, 32, 4, dtype=torch.int32, device=qdata.device).view(1, 8, 1)
    q = ((qdata.unsqueeze(1) >> shifts) & 15).view(scale.shape[0], -1, n).to(scale.dtype)  # (groups, group, N)
    w = q * scale.unsqueeze(1) + zero.unsqueeze(1) if fma else (q - zero.unsqueeze(1)) * scale.unsqueeze(1)
    return w.view(rows * 8, n)


@functools.cache
def _unpack_compiled():
    return torch.compile(_unpack, dynamic=True)  # one fused kernel, also outside a compiled forward


def dequantize(weight) -> torch.Tensor:
    """The (K, N) bf16 weights of a gemlite int4 `weight` (a layer's own, or a column slice of a fused one)."""
    kwargs = weight.gemlite_kwargs
    if (
        weight.bit_width != 4
        or kwargs["elements_per_sample"] != 8
        or not kwargs["data_contiguous"]
        or kwargs["W_group_mode"] not in (3, 4)
    ):
        raise ValueError(f"not gemlite int4 as gemlite_weight packs it: {kwargs}")
    return _unpack_compiled()(weight.qdata, weight.scale, weight.zero_point, kwargs["W_group_mode"] == 4)


class GemliteLinear(nn.Linear):
    """A linear layer with a gemlite int4 weight: gemlite's GEMV / GEMM below `DEQUANT_MIN_TOKENS` input rows,
    dequantize + cuBLAS from there. quantize.py gives gemlite layers this class (state and parameters as before)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() // x.shape[-1] < DEQUANT_MIN_TOKENS:
            return F.linear(x, self.weight, self.bias)
        return F.linear(x, dequantize(self.weight).t(), self.bias)
