"""Preprocessing as tensor operations on the model's device (`--preprocess gpu`): the same tiles as the PIL
path of preprocess.py, without the host CPU in the time to first token.

An image goes to the device once, as uint8 (H, W, 3); Dynamic-S2 / dynamic tiling / a plain resize follow
the same `image_layout` as the PIL path (identical token geometry), each scale is one bicubic resize with
antialiasing (`F.interpolate(..., antialias=True)`, PIL's filter for downscaling), rounded to uint8 as PIL's
8-bit resize does, cut into tiles by a view, and normalised to [-1, 1] (SigLIP: mean = std = 0.5).

Pixels agree with PIL's within `PIXEL_TOLERANCE` (mean absolute difference, in [-1, 1] units): both are
separable bicubic filters (a = -0.5) with the support widened by the scale factor, but PIL rounds to 8 bits
between its horizontal and vertical passes and uses fixed-point weights. Tested on CPU against PIL for the
worked sizes (tests/test_engines.py). A request from image files (`--image-file`) decodes them in the timed
preprocessing stage (`decode_image`: nvJPEG on the GPU for JPEGs).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .config import NVILAConfig
from .preprocess import ImageTiles, MediaInputs, VideoFrames
from .tokens import image_layout

# Mean |tensor - PIL| in [-1, 1] units, measured 0.001-0.002 on the worked sizes (a fifth of one 8-bit level);
# single pixels of high-frequency content (noise) differ by up to 0.2.
PIXEL_TOLERANCE = 0.005


def to_uint8(image: Image.Image | np.ndarray | torch.Tensor) -> torch.Tensor:
    """(H, W, 3) uint8 on the host: a decoded image (PIL or array), converted once, before any timing."""
    if isinstance(image, torch.Tensor):
        return image
    if isinstance(image, Image.Image):
        image = np.array(image.convert("RGB"))
    return torch.from_numpy(np.array(image, dtype=np.uint8, copy=False, order="C"))


def decode_image(path: str, device: str | torch.device = "cuda") -> torch.Tensor:
    """An image file -> (H, W, 3) uint8 on `device`; JPEGs are decoded on the GPU (nvJPEG through
    torchvision) when the device is CUDA, other files by torchvision on the host. Without torchvision (it
    must match torch exactly, so a CPU venv may lack it) PIL decodes on the host."""
    device = torch.device(device)
    try:
        from torchvision.io import ImageReadMode, decode_jpeg, read_file
        from torchvision.io import decode_image as tv_decode
    except ImportError:
        return to_uint8(Image.open(path)).to(device)
    data = read_file(path)
    if device.type == "cuda" and bytes(data[:2].tolist()) == b"\xff\xd8":
        try:
            chw = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as e:  # e.g. a CMYK or lossless JPEG: no silent host decode inside a "gpu" figure
            raise RuntimeError(
                f"nvJPEG cannot decode {path} ({' '.join(str(e).split())[:120]}): measure it with --preprocess cpu"
            ) from None
    else:
        try:
            chw = tv_decode(data, mode=ImageReadMode.RGB).to(device)
        except RuntimeError:  # a format torchvision does not decode (BMP, TIFF, ...): PIL's, as the cpu path reads it
            return to_uint8(Image.open(path)).to(device)
    return chw.permute(1, 2, 0)


def _resize(image: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """(N, 3, H, W) float in [0, 255] -> (N, 3, height, width), bicubic with antialiasing, rounded to 8 bits."""
    if image.shape[-2:] == (height, width):
        return image
    out = F.interpolate(image, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return out.round_().clamp_(0, 255)


def _tiles(image: torch.Tensor, cols: int, rows: int, tile: int) -> torch.Tensor:
    """Resize to (tile*cols, tile*rows) and cut row-major tiles: (rows*cols, 3, tile, tile)."""
    resized = _resize(image, tile * cols, tile * rows)[0]
    return resized.view(3, rows, tile, cols, tile).permute(1, 3, 0, 2, 4).reshape(rows * cols, 3, tile, tile)


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.div_(127.5).sub_(1.0)


def preprocess_image_tensor(
    cfg: NVILAConfig, image: torch.Tensor, multi_image: bool = False, device: str | torch.device = "cpu"
) -> ImageTiles:
    """One (H, W, 3) uint8 image -> ImageTiles, on `device`."""
    height, width = image.shape[:2]
    tile = cfg.tile_size
    layout = image_layout(cfg, width, height, multi_image)
    x = image.to(device, non_blocking=True).permute(2, 0, 1)[None].float()
    if layout.mode == "resize":
        crops = [_resize(x, tile, tile)]
    else:
        crops = [_tiles(x, cols, rows, tile) for cols, rows in layout.scale_grids]
        if layout.thumbnail:
            crops.append(_resize(x, tile, tile))
    return ImageTiles(_normalise(torch.cat(crops)), layout, (width, height))


def preprocess_video_tensor(
    cfg: NVILAConfig, frames: list[torch.Tensor], device: str | torch.device = "cpu"
) -> VideoFrames:
    """Frames (each (H, W, 3) uint8) -> (T, 3, S, S): one batched resize when the frames share a size."""
    if not frames:
        raise ValueError("a video needs at least one frame")
    tile = cfg.tile_size
    if len({tuple(f.shape) for f in frames}) == 1:
        x = torch.stack(frames).to(device, non_blocking=True).permute(0, 3, 1, 2).float()
        return VideoFrames(_normalise(_resize(x, tile, tile)))
    return VideoFrames(
        torch.cat([_normalise(_resize(f.to(device).permute(2, 0, 1)[None].float(), tile, tile)) for f in frames])
    )


def preprocess_media_tensor(
    cfg: NVILAConfig,
    images: list[torch.Tensor] = (),
    video: list[torch.Tensor] | None = None,
    device: str | torch.device = "cpu",
) -> MediaInputs:
    multi = len(images) > 1
    return MediaInputs(
        [preprocess_image_tensor(cfg, im, multi, device) for im in images],
        preprocess_video_tensor(cfg, video, device) if video is not None else None,
    )
