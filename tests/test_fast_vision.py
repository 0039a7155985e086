"""The compiled engine's vision tower (model/fast_vision.py) on CPU: its features are transformers' tower's
hidden state at NVILA's select layer, plain and compiled; fusing q/k/v adds no memory and leaves the tower's
own forward as it was; the GELU epilogue is used only where it is SigLIP's GELU (CUDA) and survives
compilation as one kernel; the compiled engine runs it and names the attention kernel it gets."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from nvila_bench.model import build_model, get_preset
from nvila_bench.model.compiling import compile_media, compiled
from nvila_bench.model.engines import make_engine
from nvila_bench.model.fast_vision import FastVision, _VisionLayer, fast_vision_attention_kernel
from nvila_bench.model.pipeline import embed, synthetic_request
from nvila_bench.model.vision import attention_kernel, vision_body, vision_features


def _tower(preset: str, layers: int | None = None):
    """A tiny preset's model and pixels; `layers`: its tower that deep (the tiny towers run one layer of two)."""
    cfg = get_preset(preset)
    if layers:
        cfg = replace(cfg, vision=replace(cfg.vision, num_layers=layers))
    torch.manual_seed(0)
    model = build_model(cfg)
    return model, torch.randn(3, 3, model.config.vision.image_size, model.config.vision.image_size)


@pytest.mark.parametrize(
    "preset, layers", [("nvila-tiny", None), ("nvila-lite-tiny", None), ("vila-tiny", None), ("nvila-tiny", 5)]
)
def test_fast_vision_features_are_the_towers_hidden_state_at_the_select_layer(preset, layers):
    model, pixels = _tower(preset, layers)
    used = model.config.vision.layers_used
    with torch.inference_mode():
        expected = model.vision_tower(pixels, output_hidden_states=True).hidden_states[model.config.vision.select_layer]
        before = sum(p.numel() for p in model.parameters())
        fast = FastVision(model.vision_tower, used)
        assert len(fast.layers) == used == (layers or 2) - 1  # select layer -2: all but the last
        torch.testing.assert_close(fast(pixels), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(compiled(fast.__call__)(pixels), expected, rtol=1e-4, atol=1e-4)
        # q/k/v are row slices of one tensor now: no memory added, transformers' own forward unchanged
        assert sum(p.numel() for p in model.parameters()) == before
        attn = vision_body(model.vision_tower).encoder.layers[0].self_attn
        assert attn.k_proj.weight.data_ptr() == attn.q_proj.weight.data_ptr() + attn.q_proj.weight.nbytes
        torch.testing.assert_close(vision_features(model.vision_tower, pixels, used), expected, rtol=1e-5, atol=1e-5)


def test_the_gelu_epilogue_is_used_only_where_it_is_siglips_gelu():
    """torch._addmm_activation's GELU is the tanh approximation on CUDA but the exact one on CPU (CUDA's
    side: tests/test_engines_cuda.py)."""
    model, _ = _tower("nvila-tiny")
    layer = vision_body(model.vision_tower).encoder.layers[0]
    assert model.vision_tower.config.hidden_act == "gelu_pytorch_tanh"
    assert not _VisionLayer.of(layer, "gelu_pytorch_tanh").epilogue  # on CPU
    x = torch.randn(5, layer.mlp.fc1.in_features)
    exact = torch._addmm_activation(layer.mlp.fc1.bias, x, layer.mlp.fc1.weight.t(), use_gelu=True)
    assert not torch.allclose(exact, layer.mlp.activation_fn(layer.mlp.fc1(x)), rtol=0, atol=1e-6)


def test_the_gelu_epilogue_stays_one_kernel_when_compiled():
    """Inductor must keep fc1 + GELU as torch._addmm_activation (cuBLASLt's GELU_BIAS on CUDA), not split
    it back into a GEMM and an element-wise pass; checked on CPU by forcing the epilogue."""
    from torch._inductor.utils import run_and_get_code

    model, pixels = _tower("nvila-tiny")
    with torch.inference_mode():
        fast = FastVision(model.vision_tower, model.config.vision.layers_used)
        for layer in fast.layers:
            layer.epilogue = True
        eager = fast(pixels)
        out, code = run_and_get_code(compiled(fast.__call__), pixels)
    torch.testing.assert_close(out, eager, rtol=1e-4, atol=1e-4)
    calls = "\n".join(code).count("torch.ops.aten._addmm_activation.default(")  # not a GEMM + a fused pointwise kernel
    assert calls == len(fast.layers)


def test_the_compiled_engine_runs_the_fast_tower_and_names_its_attention_kernel():
    cfg = get_preset("nvila-tiny")
    model = build_model(cfg)
    request = synthetic_request(cfg, ((896, 448),), None, 16)
    with torch.inference_mode():
        reference = embed(model, request)
        engine = make_engine("compiled", model)
        engine.setup_media()
        assert model.vision_forward is not None
        torch.testing.assert_close(embed(model, request), reference, rtol=1e-4, atol=1e-4)
        # compiled at their first call: torch.compile's functions in place of the wrappers that compile them
        for fn in (model.vision_forward, model.s2_merge._compiled_call_impl, model.mm_projector._compiled_call_impl):
            assert hasattr(fn, "_torchdynamo_orig_callable")
        assert engine.vision_attention() == fast_vision_attention_kernel(model.vision_tower)
        assert engine.vision_attention() in (
            "flash_attention",
            "math",
        )  # CPU's; CUDA's is asserted in test_engines_cuda.py
        eager = make_engine("eager", model)
        eager.setup_media()
        assert model.vision_forward is None and model.mm_projector._compiled_call_impl is None
        assert eager.vision_attention() == attention_kernel(model.vision_tower)
        assert torch.equal(embed(model, request), reference)


def test_the_compiled_s2_merge_is_the_eager_one_for_each_layout():
    """The engine compiles the Dynamic-S2 merge with the projector; one compile per layout (its grids are
    constants of the compiled function), the same maps as merge_s2."""
    from nvila_bench.model.tiling import dynamic_s2_layout
    from nvila_bench.model.vision import merge_s2

    model, _ = _tower("nvila-tiny")
    compile_media(model)
    for width, height in ((448, 448), (1920, 1080)):
        layout = dynamic_s2_layout(width, height, (448, 896, 1344), 12)
        feats = torch.randn(layout.vit_tiles, 16, 8)
        with torch.inference_mode():
            torch.testing.assert_close(model.s2_merge(feats, layout), merge_s2(feats, layout))
    assert model.s2_merge._compiled_call_impl is not None
    compile_media(model, on=False)
    assert model.s2_merge._compiled_call_impl is None


def test_a_tower_without_sdpa_attention_gets_its_own_layers_compiled():
    cfg = get_preset("nvila-tiny")
    model = build_model(cfg, attn_implementation="eager")
    with pytest.raises(ValueError, match="runs SDPA attention, not the tower's 'eager'"):
        FastVision(model.vision_tower, cfg.vision.layers_used)
    compile_media(model)
    assert model.vision_forward is None
    assert all(m._compiled_call_impl is not None for m in vision_body(model.vision_tower).encoder.layers)
    assert make_engine("compiled", model).vision_attention() == "eager"
