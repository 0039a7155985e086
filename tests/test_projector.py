"""Projectors: STC against a naive loop, exact layer shapes and state-dict names
(docs/reference.md#projectors-and-spatial-token-concatenation-stc)."""

import pytest
import torch
from nvila_bench.model import get_preset
from nvila_bench.model.config import ProjectorConfig
from nvila_bench.model.params import projector_params
from nvila_bench.model.projector import MultimodalProjector, space_to_channel


def naive_stc(x: torch.Tensor, k: int, order: str) -> torch.Tensor:
    """Window by window: zero-pad, then concatenate the k*k positions row-major into one token."""
    n, rows, cols, c = x.shape
    a, b = -(-rows // k), -(-cols // k)
    padded = torch.zeros(n, a * k, b * k, c, dtype=x.dtype)
    padded[:, :rows, :cols] = x
    windows = (
        [(p, q) for p in range(a) for q in range(b)] if order == "row" else [(p, q) for q in range(b) for p in range(a)]
    )
    out = []
    for p, q in windows:
        pieces = [padded[:, p * k + dr, q * k + dc] for dr in range(k) for dc in range(k)]
        out.append(torch.cat(pieces, dim=-1))
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("shape", [(32, 32), (27, 27), (33, 33), (5, 7), (64, 96)])
@pytest.mark.parametrize("order", ["row", "column"])
def test_stc_matches_naive_loop(k, shape, order):
    x = torch.randn(2, *shape, 5)
    torch.testing.assert_close(space_to_channel(x, k, order), naive_stc(x, k, order), rtol=0, atol=0)


def test_stc_token_counts_of_the_real_geometries():
    assert space_to_channel(torch.zeros(1, 32, 32, 1), 2).shape[1] == 256  # NVILA
    assert space_to_channel(torch.zeros(1, 32, 32, 1), 3).shape[1] == 121  # Lite: 32 -> 33 padded
    assert space_to_channel(torch.zeros(1, 27, 27, 1), 2).shape[1] == 196  # VILA1.5: 27 -> 28 padded


def test_column_order_is_the_transpose_of_row_order():
    x = torch.randn(1, 28, 28, 3)
    row = space_to_channel(x, 2, "row").view(1, 14, 14, 12)
    col = space_to_channel(x, 2, "column").view(1, 14, 14, 12)
    torch.testing.assert_close(col, row.transpose(1, 2))


@pytest.mark.parametrize(
    "preset, params, keys",
    [
        ("nvila-8b", 62_425_088, ["layers.1", "layers.2", "layers.4"]),
        ("nvila-8b-video", 29_376_512, ["layers.1", "layers.2", "layers.4"]),
        ("nvila-lite-8b", 61_101_440, ["layers.1", "layers.2", "layers.4", "layers.5", "layers.7"]),
        ("nvila-lite-2b", 43_533_696, ["layers.1", "layers.2", "layers.4", "layers.5", "layers.7"]),
        ("vila1.5-3b", 18_364_416, ["layers.1", "layers.2", "layers.4"]),
        ("vila1.5-8b", 35_668_992, ["layers.1", "layers.2", "layers.4"]),
    ],
)
def test_projector_params_and_upstream_key_names(preset, params, keys):
    cfg = get_preset(preset).projector
    with torch.device("meta"):
        proj = MultimodalProjector(cfg)
    names = sorted({k.rsplit(".", 1)[0] for k in proj.state_dict()})
    assert names == keys
    assert sum(p.numel() for p in proj.parameters()) == params == projector_params(cfg)


def test_lite_15b_projector_matches_published_file_size():
    # Lite-15B (H 5120): 79,782,272 params = the 160 MB bf16 file of the reference (docs/reference.md#model-family,
    # docs/reference.md#projectors-and-spatial-token-concatenation-stc)
    assert projector_params(ProjectorConfig("mlp_downsample_3x3_fix", 1152, 5120)) == 79_782_272


def test_projector_layer_shapes_nvila_8b():
    with torch.device("meta"):
        proj = MultimodalProjector(get_preset("nvila-8b").projector)
    shapes = {k: tuple(v.shape) for k, v in proj.state_dict().items()}
    assert shapes == {
        "layers.1.weight": (13824,),
        "layers.1.bias": (13824,),
        "layers.2.weight": (3584, 13824),
        "layers.2.bias": (3584,),
        "layers.4.weight": (3584, 3584),
        "layers.4.bias": (3584,),
    }


def test_uncompressed_1x1_projector_keeps_every_patch():
    proj = MultimodalProjector(ProjectorConfig("mlp2x_gelu", 12, 8))
    assert proj(torch.randn(2, 32, 32, 12)).shape == (2, 1024, 8)


def test_unknown_projector_type_is_rejected():
    with pytest.raises(ValueError, match="unknown projector type"):
        ProjectorConfig("mlp_downsample_4x4")
