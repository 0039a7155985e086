"""Visual token counts without building a model (reference docs/reference.md#worked-examples pseudo-code,
docs/reference.md#video-and-temporal-pooling-tsp budgets).

`tokens` counts every embedding a medium contributes to the LLM sequence (separators and NVILA-Lite's
per-tile "\\n" text token included); `visual_tokens` counts projector outputs only. A peer VLM's counts come
from peer_tokens.py (its processor's rules).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .config import NVILAConfig
from .peer_config import PeerConfig
from .tiling import TileLayout, dynamic_layout, dynamic_s2_layout, resize_layout


@dataclass(frozen=True)
class ImageTokens:
    width: int
    height: int
    grid: tuple[int, int]  # (cols, rows)
    vit_tiles: int
    visual_tokens: int
    tokens: int


@dataclass(frozen=True)
class VideoTokens:
    frames: int
    pooled: bool  # TSP applied
    visual_tokens: int
    tokens: int
    # A peer's video only: the frames' size as given and as its processor resizes them, and which frames it uses.
    frame_size: tuple[int, int] | None = None
    frame_resized: tuple[int, int] | None = None
    sampling: str | None = None

    def to_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if v is not None or k == "pooled"}
        for key in ("frame_size", "frame_resized"):
            if key in data:
                data[key] = "x".join(map(str, data[key]))
        return data


@dataclass(frozen=True)
class TokenCount:
    preset: str
    images: tuple[ImageTokens, ...]
    video: VideoTokens | None

    @property
    def total_tokens(self) -> int:
        return sum(im.tokens for im in self.images) + (self.video.tokens if self.video else 0)

    @property
    def visual_tokens(self) -> int:
        return sum(im.visual_tokens for im in self.images) + (self.video.visual_tokens if self.video else 0)

    @property
    def vit_tiles(self) -> int:
        return sum(im.vit_tiles for im in self.images) + (self.video.frames if self.video else 0)

    def to_dict(self) -> dict:
        return {
            "preset": self.preset,
            "images": [asdict(im) | {"grid": list(im.grid)} for im in self.images],
            "video": self.video.to_dict() if self.video else None,
            "visual_tokens": self.visual_tokens,
            "total_tokens": self.total_tokens,
        }


def image_layout(cfg: NVILAConfig, width: int, height: int, multi_image: bool) -> TileLayout:
    """Tiling of one image. Dynamic-S2 and dynamic tiling apply to a lone image only; an image among
    several (or a video frame) is a plain resize to one tile (docs/reference.md#dynamic-s2,
    docs/reference.md#nvila-lite-dynamic-tiling)."""
    _check_size(width, height)
    media = cfg.media
    if multi_image or media.image_mode == "resize":
        return resize_layout()
    if media.image_mode == "dynamic_s2":
        return dynamic_s2_layout(width, height, media.s2_scales, media.max_tiles)
    return dynamic_layout(width, height, cfg.tile_size, media.min_tiles, media.max_tiles)


def positions_per_block(cfg: NVILAConfig, layout: TileLayout) -> int:
    """LLM positions per STC block: tokens + separator, + a "\\n" text token per NVILA-Lite tile."""
    newline_text = cfg.media.tile_newline_text and layout.mode == "dynamic"
    return cfg.tokens_per_tile + int(cfg.media.separator) + int(newline_text)


def image_tokens(cfg: NVILAConfig, width: int, height: int, multi_image: bool = False) -> ImageTokens:
    layout = image_layout(cfg, width, height, multi_image)
    visual = cfg.tokens_per_tile * layout.llm_tiles
    if layout.mode == "dynamic":
        tokens = positions_per_block(cfg, layout) * layout.llm_tiles
    else:  # S2 scales are merged into one map: a single separator after the whole image
        tokens = visual + int(cfg.media.separator)
    return ImageTokens(width, height, layout.grid, layout.vit_tiles, visual, tokens)


def check_temporal_pool(cfg: NVILAConfig | PeerConfig, temporal_pool: bool) -> None:
    """Turning TSP off means nothing to a peer VLM, which has none: refused rather than silently ignored."""
    if not temporal_pool and isinstance(cfg, PeerConfig):
        raise ValueError(f"{cfg.name} has no temporal pooling (TSP): drop --no-temporal-pool")


def temporal_pool_size(cfg: NVILAConfig | PeerConfig, frames: int, temporal_pool: bool) -> tuple[int, int, int] | None:
    """The TSP pool (frames, rows, cols) that applies, or None; errors if it cannot divide the input."""
    check_temporal_pool(cfg, temporal_pool)
    if isinstance(cfg, PeerConfig):
        return None
    pool = cfg.media.temporal_pool if temporal_pool else None
    if pool is None:
        return None
    pt, ph, pw = pool
    side = round(cfg.tokens_per_tile**0.5)
    if frames % pt:
        raise ValueError(
            f"{cfg.name} pools {pt} frames at a time (TSP): --video-frames {frames} is not a multiple of {pt}; "
            "use a multiple or --no-temporal-pool"
        )
    if side % ph or side % pw:
        raise ValueError(f"TSP spatial pool {ph}x{pw} does not divide the {side}x{side} token map")
    return pool


def video_tokens(cfg: NVILAConfig, frames: int, temporal_pool: bool = True) -> VideoTokens:
    """Frames are resized to one tile each; TSP (if the preset has it and it is on) averages groups of
    frames after the projector, and each (pooled) frame gets its own separator
    (docs/reference.md#video-and-temporal-pooling-tsp)."""
    if frames < 1:
        raise ValueError(f"video frames must be a positive integer, got {frames}")
    pool = temporal_pool_size(cfg, frames, temporal_pool)
    out_frames, per_frame = frames, cfg.tokens_per_tile
    if pool:
        pt, ph, pw = pool
        out_frames, per_frame = frames // pt, per_frame // (ph * pw)
    visual = out_frames * per_frame
    return VideoTokens(frames, pool is not None, visual, visual + out_frames * int(cfg.media.separator))


def count_visual_tokens(
    cfg: NVILAConfig | PeerConfig | str,
    images: list[tuple[int, int]] | tuple[tuple[int, int], ...] = (),
    video_frames: int | None = None,
    temporal_pool: bool = True,
) -> TokenCount:
    """Token counts for one request (`cfg` a config or a preset name): `images` as (width, height) pairs,
    optionally one video."""
    if isinstance(cfg, str):
        from .presets import get_preset

        cfg = get_preset(cfg)
    if isinstance(cfg, PeerConfig):
        from .peer_tokens import count_peer_tokens  # it imports this module's dataclasses

        check_temporal_pool(cfg, temporal_pool)
        return count_peer_tokens(cfg, tuple(images), video_frames)
    multi = len(images) > 1
    ims = tuple(image_tokens(cfg, w, h, multi) for w, h in images)
    video = video_tokens(cfg, video_frames, temporal_pool) if video_frames is not None else None
    return TokenCount(cfg.name, ims, video)


MAX_SIDE = 10**6  # pixels: larger sides are refused, not counted (no camera or scan comes near)


def _check_size(width: int, height: int) -> None:
    if not (isinstance(width, int) and isinstance(height, int)) or width < 1 or height < 1:
        raise ValueError(f"image size must be positive integers WxH, got {width!r:.20}x{height!r:.20}")
    if max(width, height) > MAX_SIDE:
        raise ValueError(f"image size {width}x{height} is too large: each side must be at most {MAX_SIDE:,} px")
