"""Activation-aware scales (model/calibrate.py): folding them leaves a full-precision model's outputs as they
were (Qwen2, Llama, SigLIP); AWQ's search never does worse than round-to-nearest and recovers most of the
error that outlier input channels cause; on a model with outlier channels, W4A16 and W8A8 with the scales
stay closer to bf16 than without."""

from __future__ import annotations

import pytest
import torch
from nvila_bench.model import build_model, get_preset
from nvila_bench.model.calibrate import awq_scale, fake_int4, fold, llm_groups, smooth, smoothquant_scale, vision_groups
from nvila_bench.model.pipeline import embed, synthetic_request
from nvila_bench.model.quant_plan import QuantPlan
from nvila_bench.model.quantize import quantize_model
from nvila_bench.model.vision import vision_body


def _request(cfg, seed: int):
    return synthetic_request(cfg, ((448, 448),), None, 16, seed=seed)


@pytest.mark.parametrize("preset", ["nvila-tiny", "vila-tiny"])
def test_folded_scales_leave_the_full_precision_outputs_as_they_were(preset):
    cfg = get_preset(preset)
    model = build_model(cfg)  # float32 on CPU
    request = _request(cfg, 1)
    with torch.inference_mode():
        before = model.prefill(embed(model, request), all_logits=True).logits
    torch.manual_seed(0)
    groups = llm_groups(model.llm) + vision_groups(vision_body(model.vision_tower).encoder)
    assert len(groups) >= 3 * cfg.llm.num_layers
    for group in groups:
        fold(group, torch.rand(group.in_features) * 4 + 0.25)
    with torch.inference_mode():
        after = model.prefill(embed(model, request), all_logits=True).logits
    torch.testing.assert_close(after, before, rtol=1e-3, atol=1e-4)


def test_awq_never_loses_to_round_to_nearest_and_recovers_outlier_channels():
    torch.manual_seed(0)
    weight = torch.randn(64, 256) * 0.02
    x = torch.randn(512, 256)
    x[:, :4] *= 50  # a few outlier input channels, as trained models have
    reference = x @ weight.T

    def error(w, s):
        return ((x / s) @ fake_int4(w * s, 128).T - reference).pow(2).mean().item()

    plain = error(weight, torch.ones(256))
    s = awq_scale(weight, x, 128)
    assert error(weight, s) < 0.5 * plain
    uniform = torch.randn(512, 256)  # no outliers: the search may keep s = 1, never worse than it
    u_ref = uniform @ weight.T

    def u_err(s):
        return ((uniform / s) @ fake_int4(weight * s, 128).T - u_ref).pow(2).mean().item()

    assert u_err(awq_scale(weight, uniform, 128)) <= u_err(torch.ones(256))


def test_smoothquant_moves_half_the_range_into_the_weights():
    weight = torch.ones(8, 4)
    x = torch.tensor([[100.0, 1.0, 4.0, 9.0]])
    torch.testing.assert_close(smoothquant_scale(weight, x), torch.tensor([10.0, 1.0, 2.0, 3.0]))


def _with_outliers(preset: str):
    """A bf16 model whose norms make a few activation channels 30x larger (what trained models look like)."""
    cfg = get_preset(preset)
    model = build_model(cfg, torch.bfloat16)
    with torch.no_grad():
        for layer in model.llm.model.layers:
            for norm in (layer.input_layernorm, layer.post_attention_layernorm):
                norm.weight[:3] *= 30
        for layer in vision_body(model.vision_tower).encoder.layers:
            layer.layer_norm1.weight[:3] *= 30
    return cfg, model


def _kl_to_bf16(plan: QuantPlan) -> float:
    cfg, model = _with_outliers("nvila-tiny")
    requests = [_request(cfg, seed) for seed in (11, 12)]
    with torch.inference_mode():
        reference = [
            model.prefill(embed(model, r), all_logits=True).logits[0, -16:].float().log_softmax(-1) for r in requests
        ]

    def calibrate():
        for seed in (101, 102):
            model.prefill(embed(model, _request(cfg, seed)))

    quantize_model(model, plan, calibrate)
    with torch.inference_mode():
        ours = [
            model.prefill(embed(model, r), all_logits=True).logits[0, -16:].float().log_softmax(-1) for r in requests
        ]
    return sum(
        torch.nn.functional.kl_div(o, r, log_target=True, reduction="batchmean").item() for o, r in zip(ours, reference)
    )


@pytest.mark.parametrize("formats", [{"llm": "w4a16"}, {"vision": "w8a8-int8"}])
def test_activation_aware_scales_bring_a_quantized_model_closer_to_bf16(formats):
    pytest.importorskip("torchao")
    plain = _kl_to_bf16(QuantPlan(**formats, group_size=32))
    scaled = _kl_to_bf16(QuantPlan(**formats, group_size=32, scales="activation-aware"))
    assert scaled < plain, (scaled, plain)


def test_activation_aware_scales_need_calibration_and_a_known_name():
    cfg = get_preset("nvila-tiny")
    model = build_model(cfg, torch.bfloat16)
    with pytest.raises(ValueError, match="need calibration requests"):
        quantize_model(model, QuantPlan(llm="w4a16", group_size=32, scales="activation-aware"))
    with pytest.raises(ValueError, match="unknown scales 'gptq'"):
        QuantPlan(llm="w4a16", scales="gptq")
    with pytest.raises(ValueError, match="ran no input through the layers"):
        smooth(llm_groups(model.llm), "w4a16", lambda: None, 32)


def test_awq_searches_with_the_rounding_its_kernel_stores():
    """AWQ's grid search models the kernel's quantizer: for opaque (tinygemm's float zero, bf16 scale and zero) the
    weights it predicts are the kernel's own, read back through F.linear of the identity. (intx's integer zero is
    modelled in float32 scales: near its bf16 ones, not equal.)"""
    kernel = "opaque"
    pytest.importorskip("torchao")
    from nvila_bench.model.quantize import _quantized

    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 64, bias=False, dtype=torch.bfloat16)
    weight = linear.weight.detach().clone() * torch.linspace(0.2, 5, 256, dtype=torch.bfloat16)  # uneven columns
    linear.weight.data = weight.clone()
    stored = (
        torch.nn.functional.linear(torch.eye(256, dtype=torch.bfloat16), _quantized(linear, "w4a16", 32, kernel))
        .float()
        .T
    )
    assert torch.allclose(
        fake_int4(weight, 32, kernel), stored, atol=0, rtol=2**-8
    )  # the kernel's bf16 output rounding
