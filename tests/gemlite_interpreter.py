"""The gemlite W4A16 path on CPU, its Triton kernels run by Triton's interpreter (TRITON_INTERPRET=1, NumPy):
what model/quantize.py builds for CUDA, checked where no GPU is. Run by tests/test_gemlite_interpreted.py in a
subprocess (the shims below patch torch.cuda and Triton for the whole process); prints one JSON object.

    TRITON_INTERPRET=1 PYTHONPATH=<site with triton and gemlite> python tests/gemlite_interpreter.py

gemlite asks CUDA for the device at import (compute capability, shared memory, name for its tuned configs):
the shims answer as an H100 would, and autotuning runs no timings (the interpreter has no CUDA events), so
each kernel runs its first config. fp16, not bf16: the interpreter converts integers to bf16 wrongly (a
Triton kernel `(q & 15).to(bf16)` gives 1e37s there; fp16 is exact), so bf16 is left to the GPU test
(tests/test_quantize_cuda.py). The interpreter also cannot run gemlite's GEMM for M >= 64 (`k * stride_mul`
is a Python float there): such inputs run its split-K GEMM here, so that one kernel is left to the GPU.
"""

from __future__ import annotations

import json
import os
import types

import torch

assert os.environ.get("TRITON_INTERPRET") == "1", "run with TRITON_INTERPRET=1"
DTYPE = torch.float16


def _pretend_h100() -> None:
    import triton
    from triton.runtime import autotuner
    from triton.runtime.driver import driver

    torch.cuda.get_device_capability = lambda *a, **k: (9, 0)
    torch.cuda.get_device_properties = lambda *a, **k: types.SimpleNamespace(
        name="NVIDIA H100 80GB HBM3", major=9, minor=0, multi_processor_count=132
    )
    torch.cuda.empty_cache = lambda: None

    class Driver:
        utils = types.SimpleNamespace(
            get_device_properties=lambda i: {"max_shared_mem": 232448, "multiprocessor_count": 132}
        )

        def get_current_target(self):
            return types.SimpleNamespace(backend="cuda", arch=90, warp_size=32)

        def get_current_device(self):
            return 0

        def get_active_torch_device(self):
            return torch.device("cpu")

    driver.set_active(Driver())
    driver._default = driver._active
    autotuner.Autotuner._bench = lambda self, *a, config=None, **k: [0.0, 0.0, 0.0]
    assert triton.__version__


def _dequantized(weight: torch.Tensor, group_size: int) -> torch.Tensor:
    """The weight gemlite should compute with: HQQ's int4 values, scales and zeros as `gemlite_weight` gets them."""
    from torchao.quantization.quant_primitives import _choose_qparams_and_quantize_affine_hqq

    q, scale, zero, _ = _choose_qparams_and_quantize_affine_hqq(
        weight, nbits=4, group_size=group_size, raw_output=True, compute_dtype=weight.dtype, device=weight.device
    )
    groups = (q.float().view(-1, group_size) - zero.float().view(-1, 1)) * scale.float().view(-1, 1)
    return groups.view(weight.shape).to(weight.dtype)


def layers() -> dict:
    """One linear layer per shape: output against the dequantized weight's at several M (GEMV split-K at 1,
    GEMV up to 4, GEMM split-K above, dequantize + matmul from 256), with a bias and a (B, T, K) input; its
    bytes against `linear_bytes`."""
    from nvila_bench.model.gemlite_int4 import GemliteLinear, dequantize, gemlite_weight
    from nvila_bench.model.quantize import linear_bytes, tensor_bytes

    out = {}
    for n_in, n_out, group in ((512, 256, 128), (256, 384, 64), (128, 64, 32)):
        layer = torch.nn.Linear(n_in, n_out, dtype=DTYPE)
        reference = _dequantized(layer.weight.detach(), group).float()
        layer.weight = torch.nn.Parameter(gemlite_weight(layer.weight.detach(), group), requires_grad=False)
        layer.__class__ = (
            GemliteLinear  # as quantize_model makes it: gemlite's kernels, dequantize + cuBLAS from 256 rows
        )
        errors = {"dequantize": ((dequantize(layer.weight).float().t() - reference).norm() / reference.norm()).item()}
        for shape in ((1, n_in), (3, n_in), (17, n_in), (2, 3, n_in), (300, n_in), (2, 150, n_in)):
            x = torch.randn(shape, dtype=DTYPE)
            with torch.no_grad():
                y = layer(x)
            expected = x.float() @ reference.T + layer.bias.float()
            errors["x".join(map(str, shape))] = ((y.float() - expected).norm() / expected.norm()).item()
        out[f"{n_in}x{n_out}/g{group}"] = {
            "bytes": tensor_bytes(layer.weight.data),
            "predicted": linear_bytes(n_in, n_out, "w4a16", group, "gemlite"),
            "dtype": str(y.dtype),
            "relative_error": errors,
        }
    return out


def model() -> dict:
    """nvila-tiny's LLM in gemlite int4 as `quantize_model` makes it on CUDA (q/k/v and gate/up one weight each,
    their layers holding column slices of it): measured bytes against the prediction, logits against the same
    model with the dequantized weights, and the compiled engine's ids against eager's, for the image request (its
    prefill compiled without a graph: over 2,048 tokens) and a 300-token one (compiled, the graph's path on
    CUDA), both dequantizing inside."""
    from nvila_bench.model import build_model, get_preset
    from nvila_bench.model.engines import make_engine
    from nvila_bench.model.pipeline import embed, synthetic_request
    from nvila_bench.model.quant_plan import QuantPlan
    from nvila_bench.model.quantize import (
        FUSED_GROUPS,
        measured_weight_bytes,
        predicted_weight_bytes,
        quantize_component,
    )

    cfg, plan = get_preset("nvila-tiny"), QuantPlan(llm="w4a16", group_size=32, int4_kernel="gemlite")
    torch.manual_seed(0)
    quantized = build_model(cfg, DTYPE, "cpu")
    reference = build_model(cfg, DTYPE, "cpu")
    reference.load_state_dict(quantized.state_dict())
    for (
        layer
    ) in reference.llm.model.layers:  # HQQ's stopping rule is per tensor: round stacks as quantize_component does
        for parent, names in FUSED_GROUPS:
            modules = [getattr(getattr(layer, parent), n) for n in names]
            stacked = _dequantized(torch.cat([m.weight.detach() for m in modules]), plan.group_size)
            for m, part in zip(modules, stacked.split([m.out_features for m in modules])):
                m.weight.data = part.clone()
        for m in (layer.self_attn.o_proj, layer.mlp.down_proj):
            m.weight.data = _dequantized(m.weight.detach(), plan.group_size)
    quantize_component(quantized, "llm", plan.llm, plan.group_size, "gemlite")  # q/k/v and gate/up fused: column slices
    fused, k = quantized.llm.model.layers[0].self_attn.q_proj, quantized.llm.model.layers[0].self_attn.k_proj
    request = synthetic_request(cfg, ((448, 448),), None, 16)
    logits, ids = {}, {}
    with torch.inference_mode():
        for name, m in (("reference", reference), ("gemlite", quantized)):
            logits[name] = m.prefill(embed(m, request)).logits.float()
        text = (
            torch.randn(1, 300, cfg.llm.hidden_size, dtype=DTYPE) * 0.1
        )  # 300 positions: a compiled prefill that dequantizes
        for engine_name in ("eager", "compiled"):
            for name, embeds in (("", embed(quantized, request)), (" text", text)):
                engine = make_engine(engine_name, quantized, "static")
                engine.setup_media()
                engine.setup_prefill(embeds)
                engine.setup(embeds, 8)
                ids[engine_name + name] = engine.generate(embeds, 8).tolist()
                if engine_name == "compiled" and name:
                    text_note = engine.note
                    compiled = engine._decode is not None and None not in (
                        engine._fill,
                        engine._first,
                    )  # not eager in disguise
                    breaks = sum(torch._dynamo.utils.counters["graph_break"].values())  # dequantize inlined, not split
    error = ((logits["gemlite"] - logits["reference"]).norm() / logits["reference"].norm()).item()
    return {
        "bytes": measured_weight_bytes(quantized)["llm"],
        "predicted": predicted_weight_bytes(cfg, plan, "cuda")["llm"],
        "logits_relative_error": error,
        "ids": ids,
        "fused": type(fused.fusion.weight).__name__,
        "compiled": compiled,
        "note": text_note,
        "graph_breaks": breaks,
        "layer_class": type(fused).__name__,
        "prefill_tokens": [embed(quantized, request).shape[1], text.shape[1]],
        "slices_are_views": [m.weight.qdata.data_ptr() for m in (fused, k)]
        == [fused.fusion.weight.qdata.data_ptr() + offset for offset in (0, fused.out_features * 4)],  # int32 columns
    }


if __name__ == "__main__":
    _pretend_h100()
    import gemlite
    from gemlite.triton_kernels.config import set_autotune

    torch.manual_seed(0)
    set_autotune(False)  # one config per kernel: timing them means nothing here
    choose = gemlite.core.get_matmul_type
    gemlite.core.get_matmul_type = lambda m, *a: "GEMM_SPLITK" if m >= 64 else choose(m, *a)
    print(json.dumps({"gemlite": gemlite.__version__, "layers": layers(), "model": model()}))
