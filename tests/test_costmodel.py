"""The analytic cost model against torch's FlopCounterMode on every tiny preset (eager attention: CPU SDPA
kernels are not counted), and its byte accounting against closed-form figures for NVILA-8B."""

import pytest
import torch
from conftest import TINY, tiny_model
from nvila_bench.model import build_model, count_visual_tokens, get_preset, param_counts
from nvila_bench.model.vision import vision_features
from torch.utils.flop_counter import FlopCounterMode

from nvila_bench.core.analysis import costmodel

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
    assert a.to_dict() == {"flops": 10, "bytes": 3, "executed_flops": 10}  # no causal attention: executed = model
    c = costmodel.Cost(10, 3, executed_flops=6)
    assert (c + a).executed_flops == 16 and c.scaled(3).executed_flops == 18
    assert c.to_dict() == {"flops": 10, "bytes": 3, "executed_flops": 6}


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


# ---- executed FLOPs: causal attention counted once per kept key ------------------------------------------
def _attention_flops(cfg, pairs: int) -> int:
    """QK^T and AV over every LLM layer and query head for `pairs` (query, key) pairs."""
    return cfg.llm.num_layers * 2 * 2 * pairs * cfg.llm.num_heads * cfg.llm.head_dim


def test_executed_flops_halve_the_attention_of_a_long_causal_prefill():
    """The 32,864-position scaled-only prefill of the first H100 run: model FLOPs count the full N^2
    attention, a causal kernel executes n(n+1)/2 (query, key) pairs, about half of it."""
    cfg, n, batch = get_preset("nvila-8b-scaled-only"), 32_864, 2
    cost = costmodel.llm_prefill_cost(cfg, n, batch)
    assert cost.executed_flops < cost.flops
    full, causal = _attention_flops(cfg, n * n), _attention_flops(cfg, n * (n + 1) // 2)
    assert cost.flops - cost.executed_flops == batch * (full - causal)  # matmuls unchanged, only attention shrinks
    assert causal / full == pytest.approx(0.5, rel=1e-3)
    assert costmodel.causal_keys(n, n) == n * (n + 1) // 2
    assert cost.executed_flops / cost.flops < 0.8  # attention dominates at this length
    short = costmodel.llm_prefill_cost(cfg, 1)  # one position attends to itself: nothing to skip
    assert short.executed_flops == short.flops


@pytest.mark.parametrize("name", ["nvila-8b", "nvila-8b-scaled-only", "vila1.5-8b"])
def test_executed_flops_equal_model_flops_for_vision_and_projector(name):
    """The vision tower's attention is bidirectional and the projector has no attention: nothing is skipped."""
    costs = costmodel.request_costs(get_preset(name), [(1920, 1080)], prompt_tokens=64)
    for stage in ("vision", "projector"):
        assert costs[stage].executed_flops == costs[stage].flops > 0
    assert costs["llm_prefill"].executed_flops < costs["llm_prefill"].flops


def test_decode_executed_attention_is_linear_in_the_context():
    """A decode token with c cached positions attends c + 1 keys: executed FLOPs grow by the same amount per
    cached position, and equal the model FLOPs (a single query has no masked keys)."""
    cfg, batch = get_preset("nvila-8b"), 3
    executed = [costmodel.decode_step_cost(cfg, c, batch).executed_flops for c in (0, 1000, 2000, 4000)]
    per_key = batch * _attention_flops(cfg, 1)
    assert [e - executed[0] for e in executed] == [0, 1000 * per_key, 2000 * per_key, 4000 * per_key]
    assert costmodel.causal_keys(1, 4000 + 1) == 4001
    for c in (0, 4000):
        cost = costmodel.decode_step_cost(cfg, c, batch)
        assert cost.executed_flops == cost.flops


def test_mfu_and_floor_use_executed_flops():
    """A synthetic H100-like case: a prefill time at which model-FLOP MFU is 1.08 (the first H100 run's
    scaled-only figure) gives an executed-FLOP MFU <= 1; the record says which convention it used."""
    from nvila_bench.core.analysis.analytic import analytic_metrics
    from nvila_bench.core.analysis.hardware import Peaks
    from nvila_bench.core.measuring.point import BenchPoint
    from nvila_bench.core.measuring.results import Metric

    point = BenchPoint("nvila-8b-scaled-only", device="cuda", images=((1920, 1080),), prompt_tokens=20_575)
    costs = costmodel.request_costs(
        get_preset(point.preset), point.images, prompt_tokens=point.prompt_tokens, dtype=point.dtype
    )
    llm = costs["llm_prefill"]
    assert count_visual_tokens(get_preset(point.preset), list(point.images)).total_tokens + 20_575 == 32_864
    peaks = Peaks(flops=989e12, bandwidth=3.35e12, source="table:h100-sxm")
    seconds = llm.flops / (1.08 * peaks.flops)  # model-FLOP MFU 1.08
    assert costmodel.mfu(llm.flops, seconds, peaks.flops) > 1
    timed = {"llm_prefill": Metric.timing([seconds] * 5)}
    out = analytic_metrics(point, timed, {"llm_prefill": "llm_prefill"}, peaks)
    mfu = out["llm_prefill_mfu"].value
    assert mfu <= 1 and mfu == pytest.approx(llm.executed_flops / seconds / peaks.flops)
    assert out["llm_prefill_flops"].value == llm.flops  # the model's FLOP count is kept
    assert out["llm_prefill_executed_flops"].value == llm.executed_flops < llm.flops
    assert out["vision_executed_flops"].value == out["vision_flops"].value
    assert out["flops_convention"].value == costmodel.FLOPS_CONVENTION
    assert "executed" in out["flops_convention"].value and out["flops_convention"].provenance == "analytic"
    floor = max(llm.executed_flops / peaks.flops, llm.bytes / peaks.bandwidth)
    assert out["llm_prefill_floor"].value == pytest.approx(floor)
    assert costmodel.time_floor(llm, peaks.flops, peaks.bandwidth) < llm.flops / peaks.flops  # below model FLOPs
    assert costmodel.arithmetic_intensity(llm) == llm.executed_flops / llm.bytes


def test_cost_json_has_executed_flops_per_stage(capsys):
    import json

    from nvila_bench.cli import main

    code = main(["cost", "--preset", "nvila-8b", "--image", "1920x1080", "--hardware", "h100-sxm", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    costs = costmodel.request_costs(get_preset("nvila-8b"), [(1920, 1080)], prompt_tokens=64)
    for stage, cost in costs.items():
        assert data[stage]["executed_flops"] == cost.executed_flops
        assert data[stage]["flops"] == cost.flops
    assert data["llm_prefill"]["executed_flops"] < data["llm_prefill"]["flops"]
    assert data["vision"]["executed_flops"] == data["vision"]["flops"]
