"""The analytic cost model against torch's FlopCounterMode on every tiny preset (eager attention: CPU SDPA
kernels are not counted), and its byte accounting against closed-form figures for NVILA-8B."""

import pytest
import torch
from conftest import TINY, tiny_model
from torch.utils.flop_counter import FlopCounterMode

from nvila_bench.core import costmodel
from nvila_bench.model import build_model, count_visual_tokens, get_preset, param_counts
from nvila_bench.model.vision import vision_features

SIGLIP_LAYER = 15_239_504  # parameters of one so400m encoder layer: 2 LN + q, k, v, out + MLP 1152-4304-1152
NVILA_8B_KV_PER_TOKEN = 57_344  # 2 (K, V) x 28 layers x 4 KV heads x 128 x 2 bytes


def counted(fn) -> int:
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def assert_close(analytic: int, measured: int) -> None:
    assert measured > 0
    assert abs(analytic - measured) <= 0.01 * measured, f"analytic {analytic} vs FlopCounterMode {measured}"


# ---- FLOPs vs FlopCounterMode ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", TINY)
def test_vision_flops(name):
    model = tiny_model(name)
    cfg = model.config
    pixels = torch.randn(3, 3, cfg.vision.image_size, cfg.vision.image_size)
    measured = counted(lambda: vision_features(model.vision_tower, pixels, cfg.vision.layers_used))
    assert_close(costmodel.vision_cost(cfg, 3).flops, measured)


@pytest.mark.parametrize("name", TINY + ["nvila-tiny-scaled-only"])
def test_projector_flops(name):
    cfg = get_preset(name)
    model = tiny_model(name) if name in TINY else build_model(cfg, attn_implementation="eager")
    g = cfg.vision.grid
    maps = torch.randn(2, g, g, cfg.projector.mm_hidden_size)
    measured = counted(lambda: model.mm_projector(maps))
    assert_close(costmodel.projector_cost(cfg, 2 * cfg.tokens_per_tile).flops, measured)


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("n, batch", [(300, 1), (1100, 2)])
def test_prefill_flops(name, n, batch):
    model = tiny_model(name)
    embeds = torch.randn(batch, n, model.config.llm.hidden_size)
    measured = counted(lambda: model.prefill(embeds))
    assert_close(costmodel.llm_prefill_cost(model.config, n, batch).flops, measured)


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("context, batch", [(700, 1), (64, 3)])
def test_decode_step_flops(name, context, batch):
    model = tiny_model(name)
    pre = model.prefill(torch.randn(batch, context, model.config.llm.hidden_size))
    token = pre.logits.argmax(-1, keepdim=True)
    measured = counted(lambda: model.decode_step(token, pre.cache))  # the decode step only
    assert_close(costmodel.decode_step_cost(model.config, context, batch).flops, measured)


# ---- bytes -----------------------------------------------------------------------------------------------
def test_kv_cache_bytes_nvila_8b():
    cfg = get_preset("nvila-8b")
    assert costmodel.kv_cache_bytes(cfg, 1) == NVILA_8B_KV_PER_TOKEN
    assert costmodel.kv_cache_bytes(cfg, 10, batch=3, dtype="float32") == NVILA_8B_KV_PER_TOKEN * 60
    assert costmodel.kv_cache_bytes(cfg, 0) == 0


@pytest.mark.parametrize("batch", [1, 4])
def test_decode_bytes_grow_by_the_cache_read(batch):
    cfg = get_preset("nvila-8b")
    grow = costmodel.decode_step_cost(cfg, 4096, batch).bytes - costmodel.decode_step_cost(cfg, 0, batch).bytes
    assert grow == costmodel.kv_cache_bytes(cfg, 4096, batch)


def test_decode_weight_bytes_are_the_llm_without_its_embedding_table():
    cfg = get_preset("nvila-8b")
    weights = 2 * (param_counts(cfg)["llm"] - cfg.llm.vocab_size * cfg.llm.hidden_size)
    assert costmodel.decode_step_cost(cfg, 0).bytes == pytest.approx(weights, rel=1e-3)


def test_tied_embedding_table_is_read_as_the_lm_head():
    cfg = get_preset("nvila-lite-2b")
    assert cfg.llm.tie_word_embeddings
    assert costmodel.llm_weights(cfg) == param_counts(cfg)["llm"]


def test_prefill_bytes_per_extra_token_are_its_embedding_and_kv():
    cfg = get_preset("nvila-8b")
    extra = costmodel.llm_prefill_cost(cfg, 1001).bytes - costmodel.llm_prefill_cost(cfg, 1).bytes
    assert extra == 1000 * (2 * cfg.llm.hidden_size + NVILA_8B_KV_PER_TOKEN)


def test_vision_bytes_skip_the_unused_top_layer_and_post_layernorm():
    cfg = get_preset("nvila-8b")
    tile_io = 2 * (3 * 448 * 448 + 1024 * 1152)  # pixels in, features out (bf16)
    weights = 2 * (param_counts(cfg)["vision"] - SIGLIP_LAYER - 2 * 1152)
    assert costmodel.vision_cost(cfg, 1).bytes == weights + tile_io
    assert costmodel.vision_cost(cfg, 17).bytes == weights + 17 * tile_io


def test_projector_bytes():
    cfg = get_preset("nvila-8b")
    io = 2 * 3072 * (4 * 3456 + 3584)
    assert costmodel.projector_cost(cfg, 3072).bytes == 2 * param_counts(cfg)["projector"] + io


# ---- whole requests --------------------------------------------------------------------------------------
def test_request_costs_nvila_8b_image():
    cfg = get_preset("nvila-8b")
    assert count_visual_tokens(cfg, [(1920, 1080)]).vit_tiles == 17
    costs = costmodel.request_costs(cfg, [(1920, 1080)], prompt_tokens=64)
    assert set(costs) == {"vision", "projector", "llm_prefill", "decode_step"}
    assert costs["vision"] == costmodel.vision_cost(cfg, 17)
    assert costs["projector"] == costmodel.projector_cost(cfg, 3072)
    assert costs["llm_prefill"] == costmodel.llm_prefill_cost(cfg, 3073 + 64)
    assert costs["decode_step"] == costmodel.decode_step_cost(cfg, 3073 + 64)
    later = costmodel.request_costs(cfg, [(1920, 1080)], prompt_tokens=64, context=5000, batch=2)
    assert later["decode_step"] == costmodel.decode_step_cost(cfg, 5000, batch=2)
    assert later["vision"] == costs["vision"]  # rows share the media


def test_tsp_pools_after_the_projector():
    cfg = get_preset("nvila-8b-video")
    costs = costmodel.request_costs(cfg, video_frames=256, prompt_tokens=0)
    assert costs["vision"] == costmodel.vision_cost(cfg, 256)
    assert costs["projector"] == costmodel.projector_cost(cfg, 256 * 256)  # every frame projected
    assert costs["llm_prefill"] == costmodel.llm_prefill_cost(cfg, 8224)  # 32 pooled frames reach the LLM
    unpooled = costmodel.request_costs(cfg, video_frames=256, temporal_pool=False, prompt_tokens=0)
    assert unpooled["llm_prefill"] == costmodel.llm_prefill_cost(cfg, 256 * 257)


def test_cost_arithmetic():
    a, b = costmodel.Cost(10, 3), costmodel.Cost(5, 7)
    assert a + b == costmodel.Cost(15, 10)
    assert a.scaled(4) == costmodel.Cost(40, 12)
    assert a.to_dict() == {"flops": 10, "bytes": 3}


def test_time_floor_picks_the_binding_limit():
    cost = costmodel.Cost(flops=10**12, bytes=10**9)
    assert costmodel.time_floor(cost, 1e15, 1e12) == pytest.approx(1e-3)  # compute bound
    assert costmodel.time_floor(cost, 1e15, 1e11) == pytest.approx(1e-2)  # memory bound
    assert costmodel.mfu(10**12, 2e-3, 1e15) == pytest.approx(0.5)
    assert costmodel.mbu(10**9, 2e-2, 1e11) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda cfg: costmodel.vision_cost(cfg, 0), "tiles must be a positive integer"),
        (lambda cfg: costmodel.projector_cost(cfg, 2.5), "tokens_out must be a positive integer"),
        (lambda cfg: costmodel.llm_prefill_cost(cfg, 10, dtype="fp4"), "unknown dtype 'fp4'"),
        (lambda cfg: costmodel.llm_prefill_cost(cfg, 10, batch=0), "batch must be a positive integer"),
        (lambda cfg: costmodel.decode_step_cost(cfg, -1), "context must be an integer >= 0"),
        (lambda cfg: costmodel.kv_cache_bytes(cfg, -5), "tokens must be an integer >= 0"),
        (lambda cfg: costmodel.request_costs(cfg), "at least one image or video frame"),
        (lambda cfg: costmodel.request_costs(cfg, [(640, 480)], prompt_tokens=-1), "prompt_tokens must be"),
        (lambda cfg: costmodel.time_floor(costmodel.Cost(1, 1), 0, 1e12), "peak_flops must be > 0"),
        (lambda cfg: costmodel.mbu(1, 0.0, 1e12), "seconds must be > 0"),
    ],
)
def test_bad_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call(get_preset("nvila-8b"))
