"""The request pipeline: one request through the model's stages, and the one greedy decode loop.

    Request --media_blocks--> [preprocess, vision, projector] --first_token--> [llm_prefill] --greedy_decode-->

Every caller runs requests through these functions: the latency suites, the profiler, the training step,
the lmms-eval adapter and `nvila-bench summary`. A caller that wants to time or trace the stages passes a
`section`: a function that takes a stage name and returns a context manager around that stage (a clock lap,
a profiler range). The model never times itself.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager

import torch
from PIL import Image

from .config import NVILAConfig
from .peer_config import PeerConfig
from .preprocess import preprocess_media, synthetic_image, synthetic_video
from .preprocess_tensor import decode_image, preprocess_media_tensor, to_uint8
from .prompt import FIRST_SPECIAL, synthetic_prompt
from .stages import DECODE_STEP, LLM_PREFILL, MEDIA_STAGES
from .tokens import MAX_SIDE

Section = Callable[[str], ContextManager]


def no_sections(name: str) -> ContextManager:
    return contextlib.nullcontext()


@dataclass
class Request:
    """What a user sends: images and / or one video's frames, and the prompt ids (batch, length) with one
    placeholder per medium."""

    images: list[Image.Image]
    video: list[Image.Image] | None
    input_ids: torch.Tensor
    temporal_pool: bool = True
    preprocess: str = "cpu"  # cpu: PIL on the host; gpu: tensor ops on the model's device (preprocess_tensor.py)
    # Image files instead of `images`: decoded in the timed preprocessing stage, as a server receiving them would
    # (PIL on the host for cpu; torchvision, nvJPEG for JPEGs, on the device for gpu).
    image_files: tuple[str, ...] = ()

    def __post_init__(self):
        if self.image_files and self.images:
            raise ValueError("a request holds decoded images or image files, not both")
        # The decoded uint8 pixels, made once (a server decodes a file once); pinned for a fast copy to the GPU.
        pin = self.preprocess == "gpu" and torch.cuda.is_available()

        def as_tensor(im):
            return to_uint8(im).pin_memory() if pin else to_uint8(im)

        self.image_pixels = [as_tensor(im) for im in self.images] if self.preprocess == "gpu" else []
        self.video_pixels = [as_tensor(f) for f in self.video] if self.preprocess == "gpu" and self.video else None

    @property
    def batch(self) -> int:
        return self.input_ids.shape[0]


def synthetic_request(
    cfg: NVILAConfig,
    images: tuple[tuple[int, int], ...] = (),
    video_frames: int | None = None,
    prompt_tokens: int = 64,
    batch: int = 1,
    seed: int = 0,
    temporal_pool: bool = True,
    preprocess: str = "cpu",
) -> Request:
    """Random images / frames of the given sizes (decoded once, before any timing) and a prompt of
    `prompt_tokens` text tokens after the media placeholders, repeated `batch` times."""
    pictures = [synthetic_image(w, h, seed=seed + i) for i, (w, h) in enumerate(images)]
    video = synthetic_video(video_frames, seed=seed) if video_frames else None
    ids = synthetic_prompt(cfg, len(pictures), video is not None, prompt_tokens, seed)
    return Request(pictures, video, ids.expand(batch, -1).contiguous(), temporal_pool, preprocess)


def peer_request(
    cfg: PeerConfig,
    images: tuple[tuple[int, int], ...] = (),
    video_frames: int | None = None,
    prompt_tokens: int = 64,
    batch: int = 1,
    seed: int = 0,
    preprocess: str = "cpu",
    image_files: tuple[str, ...] = (),
) -> Request:
    """A peer VLM's request (model/peer_model.py): random images / synthetic_video frames, and prompt ids holding
    the placeholders transformers' processor expands the media to (Qwen: vision_start, N image or video pads,
    vision_end; LLaVA-OneVision: N image or video tokens; N from count_peer_tokens), then random text ids.
    `image_files`: files of the sizes in `images`, served instead of random images."""
    from .peer_model import check_peer_preprocess
    from .peer_tokens import count_peer_tokens

    if images and video_frames:
        raise ValueError("a peer request holds images or a video, not both")
    check_peer_preprocess(preprocess, bool(video_frames))
    counts = count_peer_tokens(cfg, images, video_frames)
    hf = cfg.hf_config
    qwen = cfg.kind != "llava-onevision"

    def placeholder(token: int, n: int) -> list[int]:
        return [hf["vision_start_token_id"], *[token] * n, hf["vision_end_token_id"]] if qwen else [token] * n

    media = [i for im in counts.images for i in placeholder(cfg.image_token_id, im.visual_tokens)]
    if counts.video:
        media += placeholder(cfg.video_token_id, counts.video.visual_tokens)
    # Text ids below the media ids and Qwen2's specials (the tiny stand-ins keep theirs inside a 512-id vocabulary).
    media_ids = (cfg.image_token_id, cfg.video_token_id, hf.get("vision_start_token_id", FIRST_SPECIAL))
    high = min(cfg.llm.vocab_size, FIRST_SPECIAL, *media_ids)
    text = torch.randint(0, high, (prompt_tokens,), generator=torch.Generator().manual_seed(seed))
    ids = torch.cat([torch.tensor(media, dtype=torch.long), text])
    # Image files (their sizes in `images`) are decoded when served, inside the preprocessing stage.
    pictures = [] if image_files else [synthetic_image(w, h, seed=seed + i) for i, (w, h) in enumerate(images)]
    video = synthetic_video(video_frames, seed=seed) if video_frames else None
    return Request(pictures, video, ids.expand(batch, -1).contiguous(), True, preprocess, tuple(image_files))


def file_request(
    cfg: NVILAConfig,
    files: tuple[str, ...],
    prompt_tokens: int = 64,
    batch: int = 1,
    seed: int = 0,
    preprocess: str = "cpu",
) -> Request:
    """A request of image files, decoded when it is served (inside the preprocessing stage's time)."""
    ids = synthetic_prompt(cfg, len(files), False, prompt_tokens, seed)
    return Request([], None, ids.expand(batch, -1).contiguous(), True, preprocess, tuple(files))


def image_file_size(path: str) -> tuple[int, int]:
    """(width, height) of an image file, checked before it is served: a regular file (a FIFO would wait for a
    writer for ever), sides within MAX_SIDE (read from the header, before any pixel is decoded), and pixels
    that decode in full (a truncated JPEG, a PNG without image data). ValueError of one line otherwise."""
    if Path(path).exists() and not Path(path).is_file():
        raise ValueError(f"--image-file {path}: not a regular file")
    from PIL import ImageFile

    lenient, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False  # lmms-eval sets it True
    try:
        with Image.open(path) as im:
            width, height = im.size
            if max(width, height) <= MAX_SIDE:
                im.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:  # SyntaxError: PIL's broken header
        raise ValueError(f"--image-file {path}: not a readable image ({type(e).__name__}: {e})") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = lenient
    if max(width, height) > MAX_SIDE:
        raise ValueError(
            f"--image-file {path}: {width}x{height} is too large: each side must be at most {MAX_SIDE:,} px"
        )
    return width, height


def media_blocks(model, request: Request, section: Section = no_sections) -> list[torch.Tensor]:
    """preprocess -> vision -> projector: one embedding block per medium, separators included (a peer VLM's own)."""
    if getattr(model, "is_peer", False):
        return model.media_blocks(request, section)
    preprocess, vision, projector = MEDIA_STAGES
    with section(preprocess):
        if request.preprocess == "gpu":
            device = next(model.vision_tower.parameters()).device
            pixels = [decode_image(f, device) for f in request.image_files] or request.image_pixels
            media = preprocess_media_tensor(model.config, pixels, request.video_pixels, device)
        else:
            images = [Image.open(f).convert("RGB") for f in request.image_files] or request.images
            media = preprocess_media(model.config, images, request.video)
    with section(vision):
        features = model.encode_media(media)
    with section(projector):
        return model.project(features, media, request.temporal_pool)


def embed(model, request: Request, section: Section = no_sections) -> torch.Tensor:
    """The LLM's inputs_embeds of the whole request (media spliced into the prompt)."""
    return model.embed(request.input_ids, media_blocks(model, request, section))


def prefill(model, inputs_embeds: torch.Tensor, cache=None) -> tuple[torch.Tensor, object]:
    """(first token (B, 1), the filled KV cache): the LLM prefill and its greedy pick."""
    out = model.prefill(inputs_embeds, cache)
    return out.logits.argmax(-1, keepdim=True), out.cache


def first_token(model, request: Request, section: Section = no_sections, cache=None) -> tuple[torch.Tensor, object]:
    """Time to first token's work: the media stages, then the LLM prefill (embedding included)."""
    blocks = media_blocks(model, request, section)
    with section(LLM_PREFILL):
        return prefill(model, model.embed(request.input_ids, blocks), cache)


@torch.inference_mode()
def greedy_decode(
    model,
    token: torch.Tensor,
    cache,
    steps: int,
    section: Section = no_sections,
    eos: int | None = None,
    on_logits=None,
) -> torch.Tensor:
    """The decode loop: `steps` greedy steps after `token` (B, 1), each inside section("decode_step"); stops
    early only when `eos` is given and every row produced it. Returns the new ids (B, <= steps); `on_logits`, if
    given, is handed each step's logits (B, V)."""
    out = []
    for _ in range(steps):
        if eos is not None and bool((token == eos).all()):
            break
        with section(DECODE_STEP):
            logits = model.decode_step(token, cache)
            token = logits.argmax(-1, keepdim=True)
        if on_logits is not None:
            on_logits(logits)
        out.append(token)
    return torch.cat(out, dim=1) if out else token.new_empty((token.shape[0], 0))


@torch.inference_mode()
def generate(
    model,
    inputs_embeds: torch.Tensor,
    new_tokens: int,
    cache=None,
    eos: int | None = None,
    section: Section = no_sections,
) -> torch.Tensor:
    """Greedy generation of `new_tokens` ids (B, n): the prefill's token, then the decode loop. With `eos`,
    generation stops once every row produced it (the EOS id is kept); benchmarks pass none so every run
    decodes the same number of tokens."""
    if new_tokens < 1:
        raise ValueError(f"new_tokens must be >= 1, got {new_tokens}")
    with section(LLM_PREFILL):
        token, cache = prefill(model, inputs_embeds, cache)
    return torch.cat([token, greedy_decode(model, token, cache, new_tokens - 1, section, eos)], dim=1)


@torch.inference_mode()
def loglikelihood(model, blocks, context_ids: list[int], continuation_ids: list[int]) -> tuple[float, bool]:
    """(sum of log p(continuation | media, context), whether greedy decoding would produce it)."""
    if not continuation_ids:
        raise ValueError("empty continuation")
    ids = torch.tensor([context_ids + continuation_ids])
    logits = model.forward_logits(model.embed(ids, blocks))[0].float()
    n = len(continuation_ids)
    # Positions after media expansion: the continuation is the last n positions; position i predicts i + 1.
    preds = logits[-n - 1 : -1].log_softmax(-1)
    target = torch.tensor(continuation_ids, device=preds.device)
    logp = preds.gather(1, target[:, None]).sum().item()
    greedy = bool((preds.argmax(-1) == target).all())
    return logp, greedy
