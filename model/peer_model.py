"""Peer VLMs (model/peer_config.py) behind NVILAModel's surface, so the suites and engines run them as they run NVILA.
transformers' own classes do all the work, with random weights; nothing here re-implements a layer.

    Request --preprocess (the peer's own processor)--> pixels --vision (transformers' tower)-->
            --projector (Qwen: visual.merger; LLaVA-OV: multi_modal_projector + anyres packing)--> PeerBlocks
            --embed (masked_scatter at the placeholders)--> inputs_embeds --prefill / decode_step-->

The vision and projector sections are split by a forward pre-hook on the boundary module, so transformers'
`get_image_features` / `get_video_features` run whole. Qwen2-VL and Qwen2.5-VL place tokens by M-RoPE: `embed`
keeps the 3-D positions of transformers' `get_rope_index` for the prefill of those embeds; a later text token's
three positions are equal, its cache position plus the request's rope delta (`decode_step`).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import DynamicCache, StaticCache

from .nvila import _CACHE_KWARG, PrefillOutput, _default_dtype, check_attn_implementation
from .peer_config import PeerConfig
from .stages import PREPROCESS, PROJECTOR, VISION

# kind -> (config class, model class, PIL image processor, torchvision image processor, video processor)
_QWEN_PROCESSORS = ("Qwen2VLImageProcessorPil", "Qwen2VLImageProcessor", "Qwen2VLVideoProcessor")  # Qwen2.5-VL's too
_LLAVA_OV_PROCESSORS = tuple(f"LlavaOnevision{p}" for p in ("ImageProcessorPil", "ImageProcessor", "VideoProcessor"))
HF_CLASSES = {
    "qwen2-vl": ("Qwen2VLConfig", "Qwen2VLForConditionalGeneration", *_QWEN_PROCESSORS),
    "qwen2.5-vl": ("Qwen2_5_VLConfig", "Qwen2_5_VLForConditionalGeneration", *_QWEN_PROCESSORS),
    "llava-onevision": ("LlavaOnevisionConfig", "LlavaOnevisionForConditionalGeneration", *_LLAVA_OV_PROCESSORS),
}
MROPE_KINDS = ("qwen2-vl", "qwen2.5-vl")


def _transformers(name: str):
    import transformers

    return getattr(transformers, name)


def torchvision_missing(preprocess: str, video: bool) -> str | None:
    """Why a peer request cannot be preprocessed on this machine, or None. transformers' tensor image processors
    (`--preprocess gpu`) and its video processors run on torchvision."""
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        return None
    if preprocess == "gpu":
        return (
            "--preprocess gpu on a peer needs torchvision: transformers' tensor image processors run on it "
            "(install torchvision matching torch, or use --preprocess cpu)"
        )
    if video:
        return (
            "a peer's video needs torchvision: transformers' video processors (Qwen2VLVideoProcessor, "
            "LlavaOnevisionVideoProcessor) run on it; install torchvision matching torch"
        )
    return None


def check_peer_preprocess(preprocess: str, video: bool) -> None:
    """ValueError, before anything is measured, where the request's processors cannot run here."""
    if preprocess not in ("cpu", "gpu"):
        raise ValueError(f"unknown preprocess {preprocess!r}; known: cpu, gpu")
    reason = torchvision_missing(preprocess, video)
    if reason:
        raise ValueError(reason)


def hf_config(cfg: PeerConfig, attn_implementation: str = "sdpa"):
    """transformers' config of the peer, from the published config.json values as they are."""
    config = _transformers(HF_CLASSES[cfg.kind][0])(**{k: v for k, v in cfg.hf_config.items() if k != "model_type"})
    config._attn_implementation = attn_implementation  # the setter reaches the vision and text sub-configs
    return config


def peer_processor(cfg: PeerConfig, modality: str, preprocess: str = "cpu"):
    """transformers' processor of `modality` ("image" / "video") with the peer's settings; for "gpu" the
    torchvision image processor (the video processors are torchvision's anyway)."""
    check_peer_preprocess(preprocess, modality == "video")
    names = HF_CLASSES[cfg.kind][2:]
    name = names[2] if modality == "video" else names[0 if preprocess == "cpu" else 1]
    settings = cfg.video_processor if modality == "video" else cfg.image_processor
    if modality == "video" and cfg.kind in MROPE_KINDS:
        settings = settings | {"cap_pixels_per_frame": False}  # the published behaviour (transformers warns)
    return _transformers(name)(**settings)


class PeerBlocks(list):
    """One (positions, H) feature block per medium, images first, then the video; with what M-RoPE needs."""

    def __init__(self, blocks=(), modalities=(), image_grid_thw=None, video_grid_thw=None):
        super().__init__(blocks)
        self.modalities = tuple(modalities)  # "image" / "video" per block
        self.image_grid_thw, self.video_grid_thw = image_grid_thw, video_grid_thw  # Qwen's (t, h, w) patch grids


@dataclass
class _Context:
    """The last embedded request's M-RoPE placement, for the prefill (and generate) of embeds of its shape."""

    shape: tuple[int, int]
    positions: torch.Tensor  # (3, B, L)
    deltas: torch.Tensor  # (B, 1): a text token's position minus its cache position
    generate_kwargs: dict = field(default_factory=dict)


class PeerModel(nn.Module):
    """A peer VLM (`hf`, transformers' model) with NVILAModel's surface: media stages, embed, prefill, decode_step,
    new_cache, forward_logits. `llm` is what the engines drive: for LLaVA-OneVision a Qwen2ForCausalLM sharing the
    model's language model and LM head (so model/fast_llm.py's decode step runs it); for Qwen, the whole model,
    whose `generate` computes M-RoPE from `generate_kwargs`. Qwen's M-RoPE placement is the last `embed`'s: embeds of
    its (batch, length) get its positions, others a text-only context's.

    Not NVILAModel's: `training_loss` / `labels` (a peer trains through transformers' forward with labels:
    model/peer_training.py), and `llm` of a Qwen peer is the whole VLM, vision tower included (quantize its
    `hf.model.language_model` and `hf.lm_head`)."""

    is_peer = True

    def __init__(self, cfg: PeerConfig, hf: nn.Module):
        super().__init__()
        self.config, self.hf = cfg, hf
        self.mrope = cfg.kind in MROPE_KINDS
        self.text_config = hf.config.get_text_config()
        self.vision_forward = None  # NVILA's compiled media hook: a peer's media stages run transformers' own
        self._context: _Context | None = None
        self._processors: dict = {}
        if self.mrope:
            llm = hf
        else:
            from transformers import Qwen2ForCausalLM

            with torch.device("meta"):  # shapes only: its two modules are then the model's own (no copy)
                llm = Qwen2ForCausalLM(self.text_config)
            llm.model, llm.lm_head = hf.model.language_model, hf.lm_head
        self._llm = [llm.eval()]  # a list keeps it out of the module tree: its modules are registered once, under hf

    @property
    def llm(self) -> nn.Module:
        return self._llm[0]

    @property
    def boundary(self) -> nn.Module:
        """The first module of the projector stage: Qwen's patch merger, LLaVA-OneVision's multi_modal_projector."""
        return self.hf.model.visual.merger if self.mrope else self.hf.model.multi_modal_projector

    @property
    def device(self) -> torch.device:
        return self.hf.lm_head.weight.device

    # ---- media stages ---------------------------------------------------------------------------------------------
    def processor(self, modality: str, preprocess: str = "cpu"):
        """`peer_processor` of this peer, made once."""
        key = (modality, preprocess)
        if key not in self._processors:
            self._processors[key] = peer_processor(self.config, modality, preprocess)
        return self._processors[key]

    def preprocess(self, request) -> list[tuple[str, dict]]:
        """(modality, the processor's tensors) per processor call: the images in one call, then the video."""
        gpu = request.preprocess == "gpu"
        device = {"device": self.device} if gpu else {}
        out = []
        if request.images or request.image_files:
            if gpu:
                from .preprocess_tensor import decode_image

                pixels = [decode_image(f, self.device) for f in request.image_files] or request.image_pixels
                images = [p.permute(2, 0, 1) for p in pixels]  # (H, W, 3) -> (3, H, W)
            else:
                from PIL import Image

                images = [Image.open(f).convert("RGB") for f in request.image_files] or request.images
            processor = self.processor("image", request.preprocess)
            # One sample of several images, as a multi-image prompt is (LLaVA-OV then gives each one view, no crops).
            images = [images] if len(images) > 1 and not self.mrope else images
            out.append(("image", processor(images=images, return_tensors="pt", **device)))
        if request.video:
            frames = torch.stack(request.video_pixels).permute(0, 3, 1, 2) if gpu else request.video
            processor = self.processor("video", request.preprocess)
            out.append(("video", processor(videos=[frames], return_tensors="pt", **device)))
        return out

    @contextlib.contextmanager
    def _vision_then_projector(self, section):
        """section(VISION) until the boundary module starts, then section(PROJECTOR) until the block ends."""
        vision, projector = section(VISION), []
        vision.__enter__()

        def hook(module, args):
            if not projector:  # the first call ends the vision tower's part
                vision.__exit__(None, None, None)
                projector.append(section(PROJECTOR))
                projector[0].__enter__()

        handle = self.boundary.register_forward_pre_hook(hook)
        try:
            yield
        finally:
            handle.remove()
        if not projector:
            raise RuntimeError(f"{type(self.boundary).__name__} never ran: the vision / projector split is lost")
        projector[0].__exit__(None, None, None)

    def features(self, modality: str, inputs: dict) -> list[torch.Tensor]:
        """transformers' get_image_features / get_video_features: one (positions, H) block per image or video."""
        model, dev = self.hf.model, self.device
        pixels = inputs["pixel_values" if modality == "image" else "pixel_values_videos"]
        pixels = pixels.to(device=dev, dtype=self.hf.lm_head.weight.dtype)  # the model's dtype, as its pipelines cast
        if modality == "image" and self.mrope:
            out = model.get_image_features(pixels, inputs["image_grid_thw"].to(dev))
        elif modality == "image":
            sizes = inputs["image_sizes"].to(dev)
            out = model.get_image_features(pixels, sizes, batch_num_images=inputs["batch_num_images"])
        elif self.mrope:
            out = model.get_video_features(pixels, inputs["video_grid_thw"].to(dev))
        else:
            video = model.get_video_features(pixels).pooler_output
            vision = self.hf.config.vision_config
            side = math.ceil(vision.image_size // vision.patch_size / 2)  # the 2x2-pooled map's side
            if video.shape[1] == pixels.shape[1] * side * side:  # transformers 5.17 appends the newline in forward
                video = torch.cat([video, model.image_newline.expand(video.shape[0], 1, -1).to(video.dtype)], dim=1)
            return list(video)
        return list(out.pooler_output)

    def media_blocks(self, request, section=None) -> PeerBlocks:
        """preprocess -> vision -> projector, each inside `section(name)` (pipeline.media_blocks calls this)."""
        section = section or (lambda name: contextlib.nullcontext())
        if request.images and request.video:
            raise ValueError(
                "a peer request holds images or a video, not both: transformers runs their towers one "
                "after the other, which would time the vision and projector stages twice"
            )
        with section(PREPROCESS):
            calls = self.preprocess(request)
        blocks = PeerBlocks()
        for modality, inputs in calls:
            with self._vision_then_projector(section):
                found = self.features(modality, inputs)
            blocks += found
            blocks.modalities += (modality,) * len(found)
            setattr(blocks, f"{modality}_grid_thw", inputs.get(f"{modality}_grid_thw"))
        return blocks

    # ---- token assembly -------------------------------------------------------------------------------------------
    def embed(self, input_ids: torch.Tensor, blocks: PeerBlocks) -> torch.Tensor:
        """Prompt ids (B, L) with the expanded placeholders -> inputs_embeds (B, L, H): every row gets the same
        blocks, placed as transformers does (masked_scatter). For Qwen the M-RoPE positions are kept for the prefill."""
        if blocks and not isinstance(blocks, PeerBlocks):
            raise ValueError("a peer embeds PeerBlocks (from media_blocks), not a plain list of blocks")
        ids = input_ids.cpu()  # the checks and positions read the ids on the host, where a request's are
        embeds = self.hf.get_input_embeddings()(ids.to(self.device))
        modalities = getattr(blocks, "modalities", ())
        for modality, token in (("image", self.config.image_token_id), ("video", self.config.video_token_id)):
            chunks = [b for b, m in zip(blocks, modalities) if m == modality]
            mask, rows = ids == token, sum(b.shape[0] for b in chunks)
            counts = mask.sum(dim=1).tolist()
            if any(c != rows for c in counts):
                raise ValueError(
                    f"prompt has {counts} {modality} placeholders per row, the {modality} blocks {rows} positions"
                )
            if rows:
                source = torch.cat(chunks).to(embeds.dtype).repeat(ids.shape[0], 1)
                embeds = embeds.masked_scatter(mask[..., None].to(self.device), source)
        if self.mrope:
            self._context = self._placement(ids, blocks)
        return embeds

    def _placement(self, ids: torch.Tensor, blocks) -> _Context:
        """transformers' get_rope_index over the prompt (every row the same media), and generate's kwargs."""
        types = torch.zeros_like(ids, dtype=torch.int)  # transformers' mm_token_type_ids: text 0, image 1, video 2
        types[ids == self.config.image_token_id] = 1
        types[ids == self.config.video_token_id] = 2
        grids = {f"{m}_grid_thw": getattr(blocks, f"{m}_grid_thw", None) for m in ("image", "video")}
        grids = {k: g.cpu().repeat(ids.shape[0], 1) for k, g in grids.items() if g is not None}
        positions, deltas = self.hf.model.get_rope_index(ids, mm_token_type_ids=types, **grids)
        kwargs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "mm_token_type_ids": types, **grids}

        def to(t):
            return t.to(self.device)

        return _Context(tuple(ids.shape), to(positions), to(deltas), {k: to(v) for k, v in kwargs.items()})

    def _positions(self, embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(3, B, L) positions and (B, 1) deltas of `embeds`: the last embedded request's where the shape is its,
        else a text-only context's (all three positions the token's index)."""
        batch, length = embeds.shape[:2]
        if self._context is not None and self._context.shape == (batch, length):
            return self._context.positions, self._context.deltas
        positions = torch.arange(length, device=embeds.device).view(1, 1, -1).expand(3, batch, -1)
        return positions, torch.zeros(batch, 1, dtype=torch.long, device=embeds.device)

    def rope_deltas(self, embeds: torch.Tensor) -> torch.Tensor | None:
        """(B, 1): how far a text token's M-RoPE position runs from its cache position after `embeds` (None: no
        M-RoPE). The compiled engine's decode step adds it."""
        return self._positions(embeds)[1] if self.mrope else None

    def generate_kwargs(self, embeds: torch.Tensor) -> dict:
        """What transformers' `generate(inputs_embeds=embeds, ...)` needs besides the embeds (HFEngine): for Qwen,
        the prompt ids, grids and token types of the request they came from, so it computes M-RoPE itself."""
        ctx = self._context
        mine = self.mrope and ctx is not None and ctx.shape == tuple(embeds.shape[:2])
        return dict(ctx.generate_kwargs) if mine else {}

    # ---- LLM --------------------------------------------------------------------------------------------------------
    def new_cache(self, kind: str = "dynamic", max_len: int | None = None):
        """As NVILAModel.new_cache: "dynamic" grows per step; "static" preallocates `max_len` positions."""
        if kind == "dynamic":
            return DynamicCache(config=self.text_config)
        if kind == "static":
            if not max_len or max_len < 1:
                raise ValueError("a static cache needs max_len (prompt + new tokens)")
            return StaticCache(config=self.text_config, max_cache_len=max_len)
        raise ValueError(f"unknown cache kind {kind!r}; known: dynamic, static")

    @torch.inference_mode()
    def prefill(self, inputs_embeds: torch.Tensor, cache=None, all_logits: bool = False) -> PrefillOutput:
        """One forward over the prompt into `cache` (a new DynamicCache by default); the last position's logits
        unless `all_logits`."""
        cache = self.new_cache() if cache is None else cache
        extra = {}
        if self.mrope:
            positions, cache.peer_rope_deltas = self._positions(inputs_embeds)  # the cache keeps decode_step's offset
            extra["position_ids"] = positions
        extra[_CACHE_KWARG] = cache
        out = self.llm(inputs_embeds=inputs_embeds, use_cache=True, logits_to_keep=0 if all_logits else 1, **extra)
        return PrefillOutput(out.logits if all_logits else out.logits[:, -1], cache)

    @torch.inference_mode()
    def decode_step(self, token_ids: torch.Tensor, cache) -> torch.Tensor:
        """Next-token logits (B, V) for `token_ids` (B, 1) at the cache's current length; extends the cache."""
        extra = {}
        if self.mrope:  # a text token: its three M-RoPE positions are its cache position + the request's delta
            deltas = getattr(cache, "peer_rope_deltas", 0)
            position = torch.full_like(token_ids, cache.get_seq_length()) + deltas
            extra["position_ids"] = position[None].expand(3, -1, -1)
        out = self.llm(input_ids=token_ids, use_cache=True, logits_to_keep=1, **{_CACHE_KWARG: cache}, **extra)
        return out.logits[:, -1]

    @torch.inference_mode()
    def forward_logits(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        """Logits at every position from one cache-free forward."""
        extra = {"position_ids": self._positions(inputs_embeds)[0]} if self.mrope else {}
        return self.llm(inputs_embeds=inputs_embeds, use_cache=False, **extra).logits

    def vision_attention(self) -> str:
        """The vision tower's attention implementation (transformers' own forward)."""
        return self.hf.config.vision_config._attn_implementation

    def component_parameters(self) -> dict[str, list[torch.Tensor]]:
        """Parameters per component as they are now (quantized ones included): the vision tower, the projector
        (Qwen's merger, inside `visual`; LLaVA-OV's MLP and image newline) and the LLM with its LM head."""
        model = self.hf.model
        projector = list(self.boundary.parameters()) + ([] if self.mrope else [model.image_newline])
        mine = {id(p) for p in projector}
        tower = model.visual if self.mrope else model.vision_tower
        llm = {id(p): p for m in (model.language_model, self.hf.lm_head) for p in m.parameters()}  # a tied head once
        vision = [p for p in tower.parameters() if id(p) not in mine]
        return {"vision": vision, "projector": projector, "llm": list(llm.values())}

    def param_counts(self) -> dict[str, int]:
        """Parameters per component (vision tower, projector / merger, LLM with its LM head)."""
        parts = {c: sum(p.numel() for p in ps) for c, ps in self.component_parameters().items()}
        return parts | {"total": sum(parts.values())}


def build_peer(
    cfg: PeerConfig,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    attn_implementation: str = "sdpa",
    seed: int | None = 0,
) -> PeerModel:
    """transformers' class of `cfg` from its published config, random weights, created on `device` in `dtype`,
    eval mode (device="meta": shapes only)."""
    check_attn_implementation(attn_implementation)
    if seed is not None:
        torch.manual_seed(seed)
    config = hf_config(cfg, attn_implementation)
    with torch.device(device), _default_dtype(dtype):
        hf = _transformers(HF_CLASSES[cfg.kind][1])(config)
    return PeerModel(cfg, hf.eval()).eval()
