"""The peers' analytic cost model (core/analysis/peer_costs.py) against torch's FlopCounterMode on the tiny peers,
run by transformers' own modules with eager attention (CPU SDPA kernels are not counted), and its window arithmetic
against Qwen2.5-VL's own window index."""

import pytest
import torch
from nvila_bench.model import get_preset
from nvila_bench.model.peer_model import build_peer
from nvila_bench.model.pipeline import media_blocks, peer_request
from nvila_bench.model.stages import PROJECTOR, VISION
from torch.utils.flop_counter import FlopCounterMode

from nvila_bench.core.analysis import costmodel
from nvila_bench.core.analysis.peer_costs import _window_pairs, peer_request_costs

PEERS = ["qwen2-vl-tiny", "qwen2.5-vl-tiny", "llava-onevision-tiny"]


def staged_flops(model, request) -> dict[str, int]:
    """FLOPs counted per media stage, by the sections the model marks itself."""
    counts, stack = {}, []

    class Section:
        def __init__(self, name):
            self.name = name

        def __enter__(self):
            stack.append((self.name, FlopCounterMode(display=False)))
            stack[-1][1].__enter__()

        def __exit__(self, *exc):
            name, counter = stack.pop()
            counter.__exit__(*exc)
            counts[name] = counts.get(name, 0) + counter.get_total_flops()

    with torch.inference_mode():
        media_blocks(model, request, Section)
    return counts


def assert_close(analytic: int, measured: int) -> None:
    assert measured > 0
    assert abs(analytic - measured) <= 0.01 * measured, f"analytic {analytic} vs FlopCounterMode {measured}"


@pytest.mark.parametrize("name", PEERS)
@pytest.mark.parametrize("images", [((448, 448),), ((640, 360), (300, 500))])
def test_media_flops_equal_transformers_modules(name, images):
    cfg = get_preset(name)
    model = build_peer(cfg, attn_implementation="eager")
    counted = staged_flops(model, peer_request(cfg, images, None, 8, 1, 0, "cpu"))
    costs = peer_request_costs(cfg, images, prompt_tokens=8, dtype="float32")
    assert_close(costs["vision"].flops, counted[VISION])
    assert_close(costs["projector"].flops, counted[PROJECTOR])


@pytest.mark.parametrize("name", PEERS)
def test_llm_prefill_flops_equal_the_forward(name):
    cfg = get_preset(name)
    model = build_peer(cfg, attn_implementation="eager")
    request = peer_request(cfg, ((448, 448),), None, 16, 1, 0, "cpu")
    with torch.inference_mode():
        embeds = model.embed(request.input_ids, media_blocks(model, request))
        with FlopCounterMode(display=False) as counter:
            model.prefill(embeds)
    costs = costmodel.request_costs(cfg, [(448, 448)], prompt_tokens=16, dtype="float32")
    assert_close(costs["llm_prefill"].flops, counter.get_total_flops())


def test_qwen25_windows_equal_its_window_index():
    """Sum of squared window sizes: transformers' window index gives each window's patch boundaries."""
    from transformers.vision_utils import get_vision_window_index

    cfg = get_preset("qwen2.5-vl-tiny")
    v = cfg.vision_config
    merge = v["spatial_merge_size"] ** 2
    for cols, rows in [(32, 32), (138, 78), (46, 26), (4, 142)]:
        _, cu = get_vision_window_index(
            torch.tensor([[1, rows, cols]]), v["spatial_merge_size"], v["window_size"], v["patch_size"]
        )
        sizes = torch.as_tensor(cu).unique_consecutive().diff()  # patches per window
        window = cfg.vision_config["window_size"] // cfg.vision_config["patch_size"]
        assert int((sizes**2).sum()) == _window_pairs(cols, rows, window), (cols, rows)
        assert int(sizes.sum()) == cols * rows and merge == 4
