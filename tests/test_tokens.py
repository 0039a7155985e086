"""Token counts: the reference's worked examples (docs/reference.md#worked-examples), multi-image and video budgets
(docs/reference.md#image-preprocessing-and-token-counts, docs/reference.md#video-and-temporal-pooling-tsp)."""

import pytest
from nvila_bench.model import count_visual_tokens, get_preset
from nvila_bench.model.tiling import candidate_grids, closest_grid

# (W, H): NVILA-8B grid, ViT tiles, visual, LLM pos | Lite grid, tiles, visual, LLM pos  (reference
# docs/reference.md#worked-examples)
WORKED = {
    (448, 448): ((3, 3), 14, 2304, 2305, (1, 1), 1, 121, 123),
    (640, 480): ((4, 3), 17, 3072, 3073, (4, 3), 13, 1573, 1599),
    (1920, 1080): ((4, 3), 17, 3072, 3073, (4, 2), 9, 1089, 1107),
    (800, 1200): ((3, 4), 17, 3072, 3073, (2, 3), 7, 847, 861),
    (2000, 500): ((6, 2), 17, 3072, 3073, (4, 1), 5, 605, 615),
    (300, 2000): ((1, 9), 14, 2304, 2305, (1, 7), 8, 968, 984),
}
FAMILY_PRESETS = {
    "nvila": ["nvila-8b", "nvila-tiny"],
    "lite": ["nvila-lite-2b", "nvila-lite-8b", "nvila-lite-tiny"],
    "video": ["nvila-8b-video", "nvila-video-tiny"],
    "vila": ["vila1.5-3b", "vila1.5-8b", "vila-tiny"],
}


def test_candidate_grid_order_matches_upstream_set_order():
    assert candidate_grids(9, 12) == [
        (3, 3),
        (9, 1),
        (1, 9),
        (10, 1),
        (1, 10),
        (2, 5),
        (5, 2),
        (11, 1),
        (1, 11),
        (1, 12),
        (6, 2),
        (12, 1),
        (3, 4),
        (4, 3),
        (2, 6),
    ]


def test_area_tie_break_picks_larger_grid_for_large_images():
    # 2:1 ties between (2,1), (4,2) and (6,3)... only grids up to 12 tiles; 1920x1080 > half of 8 tiles' area
    assert closest_grid(1920, 1080, 1, 12, 448) == (4, 2)
    assert closest_grid(400, 200, 1, 12, 448) == (2, 1)  # small image keeps the first (smaller) grid


@pytest.mark.parametrize("size", list(WORKED))
@pytest.mark.parametrize("preset", FAMILY_PRESETS["nvila"])
def test_dynamic_s2_worked_examples(size, preset):
    grid, vit, visual, pos = WORKED[size][:4]
    im = count_visual_tokens(get_preset(preset), [size]).images[0]
    assert (im.grid, im.vit_tiles, im.visual_tokens, im.tokens) == (grid, vit, visual, pos)


@pytest.mark.parametrize("size", list(WORKED))
@pytest.mark.parametrize("preset", FAMILY_PRESETS["lite"])
def test_lite_dynamic_tiling_worked_examples(size, preset):
    grid, tiles, visual, pos = WORKED[size][4:]
    im = count_visual_tokens(get_preset(preset), [size]).images[0]
    assert (im.grid, im.vit_tiles, im.visual_tokens, im.tokens) == (grid, tiles, visual, pos)


@pytest.mark.parametrize("size", list(WORKED))
@pytest.mark.parametrize("preset", FAMILY_PRESETS["vila"])
def test_vila15_is_one_tile_196_tokens_no_separator(size, preset):
    im = count_visual_tokens(get_preset(preset), [size]).images[0]
    assert (im.grid, im.vit_tiles, im.visual_tokens, im.tokens) == ((1, 1), 1, 196, 196)


@pytest.mark.parametrize("size", list(WORKED))
@pytest.mark.parametrize("preset", FAMILY_PRESETS["video"])
def test_nvila_video_images_are_plain_448_resizes(size, preset):
    im = count_visual_tokens(get_preset(preset), [size]).images[0]
    assert (im.grid, im.vit_tiles, im.tokens) == ((1, 1), 1, 257)


@pytest.mark.parametrize(
    "preset, per_image", [("nvila-8b", 257), ("nvila-lite-8b", 122), ("nvila-8b-video", 257), ("vila1.5-3b", 196)]
)
def test_multi_image_requests_skip_tiling(preset, per_image):
    count = count_visual_tokens(get_preset(preset), [(1920, 1080), (448, 448), (300, 2000)])
    assert [im.tokens for im in count.images] == [per_image] * 3
    assert all(im.grid == (1, 1) and im.vit_tiles == 1 for im in count.images)
    assert count.total_tokens == 3 * per_image


@pytest.mark.parametrize(
    "preset, frames, pool, tokens",
    [
        (
            "nvila-8b",
            8,
            True,
            2056,
        ),  # docs/reference.md#video-and-temporal-pooling-tsp budgets: no TSP in the image model
        ("nvila-8b", 32, True, 8224),
        ("nvila-8b", 64, True, 16448),
        ("nvila-lite-8b", 8, True, 976),
        ("vila1.5-8b", 8, True, 1568),
        ("nvila-8b-video", 256, True, 8224),  # TSP 8x: 32 pooled frames x 257
        ("nvila-8b-video", 256, False, 65792),  # current upstream main: no pooling
        ("nvila-video-tiny", 16, True, 514),
    ],
)
def test_video_budgets(preset, frames, pool, tokens):
    video = count_visual_tokens(get_preset(preset), video_frames=frames, temporal_pool=pool).video
    assert video.tokens == tokens
    assert video.pooled == (pool and preset.startswith("nvila-") and "video" in preset)


def test_image_plus_video_request_totals():
    count = count_visual_tokens(get_preset("nvila-8b"), [(640, 480)], video_frames=8)
    assert count.images[0].tokens == 3073  # one image: still Dynamic-S2
    assert count.total_tokens == 3073 + 2056


def test_tsp_needs_divisible_frame_count():
    with pytest.raises(ValueError, match="not a multiple of 8.*--no-temporal-pool"):
        count_visual_tokens(get_preset("nvila-8b-video"), video_frames=12)
    assert (
        count_visual_tokens(get_preset("nvila-8b-video"), video_frames=12, temporal_pool=False).video.tokens == 12 * 257
    )


@pytest.mark.parametrize("bad", [(0, 10), (10, -1)])
def test_bad_image_size_rejected(bad):
    with pytest.raises(ValueError, match="positive"):
        count_visual_tokens(get_preset("nvila-8b"), [bad])


def test_bad_frame_count_rejected():
    with pytest.raises(ValueError, match="positive"):
        count_visual_tokens(get_preset("nvila-8b"), video_frames=0)
