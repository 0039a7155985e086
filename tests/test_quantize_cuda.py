"""The CUDA weight formats (issue 16), on a GPU only: each int4 kernel (tinygemm; gemlite where installed) and
the W8A8 formats quantize a tiny model whose measured bytes equal the prediction (tinygemm's padding
included), whose logits stay near bf16, and which the compiled engine runs to the same ids as eager, with its
prefill compiled and captured where it is short enough.
Skipped without CUDA (CI); run on a GPU with `pytest tests/test_quantize_cuda.py`."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from nvila_bench.model import build_model, get_preset
from nvila_bench.model.engines import make_engine
from nvila_bench.model.pipeline import embed, synthetic_request
from nvila_bench.model.quant_plan import QuantPlan, int4_kernel
from nvila_bench.model.quantize import measured_weight_bytes, predicted_weight_bytes, quantize_model

pytest.importorskip("torchao")
pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="CUDA kernels (tinygemm, gemlite, int8 / fp8 GEMMs)"
)

KERNELS = ["tinygemm"] + (["gemlite"] if importlib.util.find_spec("gemlite") else [])
PLANS = {f"w4a16-{k}": QuantPlan(llm="w4a16", group_size=32, int4_kernel=k) for k in KERNELS}
PLANS["w8a8-int8"] = QuantPlan(llm="w8a8-int8", vision="w8a8-int8")
if torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9):
    PLANS["w8a8-fp8"] = QuantPlan(llm="w8a8-fp8", vision="w8a8-fp8")
TOLERANCE = {"w4a16": 0.15, "w8a8-int8": 0.03, "w8a8-fp8": 0.08}  # relative L2 of logits against bf16


def _request(cfg):
    return synthetic_request(cfg, ((448, 448),), None, 16)


@pytest.mark.parametrize("name", list(PLANS))
def test_a_cuda_format_keeps_its_bytes_prediction_and_logits(name):
    cfg, plan = get_preset("nvila-tiny"), PLANS[name]
    model = build_model(cfg, torch.bfloat16, "cuda")
    with torch.inference_mode():
        reference = model.prefill(embed(model, _request(cfg))).logits.float()
    quantize_model(model, plan)
    assert measured_weight_bytes(model) == predicted_weight_bytes(cfg, plan, "cuda")
    with torch.inference_mode():
        logits = model.prefill(embed(model, _request(cfg))).logits.float()
    error = ((logits - reference).norm() / reference.norm()).item()
    assert 0 < error < TOLERANCE[name.split("-")[0] if name.startswith("w4a16") else name], error
    if plan.llm == "w4a16":
        assert int4_kernel(plan, "cuda") == plan.int4_kernel
    fused = hasattr(model.llm.model.layers[0].self_attn.q_proj, "fusion")  # q/k/v one weight, the layers its slices
    assert fused == (plan.int4_kernel != "tinygemm" or plan.llm != "w4a16")


@pytest.mark.parametrize("name", list(PLANS))
def test_the_compiled_engine_decodes_a_quantized_model_as_eager_does(name):
    cfg = get_preset("nvila-tiny")
    model = build_model(cfg, torch.bfloat16, "cuda")
    quantize_model(model, PLANS[name])
    ids = {}
    with torch.inference_mode():
        embeds = embed(model, _request(cfg))
        for engine_name in ("eager", "compiled"):
            engine = make_engine(engine_name, model, "static")
            engine.setup_media()
            engine.setup_prefill(embeds)
            engine.setup(embeds, 8)
            ids[engine_name] = engine.generate(embeds, 8).tolist()
    assert "fell back" not in (engine.note or ""), engine.note  # the compiled step itself ran, captured as a graph
    assert engine._decode is not None and engine._graph is not None
    assert ids["compiled"][0][:4] == ids["eager"][0][:4]  # bf16 rounding may part them later; the start agrees


@pytest.mark.parametrize("name", list(PLANS))
def test_a_quantized_prefill_of_300_positions_is_compiled_and_captured(name):
    """<= 2,048 tokens: the compiled engine compiles the prefill over the quantized layers (gemlite's dequantize +
    cuBLAS from 256 rows inside it) and captures it as a CUDA graph; its first ids are eager's."""
    cfg = get_preset("nvila-tiny")
    model = build_model(cfg, torch.bfloat16, "cuda")
    quantize_model(model, PLANS[name])
    torch.manual_seed(0)
    embeds = torch.randn(1, 300, cfg.llm.hidden_size, dtype=torch.bfloat16, device="cuda") * 0.1
    ids = {}
    with torch.inference_mode():
        for engine_name in ("eager", "compiled"):
            engine = make_engine(engine_name, model, "static")
            engine.setup_prefill(embeds)
            engine.setup(embeds, 8)
            ids[engine_name] = engine.generate(embeds, 8).tolist()
    assert engine.note is None and engine._graph is not None, engine.note
    assert engine._first.graph is not None and engine._fill.graph is not None  # both prefills captured
    assert ids["compiled"][0][:4] == ids["eager"][0][:4]
