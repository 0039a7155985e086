"""Image and video preprocessing as pure functions: PIL images in, normalised pixel tiles out
(docs/reference.md#vision-encoder, docs/reference.md#image-preprocessing-and-token-counts,
docs/reference.md#video-and-temporal-pooling-tsp).

Crops are made with PIL `resize` (bicubic) as upstream does; the SigLIP image processor then rescales by
1/255 and normalises with mean = std = 0.5, i.e. pixels in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .config import NVILAConfig
from .tiling import TileLayout
from .tokens import image_layout


@dataclass
class ImageTiles:
    """One image as ViT input: `pixels` (tiles, 3, S, S) in the order of `layout` (scales, then row-major
    tiles; the NVILA-Lite thumbnail last)."""

    pixels: torch.Tensor
    layout: TileLayout
    size: tuple[int, int]  # original (width, height)


@dataclass
class VideoFrames:
    """A clip as ViT input: `pixels` (frames, 3, S, S), each frame a plain resize."""

    pixels: torch.Tensor


@dataclass
class MediaInputs:
    """Everything visual in one request, in prompt order: images first, then the video (if any)."""

    images: list[ImageTiles]
    video: VideoFrames | None = None

    @property
    def items(self) -> list[ImageTiles | VideoFrames]:
        return [*self.images, *([self.video] if self.video is not None else [])]

    def all_pixels(self) -> torch.Tensor:
        return torch.cat([m.pixels for m in self.items], dim=0)


def normalize(image: Image.Image, size: int) -> torch.Tensor:
    """SigLIP image processor: bicubic resize to size x size, [0, 255] -> [-1, 1], CHW float32."""
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    array = np.asarray(image.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1).div(127.5).sub(1.0)


def cut_tiles(image: Image.Image, grid: tuple[int, int], tile: int) -> list[Image.Image]:
    """Resize to (tile*cols, tile*rows) and crop the tiles row-major (left to right, then down)."""
    cols, rows = grid
    resized = image.resize((tile * cols, tile * rows), Image.Resampling.BICUBIC)
    return [
        resized.crop((c * tile, r * tile, (c + 1) * tile, (r + 1) * tile)) for r in range(rows) for c in range(cols)
    ]


def preprocess_image(cfg: NVILAConfig, image: Image.Image, multi_image: bool = False) -> ImageTiles:
    """Dynamic-S2 (NVILA), dynamic tiling + thumbnail (NVILA-Lite) or a plain resize (VILA1.5, and any
    image of a multi-image request)."""
    tile = cfg.tile_size
    image = image.convert("RGB")  # before any resize, as upstream loads images: RGBA resized first darkens
    layout = image_layout(cfg, image.width, image.height, multi_image)
    crops = (
        [c for grid in layout.scale_grids for c in cut_tiles(image, grid, tile)] if layout.mode != "resize" else [image]
    )
    if layout.thumbnail:
        crops.append(image.resize((tile, tile), Image.Resampling.BICUBIC))
    pixels = torch.stack([normalize(c, tile) for c in crops])
    return ImageTiles(pixels, layout, image.size)


def preprocess_video(cfg: NVILAConfig, frames: list[Image.Image]) -> VideoFrames:
    if not frames:
        raise ValueError("a video needs at least one frame")
    return VideoFrames(torch.stack([normalize(f.convert("RGB"), cfg.tile_size) for f in frames]))


def preprocess_media(
    cfg: NVILAConfig, images: list[Image.Image] = (), video: list[Image.Image] | None = None
) -> MediaInputs:
    multi = len(images) > 1
    return MediaInputs(
        [preprocess_image(cfg, im, multi) for im in images],
        preprocess_video(cfg, video) if video is not None else None,
    )


def sample_frame_indices(frame_count: int, num_frames: int, fps: float = 0.0, video_fps: float = 30.0) -> list[int]:
    """Which decoded frames a video contributes (upstream `llava/utils/media.py`, reference
    docs/reference.md#video-and-temporal-pooling-tsp).

    fps == 0: `num_frames` indices spread evenly over the clip, rounded (duplicates kept for short clips).
    fps > 0: timestamps 0, 1/fps, ... before the clip ends, the first `num_frames` of them, each mapped to
    int(t * video_fps); short clips yield fewer frames.
    """
    if frame_count < 1 or num_frames < 1 or fps < 0 or video_fps <= 0:
        raise ValueError(f"bad frame sampling: {frame_count=} {num_frames=} {fps=} {video_fps=}")
    if fps == 0:
        return np.round(np.linspace(0, frame_count - 1, num_frames)).astype(int).tolist()
    duration = frame_count / video_fps
    times = np.arange(0, duration, 1 / fps)[:num_frames]
    return [min(int(t * video_fps), frame_count - 1) for t in times]


def synthetic_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """Random RGB noise: a stand-in input whose cost equals a real photo's of the same size."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def synthetic_video(frames: int, width: int = 640, height: int = 360, seed: int = 0) -> list[Image.Image]:
    return [synthetic_image(width, height, seed + i) for i in range(frames)]
