"""The analytic cost model against torch's FlopCounterMode (eager attention: CPU SDPA kernels are not
counted) on every tiny preset, and its byte accounting against closed-form figures."""

import pytest
import torch
from conftest import TINY, tiny_model
from torch.utils.flop_counter import FlopCounterMode

from nvila_bench import costmodel
from nvila_bench.model import build_model, get_preset, param_counts
from nvila_bench.model.vision import vision_features


def counted(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def close(analytic: int, measured: int) -> bool:
    return abs(analytic - measured) <= 0.01 * measured


@pytest.mark.parametrize("name", TINY)
def test_vision_flops(name):
    model = tiny_model(name)
    cfg = model.config
    pixels = torch.randn(3, 3, cfg.vision.image_size, cfg.vision.image_size)
    with torch.inference_mode():
        measured = counted(lambda: vision_features(model.vision_tower, pixels, cfg.vision.layers_used))
    assert close(costmodel.vision_cost(cfg, 3).flops, measured)


@pytest.mark.parametrize("name", TINY + ["nvila-tiny-scaled-only"])
def test_projector_flops(name):
    cfg = get_preset(name)
    model = tiny_model(name) if name in TINY else build_model(cfg)
    g = cfg.vision.grid
    maps = torch.randn(2, g, g, cfg.projector.mm_hidden_size)
    with torch.inference_mode():
        measured = counted(lambda: model.mm_projector(maps))
    assert close(costmodel.projector_cost(cfg, 2 * cfg.tokens_per_tile).flops, measured)


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("n, batch", [(300, 1), (1100, 2)])
def test_prefill_flops(name, n, batch):
    model = tiny_model(name)
    embeds = torch.randn(batch, n, model.config.llm.hidden_size)
    measured = counted(lambda: model.prefill(embeds))
    assert close(costmodel.llm_prefill_cost(model.config, n, batch).flops, measured)


@pytest.mark.parametrize("name", TINY)
def test_decode_step_flops(name):
    model = tiny_model(name)
    pre = model.prefill(torch.randn(1, 700, model.config.llm.hidden_size))
    token = pre.logits.argmax(-1, keepdim=True)
    measured = counted(lambda: model.decode_step(token, pre.cache))
    assert close(costmodel.decode_step_cost(model.config, 700).flops, measured)


def test_kv_cache_bytes_nvila_8b():
    assert costmodel.kv_cache_bytes(get_preset("nvila-8b"), 1) == 57_344  # 2 x 28 x 4 x 128 x 2 bytes
    assert costmodel.kv_cache_bytes(get_preset("nvila-8b"), 10, batch=3, dtype="float32") == 57_344 * 60


def test_decode_bytes_grow_by_the_cache_read():
    cfg = get_preset("nvila-8b")
    grow = costmodel.decode_step_cost(cfg, 4096).bytes - costmodel.decode_step_cost(cfg, 0).bytes
    assert grow == costmodel.kv_cache_bytes(cfg, 4096)


def test_decode_weight_bytes_are_the_llm_without_its_embedding_table():
    cfg = get_preset("nvila-8b")
    weights = 2 * (param_counts(cfg)["llm"] - cfg.llm.vocab_size * cfg.llm.hidden_size)
    assert costmodel.decode_step_cost(cfg, 0).bytes == pytest.approx(weights, rel=1e-3)


def test_request_costs_nvila_8b_image():
    cfg = get_preset("nvila-8b")
    costs = costmodel.request_costs(cfg, [(1920, 1080)], prompt_tokens=64)
    assert costs["vision"] == costmodel.vision_cost(cfg, 17)
    assert costs["projector"] == costmodel.projector_cost(cfg, 3072)
    assert costs["llm_prefill"] == costmodel.llm_prefill_cost(cfg, 3073 + 64)
    assert costs["decode_step"] == costmodel.decode_step_cost(cfg, 3073 + 64)


def test_tsp_pools_after_the_projector():
    cfg = get_preset("nvila-8b-video")
    costs = costmodel.request_costs(cfg, video_frames=256, prompt_tokens=0)
    assert costs["projector"] == costmodel.projector_cost(cfg, 256 * 256)  # every frame projected
    assert costs["llm_prefill"] == costmodel.llm_prefill_cost(cfg, 8224)  # 32 pooled frames reach the LLM


def test_time_floor_picks_the_binding_limit():
    cost = costmodel.Cost(flops=10**12, bytes=10**9)
    assert costmodel.time_floor(cost, 1e15, 1e12) == pytest.approx(1e-3)  # compute bound
    assert costmodel.time_floor(cost, 1e15, 1e11) == pytest.approx(1e-2)  # memory bound
    assert costmodel.mfu(10**12, 2e-3, 1e15) == pytest.approx(0.5)
    assert costmodel.mbu(10**9, 2e-2, 1e11) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: costmodel.vision_cost(get_preset("nvila-8b"), 0), "tiles must be a positive"),
        (lambda: costmodel.llm_prefill_cost(get_preset("nvila-8b"), 10, dtype="fp4"), "unknown dtype 'fp4'"),
        (lambda: costmodel.decode_step_cost(get_preset("nvila-8b"), -1), "context must be"),
    ],
)
def test_bad_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call()
