"""Activation-aware scales before quantizing, folded into the model so nothing is added at run time.

A linear layer's input channels differ in size (trained LLMs and ViTs have a few outlier channels): scaling
channel j of the weight up by s_j and the input down by 1/s_j leaves the output unchanged in full
precision but moves quantization error away from the channels that matter. The 1/s is folded into what
feeds the linears (an RMSNorm / LayerNorm weight and bias, or the rows of the linear before), so the
quantized model runs with the same kernels and no extra multiply.

- w4a16 (AWQ, Lin et al. 2024, llm-awq's `auto_scale`): s = mean|x|^a / sqrt(max * min) over a grid of
  a in [0, 1), the a whose int4 (group-wise, asymmetric) outputs of the whole group are closest to bf16's
  on the calibration activations. a = 0 is s = 1, so the search never does worse than no scaling there.
- w8a8-int8 / w8a8-fp8 (SmoothQuant, Xiao et al. 2023): s = max|x|^0.5 / max|w|^0.5 per input channel,
  moving half of the activations' range into the weights.

Groups (linears that share an input, and what feeds it): in each Qwen2 / Llama decoder layer (a peer VLM's too),
input norm -> q/k/v, post-attention norm -> gate/up, up -> down, and v -> o where the shapes allow (not with GQA,
as llm-awq); in each SigLIP encoder layer, layer_norm1 -> q/k/v, v -> out_proj, layer_norm2 -> fc1 (fc2 follows
a GELU: not foldable). The activations come from the caller's calibration forward passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

GRID = 20  # AWQ's grid of exponents
MAX_ROWS = 512  # calibration rows kept per group (tokens), spread over the calibration passes
SMOOTH_ALPHA = 0.5


@dataclass
class Group:
    """Linears fed by one input, and `source`: the norm or linear whose output that input is."""

    source: nn.Module
    linears: list

    @property
    def in_features(self) -> int:
        return self.linears[0].in_features


def llm_groups(llm: nn.Module, lm_head: bool = False) -> list[Group]:
    """The decoder layers' groups, and with `lm_head` the final norm -> LM head."""
    from .quantize import decoder

    groups, body = [], decoder(llm)  # a Qwen2-VL / Qwen2.5-VL peer's LLM is the whole VLM: its language model's
    for layer in body.layers:
        attn, mlp = layer.self_attn, layer.mlp
        groups.append(Group(layer.input_layernorm, [attn.q_proj, attn.k_proj, attn.v_proj]))
        if attn.v_proj.out_features == attn.o_proj.in_features:
            groups.append(Group(attn.v_proj, [attn.o_proj]))
        groups.append(Group(layer.post_attention_layernorm, [mlp.gate_proj, mlp.up_proj]))
        groups.append(Group(mlp.up_proj, [mlp.down_proj]))
    if lm_head:
        groups.append(Group(body.norm, [llm.lm_head]))
    return groups


def vision_groups(encoder: nn.Module) -> list[Group]:
    groups = []
    for layer in encoder.layers:
        attn = layer.self_attn
        groups.append(Group(layer.layer_norm1, [attn.q_proj, attn.k_proj, attn.v_proj]))
        groups.append(Group(attn.v_proj, [attn.out_proj]))
        groups.append(Group(layer.layer_norm2, [layer.mlp.fc1]))
    return groups


FLOAT_ZERO_KERNELS = ("tinygemm", "opaque")  # a float zero point per group, stored with the scale in bf16


def fake_int4(weight: torch.Tensor, group_size: int, kernel: str = "intx") -> torch.Tensor:
    """Round-to-nearest int4 of `weight` (N, K), asymmetric in groups of `group_size` inputs, dequantized, as
    `kernel` stores it: an integer zero point (intx; gemlite's HQQ rounding is near it), or tinygemm's float
    zero with scale and zero in bf16 (tinygemm, opaque: torchao's own quantize and dequantize, which their
    `from_hp` use), whose bf16 zero loses precision as a group's offset grows."""
    if kernel in FLOAT_ZERO_KERNELS:
        from torchao.quantization.quant_primitives import (
            MappingType,
            _choose_qparams_affine_tinygemm,
            _dequantize_affine_tinygemm,
            _quantize_affine_tinygemm,
        )

        w, block = weight.to(torch.bfloat16), (1, group_size)
        scale, zero = _choose_qparams_affine_tinygemm(
            w, MappingType.ASYMMETRIC, block, torch.int32, 0, 15, 1e-6, None, w.dtype
        )
        q = _quantize_affine_tinygemm(w, block, scale, zero, torch.int32, 0, 15)
        return _dequantize_affine_tinygemm(q, block, scale, zero, torch.int32, 0, 15, output_dtype=torch.float32)
    g = weight.float().reshape(-1, group_size)
    lo, hi = g.amin(1, keepdim=True), g.amax(1, keepdim=True)
    scale = (hi - lo).clamp(min=1e-8) / 15
    zero = (-lo / scale).round()
    return ((((g / scale) + zero).round().clamp(0, 15) - zero) * scale).reshape(weight.shape)


def awq_scale(
    weight: torch.Tensor, x: torch.Tensor, group_size: int, grid: int = GRID, kernel: str = "intx"
) -> torch.Tensor:
    """AWQ's per-input-channel scale for `weight` (N, K, the group's linears stacked) on activations x (T, K),
    searched with `kernel`'s rounding (`fake_int4`)."""
    w, x = weight.float(), x.float()
    reference = x @ w.T
    magnitude = x.abs().mean(0)
    best, best_loss = torch.ones_like(magnitude), float("inf")
    for i in range(grid):
        s = magnitude.pow(i / grid).clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        loss = ((x / s) @ fake_int4(w * s, group_size, kernel).T - reference).pow(2).mean().item()
        if loss < best_loss:
            best, best_loss = s, loss
    return best


def smoothquant_scale(weight: torch.Tensor, x: torch.Tensor, alpha: float = SMOOTH_ALPHA) -> torch.Tensor:
    """SmoothQuant's per-input-channel scale: max|x|^alpha / max|w|^(1 - alpha)."""
    act = x.float().abs().amax(0).clamp(min=1e-5)
    wmax = weight.float().abs().amax(0).clamp(min=1e-5)
    return (act.pow(alpha) / wmax.pow(1 - alpha)).clamp(min=1e-5)


@torch.no_grad()
def fold(group: Group, s: torch.Tensor) -> None:
    """Divide the group's input by s where it is made, multiply the linears' weight columns by s."""
    source = group.source
    if isinstance(source, nn.Linear):  # its output rows are the group's input channels
        source.weight.div_(s.view(-1, 1).to(source.weight.dtype))
    else:  # RMSNorm (weight) or LayerNorm (weight, bias)
        source.weight.div_(s.to(source.weight.dtype))
    if getattr(source, "bias", None) is not None:
        source.bias.div_(s.to(source.bias.dtype))
    for linear in group.linears:
        linear.weight.mul_(s.view(1, -1).to(linear.weight.dtype))


def _spread(rows: torch.Tensor, count: int) -> torch.Tensor:
    """At most `count` of `rows`, evenly spaced."""
    return rows[:: max(1, rows.shape[0] // count)][:count]


def capture_inputs(groups: list[Group], run: Callable[[], None], max_rows: int = MAX_ROWS) -> list[torch.Tensor | None]:
    """Each group's input rows (T, K) seen while `run()` runs the model's calibration passes (float32,
    at most `max_rows` per group, spread evenly over each pass's tokens); None for a group never run."""
    seen: list[list[torch.Tensor]] = [[] for _ in groups]

    def hook(index):
        def keep(module, args):
            seen[index].append(_spread(args[0].detach().reshape(-1, args[0].shape[-1]), max_rows).float())

        return keep

    handles = [g.linears[0].register_forward_pre_hook(hook(i)) for i, g in enumerate(groups)]
    try:
        with torch.inference_mode():
            run()
    finally:
        for h in handles:
            h.remove()
    if not any(seen):
        raise ValueError("calibration ran no input through the layers to quantize")
    out = []
    for rows in seen:  # none: a layer the model never runs (NVILA reads the ViT's second-to-last layer)
        x = torch.cat(rows) if rows else None
        out.append(None if x is None else _spread(x, max_rows).clone())
    return out


def smooth(groups: list[Group], fmt: str, run: Callable[[], None], group_size: int = 128, kernel: str = "intx") -> None:
    """Compute the scales of `fmt` (w4a16: AWQ, for `kernel`'s rounding; w8a8-*: SmoothQuant) for each group on
    the activations `run()` produces, and fold them into the model in place."""
    inputs = capture_inputs(groups, run)
    for group, x in zip(groups, inputs):
        if x is None:
            continue
        weight = torch.cat([linear.weight.detach() for linear in group.linears])
        s = awq_scale(weight, x, group_size, kernel=kernel) if fmt == "w4a16" else smoothquant_scale(weight, x)
        fold(group, s)
