"""Quantized q/k/v and gate/up as one weight each (model/quantize.py `Fusion`), on CPU: the layers hold row
slices of it (views: bytes as predicted, nothing copied), each slice is what quantizing the layer alone gives
(per-row formats), and the compiled engine's decode step runs the fused weight as one matmul with transformers'
logits. gemlite's column slices: tests/test_gemlite_interpreted.py; tinygemm (not fused): on a GPU."""

from __future__ import annotations

import pytest
import torch
from nvila_bench.model import build_model, get_preset
from nvila_bench.model.fast_llm import FastDecoder, cache_length
from nvila_bench.model.quant_plan import QuantPlan
from nvila_bench.model.quantize import FUSED_GROUPS, measured_weight_bytes, predicted_weight_bytes, quantize_model
from nvila_bench.model.quantize import _quantized as quantized_weight

pytest.importorskip("torchao")
# w4a16 on intx, the CPU int4 kernel whose row slices fuse (opaque's, like tinygemm's, do not: `UNFUSED_INT4`)
PLANS = {"w4a16": QuantPlan(llm="w4a16", group_size=32, int4_kernel="intx"), "w8a8-int8": QuantPlan(llm="w8a8-int8")}


def _quantized(preset: str, fmt: str):
    torch.manual_seed(0)
    model = build_model(get_preset(preset), torch.bfloat16)
    reference = {k: v.clone() for k, v in model.llm.state_dict().items()}
    quantize_model(model, PLANS[fmt])
    return model, reference


@pytest.mark.parametrize("fmt", list(PLANS))
def test_fused_layers_hold_views_of_one_weight_each_quantized_as_alone(fmt):
    model, reference = _quantized("nvila-tiny", fmt)
    cfg = get_preset("nvila-tiny")
    assert measured_weight_bytes(model) == predicted_weight_bytes(cfg, PLANS[fmt], "cpu")  # slices counted once
    for index, layer in enumerate(model.llm.model.layers):
        for parent, names in FUSED_GROUPS:
            modules = [getattr(getattr(layer, parent), n) for n in names]
            fusion = modules[0].fusion
            assert all(m.fusion is fusion for m in modules) and fusion.sizes == tuple(m.out_features for m in modules)
            offset = 0
            for name, m in zip(names, modules):
                assert type(m.weight.data) is type(fusion.weight) and m.weight.shape == (m.out_features, m.in_features)
                # the slice's int data starts inside the fused tensor's, where its rows are: a view, nothing copied
                assert (
                    m.weight.qdata.data_ptr()
                    == fusion.weight.qdata.data_ptr() + offset * m.in_features * m.weight.qdata.element_size()
                )
                offset += m.out_features
                alone = torch.nn.Linear(m.in_features, m.out_features, bias=False, dtype=torch.bfloat16)
                alone.weight.data = reference[f"model.layers.{index}.{parent}.{name}.weight"]
                plan = PLANS[fmt]  # per-row formats: a row gets the same values stacked or alone
                expected = quantized_weight(alone, plan.llm, plan.group_size, "intx")
                assert torch.equal(m.weight.dequantize(), expected.dequantize())
        for m in (layer.self_attn.o_proj, layer.mlp.down_proj):
            assert not hasattr(m, "fusion")


@pytest.mark.parametrize("preset", ["nvila-tiny", "vila-tiny"])
@pytest.mark.parametrize("fmt", list(PLANS))
def test_the_decode_step_runs_the_fused_quantized_weight_with_transformers_logits(preset, fmt):
    model, _ = _quantized(preset, fmt)
    torch.manual_seed(1)
    embeds = (torch.randn(2, 37, model.llm.config.hidden_size) * 0.1).to(torch.bfloat16)
    with torch.inference_mode():
        ours, theirs = (model.new_cache("static", cache_length(41)) for _ in range(2))
        token = model.prefill(embeds, theirs).logits.argmax(-1, keepdim=True)
        model.prefill(embeds, ours)
        pos = torch.tensor(37)
        step = FastDecoder(model.llm, ours, pos, "sdpa")
        layer, attn = step.layers[0], model.llm.model.layers[0].self_attn
        assert layer.qkv.weight is attn.q_proj.fusion.weight and layer.gate_up.weight is not None  # one matmul each
        for _ in range(2):
            expected = model.decode_step(token, theirs).float()
            got = step(token).float()
            assert ((got - expected).norm() / expected.norm()).item() < 2e-2  # bf16: the fused matmul rounds alike
            assert (got.argmax(-1) == expected.argmax(-1)).float().mean() >= 0.5
            token = expected.argmax(-1, keepdim=True).to(token.dtype)
            pos.add_(1)


def test_gemlite_rungs_record_how_their_prefill_runs(monkeypatch):
    import importlib.util

    from nvila_bench.model.gemlite_int4 import DEQUANT_MIN_TOKENS
    from nvila_bench.suites import deployment

    real = importlib.util.find_spec
    for installed, kernel in ((True, "gemlite"), (False, "tinygemm")):
        monkeypatch.setattr(
            importlib.util,
            "find_spec",
            lambda name, *a, i=installed: (object() if i else None) if name == "gemlite" else real(name, *a),
        )
        jobs = deployment.expand(
            {"preset": ["nvila-tiny"], "device": ["cuda"]}, {"media": "image", "rung": ("bf16", "w4a16-llm")}
        )
        extras = {job.point.extra["rung"]: job.point.extra for job in jobs}
        assert extras["w4a16-llm"]["int4_kernel"] == kernel and "int4_prefill" not in extras["bf16"]
        expected = f"dequantize + cuBLAS from {DEQUANT_MIN_TOKENS} tokens" if installed else None
        assert extras["w4a16-llm"].get("int4_prefill") == expected
