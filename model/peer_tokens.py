"""A peer's visual token counts without building it: the placeholders transformers' own processor puts into the
prompt (docs/reference.md#peer-vlms). Pure functions of the processor settings; tests/test_peer_tokens.py holds
them equal to the processors over a sweep of sizes.

    Qwen2-VL / Qwen2.5-VL   the image resized to multiples of 28 px within [min_pixels, max_pixels] ("smart
                            resize"); one token per 2x2 merge of 14-px patches, between vision_start / vision_end
    LLaVA-OneVision         anyres_max_9: a base 384-px view plus the crops of the best grid of 384-px tiles, 729
                            tokens per view before unpadding, one newline token per feature row; an image among
                            several is one 384-px view: 729 tokens and a newline

A video's frames are used as given (no frame sampling), each `VIDEO_FRAME` pixels, as model/preprocess.py makes them.
"""

from __future__ import annotations

import math

from .peer_config import PeerConfig
from .tokens import MAX_SIDE, ImageTokens, TokenCount, VideoTokens

VIDEO_FRAME = (640, 360)  # (width, height) of a synthetic video frame (model/preprocess.py synthetic_video)
SAMPLING = "every frame"  # the processors sample no frames (Qwen2-VL's do_sample_frames is off by default)


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's resize: each side a multiple of `factor`, the area within [min_pixels, max_pixels], the aspect ratio
    kept as nearly as rounding allows (transformers.models.qwen2_vl.image_processing_qwen2_vl.smart_resize)."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"a {width}x{height} image: Qwen2-VL refuses an aspect ratio over 200")
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def qwen_grid(processor: dict, width: int, height: int) -> tuple[int, int]:
    """(cols, rows) of 14-px patches the Qwen vision tower sees for one image or frame."""
    patch, merge = processor["patch_size"], processor["merge_size"]
    h, w = smart_resize(height, width, patch * merge, processor["min_pixels"], processor["max_pixels"])
    return w // patch, h // patch


def _qwen_image(cfg: PeerConfig, width: int, height: int) -> ImageTokens:
    cols, rows = qwen_grid(cfg.image_processor, width, height)
    visual = cols * rows // cfg.image_processor["merge_size"] ** 2
    return ImageTokens(width, height, (cols, rows), 1, visual, visual + 2)  # + vision_start, vision_end


def _qwen_video(cfg: PeerConfig, frames: int) -> VideoTokens:
    processor = cfg.video_processor
    cols, rows = qwen_grid(processor, *VIDEO_FRAME)
    steps = -(-frames // processor["temporal_patch_size"])  # the last frame repeats to fill a temporal patch
    visual = steps * cols * rows // processor["merge_size"] ** 2
    resized = (cols * processor["patch_size"], rows * processor["patch_size"])
    return VideoTokens(frames, False, visual, visual + 2, VIDEO_FRAME, resized, SAMPLING)


def select_best_resolution(height: int, width: int, pinpoints: list) -> tuple[int, int]:
    """The (height, width) of the pinpoints that keeps the most of the image's pixels, then wastes the fewest
    (transformers.image_processing_utils.select_best_resolution)."""
    best, best_fit, least_waste = None, 0, float("inf")
    for h, w in pinpoints:
        scale = min(w / width, h / height)
        down_w, down_h = int(width * scale), int(height * scale)
        fit = min(down_w * down_h, width * height)
        waste = w * h - fit
        if fit > best_fit or (fit == best_fit and waste < least_waste):
            best, best_fit, least_waste = (h, w), fit, waste
    return best


def anyres_features(cfg: PeerConfig, width: int, height: int) -> tuple[tuple[int, int], int]:
    """((cols, rows) of 384-px crops, image tokens) of LLaVA-OneVision's anyres_max_9 (LlavaOnevisionProcessor.
    _get_number_of_features): the crops' feature map with the letterbox padding cut off, downscaled where it holds
    over 1.1x the area of `max` crops, one newline per row, plus the base view's 729."""
    processor = cfg.image_processor
    side, per_view = processor["size"]["height"], processor["num_image_tokens"]
    best_h, best_w = select_best_resolution(height, width, processor["image_grid_pinpoints"])
    rows, cols = best_h // side, best_w // side
    patches = math.isqrt(per_view)
    cur_h, cur_w = patches * rows, patches * cols
    if width / height > cur_w / cur_h:
        cur_h -= (cur_h - int(round(height * (cur_w / width), 7))) // 2 * 2
    else:
        cur_w -= (cur_w - int(round(width * (cur_h / height), 7))) // 2 * 2
    unpadded, newlines = cur_h * cur_w, cur_h
    ratio = math.sqrt(cur_h * cur_w / (int(processor["vision_aspect_ratio"].removeprefix("anyres_max_")) * patches**2))
    if ratio > 1.1:
        unpadded, newlines = int(cur_h // ratio) * int(cur_w // ratio), int(cur_h // ratio)
    return (cols, rows), unpadded + newlines + per_view


def _llava_image(cfg: PeerConfig, width: int, height: int, multi_image: bool) -> ImageTokens:
    """A lone image is tiled (anyres_max_9); one of several is a single base view and its newline
    (LlavaOnevisionProcessor: `num_image_tokens + 1` where a prompt holds more than one image)."""
    if multi_image:
        visual = cfg.image_processor["num_image_tokens"] + 1
        return ImageTokens(width, height, (1, 1), 1, visual, visual)
    grid, visual = anyres_features(cfg, width, height)
    return ImageTokens(width, height, grid, grid[0] * grid[1] + 1, visual, visual)


def _llava_video(cfg: PeerConfig, frames: int) -> VideoTokens:
    """Each frame one 384-px view, its 27x27 map pooled 2x2 (ceil: 14x14); one newline after the last frame.
    The spatial pooling is not TSP: `pooled` stays False."""
    pooled = math.ceil(math.isqrt(cfg.image_processor["num_image_tokens"]) / 2)
    visual = frames * pooled * pooled + 1
    side = cfg.video_processor["size"]
    return VideoTokens(frames, False, visual, visual, VIDEO_FRAME, (side["width"], side["height"]), SAMPLING)


def count_peer_tokens(cfg: PeerConfig, images=(), video_frames: int | None = None) -> TokenCount:
    """Token counts of one request to a peer: `images` as (width, height) pairs, optionally one video."""
    for w, h in images:
        if not (isinstance(w, int) and isinstance(h, int)) or min(w, h) < 1 or max(w, h) > MAX_SIDE:
            raise ValueError(
                f"image size must be positive integers WxH of at most {MAX_SIDE:,} px, got {w!r:.20}x{h!r:.20}"
            )
    if video_frames is not None and video_frames < 1:
        raise ValueError(f"video frames must be a positive integer, got {video_frames}")
    qwen, multi = cfg.kind != "llava-onevision", len(images) > 1
    ims = tuple(_qwen_image(cfg, w, h) if qwen else _llava_image(cfg, w, h, multi) for w, h in images)
    video = (_qwen_video if qwen else _llava_video)(cfg, video_frames) if video_frames is not None else None
    return TokenCount(cfg.name, ims, video)
