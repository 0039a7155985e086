"""The reference model: embeddings produced == counted, vision features == transformers', S2 merge
== per-block projection, KV-cache decoding == full forward."""

import pytest
import torch
from conftest import TINY, tiny_model
from nvila_bench.model import (
    build_model,
    count_visual_tokens,
    get_preset,
    preprocess_media,
    synthetic_image,
    synthetic_prompt,
)
from nvila_bench.model.pipeline import generate
from nvila_bench.model.preprocess import normalize, sample_frame_indices
from nvila_bench.model.vision import merge_s2, stitch, vision_features
from PIL import Image

SIZES = [(448, 448), (640, 480), (1920, 1080), (300, 2000), (2000, 500), (97, 61)]


def media_blocks(model, images=(), frames=None, temporal_pool=True):
    cfg = model.config
    video = [synthetic_image(320, 240, seed=i) for i in range(frames)] if frames else None
    media = preprocess_media(cfg, [synthetic_image(w, h, seed=w) for w, h in images], video)
    with torch.inference_mode():
        return media, model.project(model.encode_media(media), media, temporal_pool=temporal_pool)


@pytest.mark.parametrize("size", SIZES)
def test_single_image_embeddings_equal_count(tiny, size):
    media, blocks = media_blocks(tiny, [size])
    count = count_visual_tokens(tiny.config, [size])
    assert media.images[0].pixels.shape[0] == count.images[0].vit_tiles
    assert blocks[0].shape == (count.images[0].tokens, tiny.config.llm.hidden_size)


@pytest.mark.parametrize("name", TINY)
def test_multi_image_and_video_embeddings_equal_count(name):
    model = tiny_model(name)
    images = [(1920, 1080), (300, 2000), (448, 448)]
    for frames in (8, 16):
        _, blocks = media_blocks(model, images, frames)
        count = count_visual_tokens(model.config, images, frames)
        assert [b.shape[0] for b in blocks] == [im.tokens for im in count.images] + [count.video.tokens]


@pytest.mark.parametrize("pool", [True, False])
def test_video_tsp_pooling_on_and_off(pool):
    model = tiny_model("nvila-video-tiny")
    _, blocks = media_blocks(model, frames=16, temporal_pool=pool)
    assert blocks[0].shape[0] == count_visual_tokens(model.config, video_frames=16, temporal_pool=pool).total_tokens
    assert blocks[0].shape[0] == (2 * 257 if pool else 16 * 257)


def test_tsp_equals_mean_of_projected_frames():
    model = tiny_model("nvila-video-tiny")
    media, pooled = media_blocks(model, frames=16)
    with torch.inference_mode():
        feats = model.encode_media(media)[0]
        per_frame = model.mm_projector(model._feature_maps(feats))  # (16, 256, H)
    pooled = pooled[0].view(2, 257, -1)
    torch.testing.assert_close(pooled[:, :256], per_frame.view(2, 8, 256, -1).mean(1))
    newline = model.llm.get_input_embeddings().weight[model.config.llm.newline_token_id]
    torch.testing.assert_close(pooled[:, 256], newline.expand(2, -1))


def test_lite_tile_blocks_end_with_separator_and_newline_text():
    model = tiny_model("nvila-lite-tiny")
    _, blocks = media_blocks(model, [(640, 480)])  # 4x3 grid + thumbnail = 13 tiles of 123
    tiles = blocks[0].view(13, 123, -1)
    newline = model.llm.get_input_embeddings().weight[model.config.llm.newline_token_id]
    torch.testing.assert_close(tiles[:, 121:], newline.expand(13, 2, -1))
    assert not torch.allclose(tiles[:, 120], newline.expand(13, -1))


def test_vision_features_equal_transformers_hidden_states():
    model = tiny_model("nvila-tiny")
    pixels = torch.randn(3, 3, 448, 448)
    with torch.inference_mode():
        ours = vision_features(model.vision_tower, pixels, model.config.vision.layers_used)
        ref = model.vision_tower(pixels, output_hidden_states=True).hidden_states[model.config.vision.select_layer]
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_chunked_vision_batches_give_the_same_features():
    model = tiny_model("nvila-tiny")
    media = preprocess_media(model.config, [synthetic_image(640, 480)], [synthetic_image(64, 64)] * 3)
    with torch.inference_mode():
        whole, chunked = model.encode_media(media), model.encode_media(media, max_batch=4)
    assert [f.shape[0] for f in chunked] == [17, 3]
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_s2_merged_map_equals_per_block_projection():
    """Upstream splits the merged map into 32x32 blocks, projects each and stitches the outputs back."""
    model = tiny_model("nvila-tiny")
    media, blocks = media_blocks(model, [(1920, 1080)])
    layout = media.images[0].layout
    cols, rows = layout.grid
    with torch.inference_mode():
        merged = merge_s2(model.encode_media(media)[0], layout)[0]  # (32*rows, 32*cols, 3C)
        per_block = merged.view(rows, 32, cols, 32, -1).permute(0, 2, 1, 3, 4).reshape(rows * cols, 32, 32, -1)
        projected = model.mm_projector(per_block).view(rows * cols, 16, 16, -1)
        stitched = stitch(projected, (cols, rows)).reshape(-1, projected.shape[-1])
    torch.testing.assert_close(blocks[0][:-1], stitched)


def test_s2_merge_upsamples_the_448_scale_by_replication():
    feats = torch.randn(1 + 4 + 9, 4, 2)  # g=2: 448 -> 2x2, 896 -> 4x4, last (3,3) -> 6x6
    from nvila_bench.model.tiling import dynamic_s2_layout

    merged = merge_s2(feats, dynamic_s2_layout(448, 448, (448, 896, 1344), 12))[0]
    assert merged.shape == (6, 6, 6)
    base = feats[0].view(2, 2, 2)
    torch.testing.assert_close(merged[:, :, :2], base.repeat_interleave(3, 0).repeat_interleave(3, 1))


def test_dynamic_s2_tiles_are_row_major_crops_per_scale():
    cfg = get_preset("nvila-tiny")
    image = synthetic_image(1000, 700, seed=3)
    tiles = preprocess_media(cfg, [image]).images[0]
    assert tiles.layout.scale_grids == ((1, 1), (2, 2), (4, 3))
    torch.testing.assert_close(tiles.pixels[0], normalize(image.resize((448, 448), Image.Resampling.BICUBIC), 448))
    big = image.resize((448 * 4, 448 * 3), Image.Resampling.BICUBIC)
    crop = big.crop((448, 448, 896, 896))  # last scale, row 1, col 1 -> index 5 + 1*4 + 1
    torch.testing.assert_close(tiles.pixels[5 + 4 + 1], normalize(crop, 448))
    assert tiles.pixels.min() >= -1 and tiles.pixels.max() <= 1


def test_lite_thumbnail_is_last():
    cfg = get_preset("nvila-lite-tiny")
    image = synthetic_image(1920, 1080, seed=4)
    tiles = preprocess_media(cfg, [image]).images[0]
    assert tiles.pixels.shape[0] == 9 and tiles.layout.thumbnail
    torch.testing.assert_close(tiles.pixels[-1], normalize(image.resize((448, 448), Image.Resampling.BICUBIC), 448))


def test_frame_sampling_follows_upstream():
    assert sample_frame_indices(100, 8) == [0, 14, 28, 42, 57, 71, 85, 99]
    assert sample_frame_indices(3, 8) == [0, 0, 1, 1, 1, 1, 2, 2]  # short clip: duplicates kept
    assert sample_frame_indices(300, 8, fps=1.0, video_fps=30.0) == [0, 30, 60, 90, 120, 150, 180, 210]
    assert sample_frame_indices(90, 8, fps=1.0, video_fps=30.0) == [0, 30, 60]  # 3 s clip: 3 frames
    with pytest.raises(ValueError):
        sample_frame_indices(0, 8)


def _prompt_embeds(model, batch=1):
    _, blocks = media_blocks(model, [(640, 480)])
    ids = synthetic_prompt(model.config, num_images=1, text_tokens=20)
    with torch.inference_mode():
        return model.embed(ids.expand(batch, -1), blocks)


@pytest.mark.parametrize("name", TINY)
def test_prefill_and_cached_decode_equal_full_forward(name):
    model = tiny_model(name)
    embeds = _prompt_embeds(model)
    tokens = generate(model, embeds, 6)
    with torch.inference_mode():
        full = torch.cat([embeds, model.llm.get_input_embeddings()(tokens[:, :-1])], dim=1)
        reference = model.forward_logits(full)[:, embeds.shape[1] - 1 :]
        pre = model.prefill(embeds)
        steps = [pre.logits] + [model.decode_step(tokens[:, i : i + 1], pre.cache) for i in range(5)]
    torch.testing.assert_close(torch.stack(steps, 1), reference, rtol=1e-4, atol=1e-4)
    assert pre.cache.get_seq_length() == embeds.shape[1] + 5


@pytest.mark.parametrize("name", ["nvila-tiny", "vila-tiny"])
def test_static_cache_decodes_like_the_dynamic_cache(name):
    model = tiny_model(name)
    embeds = _prompt_embeds(model)
    dynamic, static = model.prefill(embeds), model.prefill(embeds, cache=model.new_cache("static", embeds.shape[1] + 4))
    token = dynamic.logits.argmax(-1, keepdim=True)
    for _ in range(3):
        a, b = model.decode_step(token, dynamic.cache), model.decode_step(token, static.cache)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        token = a.argmax(-1, keepdim=True)
    with pytest.raises(ValueError, match="needs max_len"):
        model.new_cache("static")


def test_prefill_all_logits_equal_full_forward():
    model = tiny_model("nvila-tiny")
    embeds = _prompt_embeds(model)
    torch.testing.assert_close(
        model.prefill(embeds, all_logits=True).logits, model.forward_logits(embeds), rtol=1e-4, atol=1e-4
    )


def test_sdpa_and_eager_agree():
    eager = tiny_model("nvila-lite-tiny")
    sdpa = build_model(eager.config, attn_implementation="sdpa")
    sdpa.load_state_dict(eager.state_dict())
    embeds = _prompt_embeds(eager)
    torch.testing.assert_close(sdpa.prefill(embeds).logits, eager.prefill(embeds).logits, rtol=1e-4, atol=1e-4)


def test_the_vision_attention_kernel_is_the_one_sdpa_dispatches_to():
    from nvila_bench.model.vision import attention_kernel
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model = build_model(get_preset("nvila-tiny"), torch.bfloat16, attn_implementation="sdpa")
    assert attention_kernel(model.vision_tower) == "flash_attention"  # PyTorch's CPU flash kernel, bf16
    with sdpa_kernel(SDPBackend.MATH):  # what PyTorch would run with only the math kernel allowed
        assert attention_kernel(model.vision_tower) == "math"
    assert attention_kernel(build_model(get_preset("nvila-tiny"), attn_implementation="eager").vision_tower) == "eager"


def test_batch_rows_are_identical_requests():
    model = tiny_model("vila-tiny")
    logits = model.prefill(_prompt_embeds(model, batch=3)).logits
    assert logits.shape == (3, model.config.llm.vocab_size)
    torch.testing.assert_close(logits[1:], logits[:1].expand(2, -1), rtol=1e-5, atol=1e-5)


def test_generate_ignores_eos_or_stops_on_it():
    model = tiny_model("nvila-tiny")
    embeds = _prompt_embeds(model)
    first = int(generate(model, embeds, 1)[0, 0])
    assert generate(model, embeds, 10).shape == (1, 10)  # no eos given: EOS is ignored
    assert generate(model, embeds, 10, eos=first).shape == (1, 1)  # stops once every row produced it


def test_media_placeholders_are_never_embedded_and_must_match_blocks():
    model = tiny_model("nvila-tiny")
    _, blocks = media_blocks(model, [(448, 448)])
    ids = synthetic_prompt(model.config, num_images=1, text_tokens=4)
    assert int(ids[0]) >= model.config.llm.vocab_size  # 151649 lies outside the tiny vocabulary
    with torch.inference_mode():
        embeds = model.embed(ids[None], blocks)
        assert embeds.shape[1] == blocks[0].shape[0] + 4
        torch.testing.assert_close(embeds[0, : blocks[0].shape[0]], blocks[0])
        with pytest.raises(ValueError, match="media placeholders"):
            model.embed(ids[None], blocks + blocks)


def test_bf16_build_and_forward():
    model = build_model(get_preset("vila-tiny"), dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    out = generate(model, _prompt_embeds(model), 3)
    assert out.shape == (1, 3)


def test_unknown_attention_implementation_is_rejected():
    with pytest.raises(ValueError, match="unknown attention implementation"):
        build_model(get_preset("nvila-tiny"), attn_implementation="magic")


def test_scaled_only_variant_embeds_every_patch():
    model = build_model(get_preset("nvila-tiny-scaled-only"))
    for size in [(1920, 1080), (448, 448)]:
        _, blocks = media_blocks(model, [size])
        assert blocks[0].shape[0] == count_visual_tokens(model.config, [size]).total_tokens
    assert blocks[0].shape[0] == 9 * 1024 + 1


def test_rgba_images_are_converted_before_resizing():
    cfg = get_preset("nvila-lite-tiny")
    clear_white = Image.new("RGBA", (640, 480), (255, 255, 255, 0))
    assert preprocess_media(cfg, [clear_white]).images[0].pixels.mean() == pytest.approx(1.0)


def test_video_placeholder_before_an_image_is_rejected():
    model = tiny_model("nvila-tiny")
    _, blocks = media_blocks(model, [(448, 448)], frames=8)
    media = model.config.media
    with pytest.raises(ValueError, match="images first"):
        model.embed(torch.tensor([[5, media.video_token_id, 6, media.image_token_id, 7]]), blocks)


def test_count_visual_tokens_takes_a_preset_name():
    assert count_visual_tokens("nvila-8b", [(1920, 1080)]).total_tokens == 3073
