"""Weight formats per component (vision tower, projector, LLM linear layers), applied with torchao to a built
or loaded model, and the bytes each format stores (pure functions, so the cost model predicts them).

    bf16        unchanged
    w4a16       int4 weights, group-wise scales and zero points (groups of `group_size` inputs), activations
                bf16. CPU (`int4_kernel`):
                  opaque    (the default) torchao's `Int4OpaqueTensor` (prototype `PrototypeInt4WeightOnlyConfig`):
                            two weights per byte, a bf16 (scale, zero) pair per group, PyTorch's CPU int4 GEMM
                            `_weight_int4pack_mm_for_cpu` (what gpt-fast runs int4 on CPU with). Groups of 32-128.
                  intx      torchao's `IntxWeightOnlyConfig(int4, PerGroup)`: one int8 per weight, dequantized
                            then multiplied (on any device); kept because its row slices can be fused (`Fusion`).
                CUDA, one of two kernels:
                  gemlite   gemlite's Triton kernels through torchao's tensor for them (`UIntxBitPackedTensor`,
                            as torchao's prototype `UIntxWeightOnlyConfig` builds it, with bf16 scales):
                            HQQ-rounded, eight weights per int32, a GEMV for decode, and from 256 tokens
                            dequantize + cuBLAS as vLLM's AWQ does (model/gemlite_int4.py).
                            Needs `pip install gemlite`; "auto" picks it where installed.
                  tinygemm  torchao's `Int4WeightOnlyConfig` (tile_packed_to_4d, PyTorch's own
                            `_weight_int4pack_mm`). It pads in_features to a multiple of 1024 (Qwen2-7B's 3584 ->
                            4096: 14% more bytes read) and is a decode kernel, slow at prefill
                            (benchmarks/NOTES.md, "W4A16 kernels"; the torchao-peer part of
                            benchmarks/gpu_session.sh measures it).
    w8a8-int8   int8 weights (per output channel) and int8 activations quantized per token at run time:
                torchao `Int8DynamicActivationInt8WeightConfig`, on CPU and CUDA.
    w8a8-fp8    float8 e4m3 weights and per-row dynamic activations: torchao
                `Float8DynamicActivationFloat8WeightConfig`; needs a GPU with FP8 (Ada / Hopper, sm 8.9+).

Which linear layers each component quantizes: the LLM's decoder layers (q, k, v, o, gate, up, down, with q/k/v
and gate/up quantized as one weight each whose row slices the layers hold, `Fusion`; the
embeddings stay bf16, the LM head too unless `QuantPlan.lm_head`; a tied head is then untied, the embedding
table staying bf16), the vision tower's encoder layers (q, k, v, out, fc1, fc2; the patch
embedding is a convolution and stays), every linear layer of the projector. A peer VLM (model/peer_model.py) has
its LLM's decoder layers quantized the same way (transformers' module paths, `PATHS`); its vision tower and merger /
projector stay bf16, as the paper's W4A16 comparison has them. Storage per format is what
torchao 0.18 (and gemlite 0.6) keep: checked on CPU by tests/test_quantize.py; the CUDA layouts are read from
their source and checked on a GPU by tests/test_quantize_cuda.py (not yet run there). The formats and plans
themselves are plain data in model/quant_plan.py (no torch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import NVILAConfig
from .peer_config import PeerConfig
from .quant_plan import COMPONENTS, UNFUSED_INT4, QuantPlan, int4_kernel, unavailable


# ---- which layers --------------------------------------------------------------------------------------
def linear_shapes(cfg: NVILAConfig, component: str) -> list[tuple[int, int]]:
    """(in_features, out_features) of every linear layer a format applies to in `component`, from the config (a
    peer VLM's LLM only: its vision tower and projector stay bf16)."""
    if component != "llm" and isinstance(cfg, PeerConfig):
        raise ValueError(f"{cfg.name} is a peer VLM: its {component} stays bf16 here")
    if component == "llm":
        llm = cfg.llm
        h, f, q, kv = (
            llm.hidden_size,
            llm.intermediate_size,
            llm.num_heads * llm.head_dim,
            llm.num_kv_heads * llm.head_dim,
        )
        return [(h, q), (h, kv), (h, kv), (q, h), (h, f), (h, f), (f, h)] * llm.num_layers
    if component == "vision":
        d, f = cfg.vision.hidden_size, cfg.vision.intermediate_size
        return [(d, d)] * 4 * cfg.vision.num_layers + [(d, f), (f, d)] * cfg.vision.num_layers
    c, h, k = cfg.projector.mm_hidden_size, cfg.projector.hidden_size, cfg.projector.window
    if k == 3:
        return [(9 * c, 3 * c), (3 * c, h), (h, h)]
    return [(k * k * c, h), (h, h)]


def quantized_shapes(cfg: NVILAConfig, plan: QuantPlan, component: str) -> list[tuple[int, int]]:
    """`linear_shapes`, and the LM head's (hidden, vocab) where `plan.lm_head` quantizes it too."""
    head = [(cfg.llm.hidden_size, cfg.llm.vocab_size)] if component == "llm" and plan.lm_head else []
    return linear_shapes(cfg, component) + head


def is_peer_model(model) -> bool:
    """A peer VLM (model/peer_model.py): transformers' model under `hf`, its LLM's linears quantized alone."""
    return getattr(model, "is_peer", False)


def decoder(llm: nn.Module) -> nn.Module:
    """The decoder (its `layers`, `norm`) of the LLM the engines drive: NVILA's and LLaVA-OneVision's
    Qwen2ForCausalLM's `model`, or a Qwen2-VL / Qwen2.5-VL model's `model.language_model`."""
    return getattr(llm.model, "language_model", llm.model)


# Module paths of the linears each component's format applies to, and of the LM head. A peer's are transformers'
# (its vision tower and merger / projector stay bf16: `quantize_model`).
PATHS = {
    "nvila": {
        "llm": "llm.model.layers.",
        "vision": "vision_tower.",
        "projector": "mm_projector.",
        "head": "llm.lm_head",
    },
    "peer": {"llm": "hf.model.language_model.layers.", "head": "hf.lm_head"},
}


def _selected(model, component: str, lm_head: bool = False):
    """torchao filter: the linear layers of `component` that its format applies to (by module path)."""
    paths = PATHS["peer" if is_peer_model(model) else "nvila"]
    prefix = paths[component]

    def keep(module: nn.Module, name: str) -> bool:
        if lm_head and component == "llm" and name == paths["head"]:
            return True
        if not isinstance(module, nn.Linear) or not name.startswith(prefix):
            return False
        return component != "vision" or ".encoder.layers." in name

    return keep


# ---- bytes -----------------------------------------------------------------------------------------------
def _up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def linear_bytes(n_in: int, n_out: int, fmt: str, group_size: int = 128, kernel: str = "opaque") -> int:
    """Bytes one linear layer's weight takes in `fmt` (its bias, if any, stays bf16 and is not counted here);
    `kernel` is the w4a16 kernel's (`int4_kernel`), whose layouts differ."""
    if fmt == "bf16":
        return 2 * n_in * n_out
    if fmt == "w4a16":
        if kernel == "tinygemm":  # padded to (8, 1024) multiples first (torchao Int4TilePackedTo4dTensor.from_hp);
            n_out, n_in = _up(n_out, 8), _up(n_in, 1024)  # then 2 weights per byte, a bf16 (scale, zero) pair per group
        groups = n_out * (n_in // group_size)
        if kernel in ("tinygemm", "gemlite", "opaque"):  # gemlite: 8 weights per int32, bf16 scale and zero per group
            return n_in * n_out // 2 + 4 * groups  # opaque: 2 weights per byte, a bf16 (scale, zero) pair per group
        return n_in * n_out + 3 * groups  # intx: int8 per weight; bf16 scale + int8 zero point per group
    if fmt == "w8a8-int8":
        return n_in * n_out + 5 * n_out  # int8 per weight; fp32 scale + int8 zero point per output channel
    if fmt == "w8a8-fp8":
        return n_in * n_out + 4 * n_out  # e4m3 per weight; fp32 scale per output row
    raise ValueError(f"unknown weight format {fmt!r}")


def predicted_weight_bytes(cfg: NVILAConfig | PeerConfig, plan: QuantPlan, device: str = "cpu") -> dict[str, int]:
    """Bytes of every parameter of each built component (bf16 everywhere but the quantized linear weights); a
    peer VLM's components are model/peer_params.py's."""
    from .params import param_counts

    params = param_counts(cfg)
    out = {}
    for component in COMPONENTS:
        fmt = plan.format_of(component)
        if fmt == "bf16":
            out[component] = 2 * params[component]
            continue
        quantized = sum(
            linear_bytes(i, o, fmt, plan.group_size, int4_kernel(plan, device))
            for i, o in quantized_shapes(cfg, plan, component)
        )
        replaced = sum(i * o for i, o in linear_shapes(cfg, component))
        if component == "llm" and plan.lm_head and not cfg.llm.tie_word_embeddings:
            replaced += cfg.llm.hidden_size * cfg.llm.vocab_size  # a tied head's bf16 table stays: the embeddings
        out[component] = 2 * (params[component] - replaced) + quantized
    return out


def tensor_bytes(t: torch.Tensor) -> int:
    """Storage of a tensor, a torchao quantized tensor's inner tensors (data, scales, zero points) summed."""
    if hasattr(t, "__tensor_flatten__") and type(t) is not nn.Parameter and type(t) is not torch.Tensor:
        names, _ = t.__tensor_flatten__()
        return sum(tensor_bytes(getattr(t, n)) for n in names if getattr(t, n) is not None)
    return t.numel() * t.element_size()


def measured_weight_bytes(model) -> dict[str, int]:
    """Bytes of every parameter per component of a built model, after any quantization (tied weights once)."""
    if is_peer_model(model):
        parts = model.component_parameters()
    else:
        modules = {"vision": model.vision_tower, "projector": model.mm_projector, "llm": model.llm}
        parts = {c: list(m.parameters()) for c, m in modules.items()}
    return {c: sum(tensor_bytes(p.data if isinstance(p, nn.Parameter) else p) for p in ps) for c, ps in parts.items()}


# ---- applying ----------------------------------------------------------------------------------------------
def _config(fmt: str, group_size: int, kernel: str):
    """torchao's config for `fmt`. `set_inductor_config=False` throughout: torchao's default turns on
    inductor's coordinate-descent tuning (and more) for the whole process, which slows every later compile
    and changes the kernels of the bf16 rungs and peers measured after a quantized one."""
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        Int4WeightOnlyConfig,
        Int8DynamicActivationInt8WeightConfig,
        IntxWeightOnlyConfig,
        PerRow,
    )
    from torchao.quantization.granularity import PerGroup

    if fmt == "w4a16":
        if kernel == "tinygemm":  # torchao's default packing ("plain") needs the separate mslk kernel library
            from torchao.quantization.quantize_.workflows import Int4PackingFormat

            return Int4WeightOnlyConfig(
                group_size=group_size,
                int4_packing_format=Int4PackingFormat.TILE_PACKED_TO_4D,
                set_inductor_config=False,
            )
        if kernel == "opaque":  # round to nearest, asymmetric (tinygemm's qparams); AWQ scales come before
            from torchao.prototype.quantization.int4.inference_workflow import PrototypeInt4WeightOnlyConfig

            return PrototypeInt4WeightOnlyConfig(group_size=group_size, set_inductor_config=False)
        return IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(group_size))
    if fmt == "w8a8-int8":
        return Int8DynamicActivationInt8WeightConfig(set_inductor_config=False)
    return Float8DynamicActivationFloat8WeightConfig(granularity=PerRow(), set_inductor_config=False)


def quantize_model(model, plan: QuantPlan, calibration=None) -> None:
    """Quantize `model`'s components in place as `plan` says (bf16 components are left alone). With
    `plan.scales == "activation-aware"`, `calibration()` runs the model on calibration requests first and
    the LLM's and vision tower's scales are folded in (model/calibrate.py; the projector is left as it is).
    A format that cannot run here is a ValueError saying why (see `unavailable`)."""
    device = str(next(model.parameters()).device)
    reason = unavailable(plan, device)
    if reason:
        raise ValueError(reason)
    peer = [c for c in ("vision", "projector") if is_peer_model(model) and plan.format_of(c) != "bf16"]
    if peer:
        raise ValueError(f"a peer VLM's {peer[0]} stays bf16 here (its LLM is quantized: w4a16, w8a8-int8 or w8a8-fp8)")
    kernel = int4_kernel(plan, device)
    if plan.scales == "activation-aware":
        if calibration is None:
            raise ValueError("activation-aware scales need calibration requests")
        from .calibrate import llm_groups, smooth, vision_groups
        from .vision import vision_body

        head = (
            plan.lm_head and not model.config.llm.tie_word_embeddings
        )  # a tied head's scales would change the embeddings
        groups = {
            "vision": lambda: vision_groups(vision_body(model.vision_tower).encoder),
            "llm": lambda: llm_groups(model.llm, head),
        }
        for component, make in groups.items():
            if plan.format_of(component) != "bf16":
                smooth(make(), plan.format_of(component), calibration, plan.group_size, kernel)
    for component in COMPONENTS:
        fmt = plan.format_of(component)
        if fmt == "bf16":
            continue
        bad = [
            (i, o) for i, o in quantized_shapes(model.config, plan, component) if fmt == "w4a16" and i % plan.group_size
        ]
        if bad:
            raise ValueError(f"{component}: w4a16 groups of {plan.group_size} do not divide in_features {bad[0][0]}")
        quantize_component(model, component, fmt, plan.group_size, kernel, plan.lm_head)


def quantize_component(model, component: str, fmt: str, group_size: int, kernel: str, lm_head: bool = False) -> None:
    """`component`'s linear layers in `fmt` with `kernel` (checks done: see `quantize_model`). The LLM's q/k/v
    and gate/up are quantized as one weight each (`Fusion`), but for `UNFUSED_INT4`. tests/gemlite_interpreter.py
    calls this with the gemlite kernel on CPU, under Triton's interpreter."""
    if component == "llm" and not (fmt == "w4a16" and kernel in UNFUSED_INT4):
        _quantize_fused(model.llm, lambda linear: _quantized(linear, fmt, group_size, kernel))
    selected = _selected(model, component, lm_head)
    rest = {id(m): m for name, m in model.named_modules() if selected(m, name) and not hasattr(m, "fusion")}
    if fmt == "w4a16" and kernel == "gemlite":  # torchao's config for it is not usable (see gemlite_weight)
        from .gemlite_int4 import GemliteLinear

        for name, m in model.named_modules():
            if selected(m, name):
                if id(m) in rest:
                    m.weight = nn.Parameter(_quantized(m, fmt, group_size, kernel), requires_grad=False)
                m.__class__ = GemliteLinear  # prefill-sized inputs: dequantize + cuBLAS
    else:
        from torchao.quantization import quantize_

        quantize_(model, _config(fmt, group_size, kernel), filter_fn=lambda m, _name: id(m) in rest)


def _quantized(linear: nn.Linear, fmt: str, group_size: int, kernel: str) -> torch.Tensor:
    """`linear`'s weight in `fmt` (the layer is changed in place)."""
    if fmt == "w4a16" and kernel == "gemlite":
        from .gemlite_int4 import gemlite_weight

        return gemlite_weight(linear.weight.detach(), group_size)
    from torchao.quantization import quantize_

    quantize_(linear, _config(fmt, group_size, kernel))
    return linear.weight.detach()


@dataclass(eq=False)
class Fusion:
    """One quantized weight for the linear layers on one input (q/k/v, gate/up): each layer's weight is its row
    slice (a view, so no memory is added and every engine sees the same layers); the compiled engine's decode
    step runs it as one matmul (model/fast_llm.py `Fused`), as it does with joined bf16 weights."""

    weight: torch.Tensor
    sizes: tuple


FUSED_GROUPS = (("self_attn", ("q_proj", "k_proj", "v_proj")), ("mlp", ("gate_proj", "up_proj")))


def _quantize_fused(llm: nn.Module, quantized) -> None:
    """Quantize each decoder layer's q/k/v and gate/up as one weight (`quantized(linear)` of their rows stacked;
    per-row formats give each row what it would get alone) and make each layer's weight its slice. Not for
    tinygemm or opaque: their scales are (groups, rows, 2), so a row slice is not contiguous and their kernels
    refuse it."""
    for layer in decoder(llm).layers:
        for parent, names in FUSED_GROUPS:
            modules = [getattr(getattr(layer, parent), n) for n in names]
            stacked = torch.cat([m.weight.detach() for m in modules])
            fused = nn.Linear(
                stacked.shape[1], stacked.shape[0], bias=False, device="meta"
            )  # no init: the rows come next
            fused.weight = nn.Parameter(stacked, requires_grad=False)
            fusion = Fusion(quantized(fused), tuple(m.out_features for m in modules))
            start = 0
            for m, size in zip(modules, fusion.sizes):
                m.weight = nn.Parameter(fusion.weight[start : start + size], requires_grad=False)
                m.fusion, start = fusion, start + size
