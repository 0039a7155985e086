"""A peer VLM's token counts (model/peer_tokens.py) equal what transformers' own processors put into the prompt.

Images: the real `Qwen2VLProcessor`, `Qwen2_5_VLProcessor` and `LlavaOnevisionProcessor` run on real PIL images,
with the PIL image processors (`Qwen2VLImageProcessorPil`, `LlavaOnevisionImageProcessorPil`) set as the presets'
processor files say, and the project's offline tokenizer (model/tokenizer.py) with the image and video tokens
added; the test counts the image token's ids in input_ids. transformers' video processors need torchvision,
which cannot run beside the CPU torch here, so the processors get a bare `BaseVideoProcessor` (no image reaches it).

Videos: Qwen's video processor needs torchvision, so its count is checked against transformers' own
`smart_resize` at the video processor's default min / max pixels (read from its source) and the processor's
formula: grid_t = frames padded to a multiple of temporal_patch_size (2), tokens = grid_t x h x w / merge**2.
LLaVA-OneVision's is the processor's own `replace_video_token` (frames x 14 x 14, plus one newline).
"""

import ast
import importlib.util
import math
import random

import pytest
from nvila_bench.model.peer_config import PEER_PRESETS
from nvila_bench.model.peer_tokens import SAMPLING, VIDEO_FRAME, count_peer_tokens
from nvila_bench.model.presets import get_preset
from nvila_bench.model.tokenizer import build_tokenizer
from nvila_bench.model.tokens import count_visual_tokens
from PIL import Image

REAL = [c.name for c in PEER_PRESETS if not c.is_tiny]
MARKS = {
    "qwen2-vl": ("<|image_pad|>", "<|video_pad|>"),
    "qwen2.5-vl": ("<|image_pad|>", "<|video_pad|>"),
    "llava-onevision": ("<image>", "<video>"),
}
# (width, height): 1080p both ways, tiny and odd sizes, extreme aspect ratios (Qwen refuses over 200:1).
SIZES = [
    (1920, 1080),
    (1080, 1920),
    (448, 448),
    (1, 1),
    (2, 3),
    (27, 29),
    (56, 4),
    (333, 777),
    (640, 480),
    (4000, 20),
    (20, 3000),
    (10000, 60),
    (6000, 20),
]
HUGE = (6000, 4000)  # 24 MP: Qwen scales it down to its max_pixels (a few seconds: once, for Qwen2-VL)
MULTI = [[(1920, 1080), (30, 500)], [(1920, 1080), (640, 480), (1, 1)]]


@pytest.fixture
def video_base(monkeypatch):
    """Without torchvision, transformers exports no video processor base class for a processor to check its
    argument against: register the real one for this test."""
    from transformers import processing_utils, video_processing_utils

    base = processing_utils.MODALITY_TO_BASE_CLASS_MAPPING["video_processor"]
    monkeypatch.setattr(
        processing_utils.transformers_module, base, getattr(video_processing_utils, base), raising=False
    )


def build_processor(cfg):
    """The preset's processor as transformers builds it, its image processor from the preset's settings."""
    import transformers
    from transformers.video_processing_utils import BaseVideoProcessor

    image_token, video_token = MARKS[cfg.kind]
    tokenizer = build_tokenizer(cfg)
    tokenizer.add_tokens([image_token, video_token], special_tokens=True)
    p = cfg.image_processor
    if cfg.kind == "llava-onevision":
        from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
            LlavaOnevisionImageProcessorPil,
        )

        images = LlavaOnevisionImageProcessorPil(size=p["size"], image_grid_pinpoints=p["image_grid_pinpoints"])
        return transformers.LlavaOnevisionProcessor(
            images,
            tokenizer,
            BaseVideoProcessor(),
            num_image_tokens=p["num_image_tokens"],
            vision_feature_select_strategy=cfg.hf_config["vision_feature_select_strategy"],
            vision_aspect_ratio=p["vision_aspect_ratio"],
            image_token=image_token,
            video_token=video_token,
        )
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    images = Qwen2VLImageProcessorPil(
        size={"shortest_edge": p["min_pixels"], "longest_edge": p["max_pixels"]},
        patch_size=p["patch_size"],
        temporal_patch_size=p["temporal_patch_size"],
        merge_size=p["merge_size"],
    )
    cls = transformers.Qwen2VLProcessor if cfg.kind == "qwen2-vl" else transformers.Qwen2_5_VLProcessor
    return cls(images, tokenizer, BaseVideoProcessor())


def placeholders(cfg, processor, sizes) -> int:
    """Image token ids in the prompt the processor makes of one request with these images (one prompt, so
    LLaVA-OneVision treats several images as a multi-image request)."""
    images = [Image.new("RGB", size, (120, 60, 30)) for size in sizes]
    text = f"what is in {MARKS[cfg.kind][0] * len(sizes)} this"
    return list(processor(text=[text], images=[images])["input_ids"][0]).count(processor.image_token_id)


@pytest.mark.parametrize("name", REAL)
def test_image_tokens_equal_the_processors_placeholders(name, video_base):
    cfg = get_preset(name)
    processor = build_processor(cfg)
    sizes = SIZES + ([HUGE] if name in ("qwen2-vl-7b", "llava-onevision-7b") else [])
    for size in sizes:
        if cfg.kind != "llava-onevision" and max(size) / min(size) > 200:
            with pytest.raises(ValueError, match="200"):
                placeholders(cfg, processor, [size])
            with pytest.raises(ValueError, match="aspect ratio over 200"):
                count_peer_tokens(cfg, [size])
            continue
        assert count_peer_tokens(cfg, [size]).visual_tokens == placeholders(cfg, processor, [size]), size
    for request in MULTI:
        count = count_peer_tokens(cfg, request)
        assert count.visual_tokens == placeholders(cfg, processor, request), request


@pytest.mark.parametrize("name", REAL)
def test_a_wide_sweep_of_sizes_equals_the_processors_count(name, video_base):
    """400 random sizes up to 9000 px a side through the processor's own count of placeholders per image size
    (`_get_num_multimodal_tokens`, the count vLLM uses; the same functions its __call__ runs)."""
    cfg = get_preset(name)
    rng = random.Random(0)
    sizes = [(rng.randint(1, 9000), rng.randint(1, 9000)) for _ in range(400)]
    sizes = [s for s in sizes if max(s) / min(s) <= 200]
    theirs = build_processor(cfg)._get_num_multimodal_tokens(image_sizes=[(h, w) for w, h in sizes])["num_image_tokens"]
    assert [count_peer_tokens(cfg, [s]).visual_tokens for s in sizes] == theirs


def test_worked_examples_at_1080p():
    """docs/reference.md#peer-vlms: Qwen2-VL sees a 138x78 patch grid (2691 tokens), LLaVA-OV a 5x3 crop grid."""
    (qwen,) = count_peer_tokens(get_preset("qwen2-vl-7b"), [(1920, 1080)]).images
    assert (qwen.grid, qwen.visual_tokens, qwen.tokens) == ((138, 78), 2691, 2693)  # + vision_start, vision_end
    (llava,) = count_peer_tokens(get_preset("llava-onevision-7b"), [(1920, 1080)]).images
    assert (llava.grid, llava.vit_tiles, llava.visual_tokens) == ((5, 3), 16, 7269)


VIDEO_DEFAULTS = ("size", "patch_size", "temporal_patch_size", "merge_size", "do_sample_frames")


def class_defaults(module: str, cls: str) -> dict:
    """A transformers class's attribute defaults, read from its source (the module needs torchvision to import):
    constants, or arithmetic on constants such as 128 * 28 * 28."""
    tree = ast.parse(open(importlib.util.find_spec(module).origin).read())
    body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls).body
    values = {}
    for node in body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id in VIDEO_DEFAULTS
        ):
            code = compile(ast.Expression(node.value), module, "eval")
            values[node.targets[0].id] = eval(code, {"__builtins__": {}})  # constants only
    return values


@pytest.mark.parametrize("name", ["qwen2-vl-7b", "qwen2.5-vl-7b", "qwen2-vl-tiny"])
@pytest.mark.parametrize("frames", [1, 2, 7, 8, 64, 257])
def test_qwen_video_tokens_follow_the_video_processor(name, frames):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    cfg = get_preset(name)
    defaults = class_defaults("transformers.models.qwen2_vl.video_processing_qwen2_vl", "Qwen2VLVideoProcessor")
    assert defaults["do_sample_frames"] is False  # every frame given is used
    size = defaults["size"]
    assert cfg.video_processor == {"min_pixels": size["shortest_edge"], "max_pixels": size["longest_edge"]} | {
        k: defaults[k] for k in ("patch_size", "temporal_patch_size", "merge_size")
    }
    patch, merge, t = defaults["patch_size"], defaults["merge_size"], defaults["temporal_patch_size"]
    h, w = smart_resize(VIDEO_FRAME[1], VIDEO_FRAME[0], patch * merge, size["shortest_edge"], size["longest_edge"])
    grid_t = math.ceil(frames / t)  # the processor repeats the last frame up to a multiple of temporal_patch_size
    video = count_peer_tokens(cfg, video_frames=frames).video
    assert video.visual_tokens == grid_t * (h // patch) * (w // patch) // merge**2
    assert (video.tokens, video.frame_size, video.frame_resized, video.sampling) == (
        video.visual_tokens + 2,
        VIDEO_FRAME,
        (w, h),
        SAMPLING,
    )


@pytest.mark.parametrize("frames", [1, 8, 32])
def test_llava_video_tokens_equal_the_processors(frames, video_base):
    cfg = get_preset("llava-onevision-7b")
    defaults = class_defaults(
        "transformers.models.llava_onevision.video_processing_llava_onevision", "LlavaOnevisionVideoProcessor"
    )
    assert defaults["do_sample_frames"] is False and defaults["size"] == cfg.video_processor["size"]
    processor = build_processor(cfg)
    placeholder = processor.replace_video_token({"pixel_values_videos": [[None] * frames]}, 0)
    video = count_peer_tokens(cfg, video_frames=frames).video
    assert video.visual_tokens == placeholder.count(processor.video_token) == frames * 14 * 14 + 1
    assert (video.pooled, video.frame_resized) == (False, (384, 384))  # 2x2 spatial pooling, not TSP


@pytest.mark.parametrize("name", [c.name for c in PEER_PRESETS if c.is_tiny])
def test_tiny_stand_ins_count_as_their_real_models(name):
    cfg = get_preset(name)
    real = get_preset(cfg.stands_in_for)
    request = {"images": [(1920, 1080), (333, 777)], "video_frames": 9}
    assert count_peer_tokens(cfg, **request).images == count_peer_tokens(real, **request).images
    assert count_peer_tokens(cfg, **request).video == count_peer_tokens(real, **request).video


def test_count_visual_tokens_dispatches_and_refuses_tsp_off():
    cfg = get_preset("qwen2-vl-7b")
    assert count_visual_tokens(cfg, [(1920, 1080)]) == count_peer_tokens(cfg, [(1920, 1080)])
    assert count_visual_tokens("llava-onevision-7b", video_frames=8).video.visual_tokens == 1569
    with pytest.raises(ValueError, match=r"^qwen2-vl-7b has no temporal pooling \(TSP\)"):
        count_visual_tokens(cfg, video_frames=8, temporal_pool=False)


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"images": [(0, 10)]}, "positive integers"),
        ({"images": [(10**6 + 1, 10)]}, "at most 1,000,000"),
        ({"images": [(10.5, 10)]}, "positive integers"),
        ({"video_frames": 0}, "positive integer"),
    ],
)
def test_bad_requests_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        count_peer_tokens(get_preset("qwen2.5-vl-7b"), **bad)
