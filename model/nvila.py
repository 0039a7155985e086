"""The NVILA / VILA1.5 reference model with separately timeable stages.

    pixels --encode_media--> ViT features --project--> embedding blocks --embed--> inputs_embeds
           --prefill--> (logits, KV cache) --decode_step--> ... (pipeline.py chains them)

The media stages stay differentiable (the training suites backpropagate through them); wrap inference
calls in `torch.inference_mode()`. The LLM inference stages (prefill, decode_step) run in inference
mode themselves.

Media assembly follows upstream `LlavaMetaForCausalLM._embed` (docs/reference.md#prompt-and-token-assembly): each media
placeholder id in the prompt
is replaced by its block (visual tokens + "\\n" separator embeddings); placeholder ids are masked before the
embedding lookup, never embedded.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, StaticCache

from .config import LLMConfig, NVILAConfig, check_attn_implementation
from .preprocess import ImageTiles, MediaInputs, VideoFrames
from .projector import MultimodalProjector
from .stages import LLM_FORWARD, PROJECTOR, VISION
from .tokens import positions_per_block, temporal_pool_size
from .vision import S2Merge, siglip_config, vision_features


def llm_hf_config(cfg: LLMConfig, attn_implementation: str = "sdpa"):
    common = dict(
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        intermediate_size=cfg.intermediate_size,
        vocab_size=cfg.vocab_size,
        rms_norm_eps=cfg.rms_norm_eps,
        tie_word_embeddings=cfg.tie_word_embeddings,
        max_position_embeddings=cfg.max_position_embeddings,
        bos_token_id=cfg.bos_token_id,
        eos_token_id=cfg.eos_token_id,
        hidden_act="silu",
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
    )
    if cfg.arch == "qwen2":
        hf = Qwen2Config(**common, use_sliding_window=False)
    else:
        hf = LlamaConfig(**common, attention_bias=False, mlp_bias=False)
    hf._attn_implementation = attn_implementation
    return hf


IGNORE_INDEX = -100  # label of positions that carry no loss (media embeddings)
LLM_CLASSES = {"qwen2": Qwen2ForCausalLM, "llama": LlamaForCausalLM}
# transformers renamed `past_key_values` to `cache` (5.2x); pass whichever this release takes.
_CACHE_KWARG = "cache" if "cache" in inspect.signature(Qwen2ForCausalLM.forward).parameters else "past_key_values"


@dataclass
class _Joined:
    """Several requests' media as one ViT batch (encode_media reads only `items` and `all_pixels`)."""

    items: list

    def all_pixels(self) -> torch.Tensor:
        return torch.cat([m.pixels for m in self.items], dim=0)


@dataclass
class PrefillOutput:
    logits: torch.Tensor  # (B, V) at the last position, or (B, L, V) with all_logits=True
    cache: object  # a transformers Cache holding the prompt's keys and values


class NVILAModel(nn.Module):
    """Vision tower + projector + LLM, built from an `NVILAConfig` with random weights (see `load_checkpoint`
    for real ones)."""

    def __init__(self, cfg: NVILAConfig, attn_implementation: str = "sdpa"):
        super().__init__()
        check_attn_implementation(attn_implementation)
        self.config = cfg
        self.attn_implementation = attn_implementation
        from transformers import SiglipVisionModel

        self.vision_tower = SiglipVisionModel(siglip_config(cfg.vision, attn_implementation))
        self.vision_forward = (
            None  # pixels -> features in place of vision_features (the compiled engine's, compiling.compile_media)
        )
        self.s2_merge = S2Merge()  # no parameters: the state dict is upstream's
        self.mm_projector = MultimodalProjector(cfg.projector)
        self.llm = LLM_CLASSES[cfg.llm.arch](llm_hf_config(cfg.llm, attn_implementation))

    # ---- stage 1: vision tower -------------------------------------------------------------------------
    def encode_media(self, media: MediaInputs, max_batch: int | None = None) -> list[torch.Tensor]:
        """Run the ViT over every tile and frame of the request, in one batch or in chunks of `max_batch`
        tiles (long videos on small GPUs); features per medium (T, patches, C)."""
        p = next(self.vision_tower.parameters())
        pixels = media.all_pixels().to(device=p.device, dtype=p.dtype)
        chunks = pixels.split(max_batch) if max_batch else [pixels]
        used = self.config.vision.layers_used
        forward = self.vision_forward or (lambda c: vision_features(self.vision_tower, c, used))
        feats = torch.cat([forward(c) for c in chunks])
        return list(feats.split([m.pixels.shape[0] for m in media.items]))

    # ---- stage 2: projector (+ S2 merge, TSP, separators) -------------------------------------------
    def project(
        self, features: list[torch.Tensor], media: MediaInputs, temporal_pool: bool = True
    ) -> list[torch.Tensor]:
        """ViT features -> one (positions, H) embedding block per medium, separators included."""
        blocks = []
        for feats, item in zip(features, media.items):
            if isinstance(item, ImageTiles):
                blocks.append(self._image_block(feats, item))
            else:
                blocks.append(self._video_block(feats, item, temporal_pool))
        return blocks

    def _feature_maps(self, feats: torch.Tensor) -> torch.Tensor:
        """(T, g*g, C) -> (T, g, g, C * scales); a non-tiled image on an S2 model repeats its single-scale
        map once per scale ([f|f|f], upstream `merge_features_for_dynamic_s2`)."""
        g = self.config.vision.grid
        maps = feats.view(feats.shape[0], g, g, -1)
        repeat = self.config.projector.mm_hidden_size // maps.shape[-1]
        return maps.repeat(1, 1, 1, repeat) if repeat > 1 else maps

    def _image_block(self, feats: torch.Tensor, item: ImageTiles) -> torch.Tensor:
        layout = item.layout
        if layout.mode == "dynamic_s2":
            # STC on the whole merged map equals STC per 32x32 block (windows never cross block edges).
            tokens = self.mm_projector(self.s2_merge(feats, layout))[0]
            return torch.cat([tokens, self._newlines(int(self.config.media.separator))])
        tiles = self.mm_projector(self._feature_maps(feats))  # (tiles, tokens, H)
        extra = positions_per_block(self.config, layout) - tiles.shape[1]  # separator (+ Lite "\n" text)
        if extra:
            tiles = torch.cat([tiles, self._newlines(extra).expand(tiles.shape[0], -1, -1)], dim=1)
        return tiles.flatten(0, 1)

    def _video_block(self, feats: torch.Tensor, item: VideoFrames, temporal_pool: bool) -> torch.Tensor:
        tokens = self.mm_projector(self._feature_maps(feats))  # (frames, tokens, H)
        pool = temporal_pool_size(self.config, tokens.shape[0], temporal_pool)
        # TSP: average non-overlapping (frames x rows x cols) groups, after the projector
        # (docs/reference.md#video-and-temporal-pooling-tsp)
        if pool:
            pt, ph, pw = pool
            n, t, h = tokens.shape
            s = round(t**0.5)
            tokens = tokens.view(n // pt, pt, s // ph, ph, s // pw, pw, h).mean(dim=(1, 3, 5)).flatten(1, 2)
        if self.config.media.separator:
            tokens = torch.cat([tokens, self._newlines(1).expand(tokens.shape[0], -1, -1)], dim=1)
        return tokens.flatten(0, 1)

    def _newlines(self, count: int) -> torch.Tensor:
        """`count` copies of the LLM input embedding of "\\n" (the media separator), shape (count, H)."""
        ids = torch.full((count,), self.config.llm.newline_token_id, device=self.llm.device)
        return self.llm.get_input_embeddings()(ids)

    # ---- stage 3: token assembly ---------------------------------------------------------------------
    def embed(self, input_ids: torch.Tensor, blocks: list[torch.Tensor]) -> torch.Tensor:
        """Prompt ids (B, L) with one placeholder per medium -> inputs_embeds (B, L', H); every row gets the
        same media blocks, in order."""
        media = self.config.media
        # The checks and cuts read the ids on the host (where a request's are): asked of device tensors they
        # would stall the host until the media stages finish, leaving the GPU idle while it then launches the prefill.
        input_ids = input_ids.cpu()
        is_media = (input_ids == media.image_token_id) | (input_ids == media.video_token_id)
        counts = is_media.sum(dim=1).tolist()
        if any(c != len(blocks) for c in counts):
            raise ValueError(
                f"prompt has {counts} media placeholders per row but {len(blocks)} media blocks were given"
            )
        is_video = input_ids == media.video_token_id
        if bool((is_video.cummax(dim=1).values & (input_ids == media.image_token_id)).any()):
            raise ValueError(
                "an image placeholder follows the video placeholder: blocks come images first, then the video"
            )
        text_ids = input_ids.masked_fill(is_media, 0)
        if self.llm.device.type == "cuda":  # pinned, so the copy waits for nothing on the host either
            text_ids = text_ids.pin_memory()
        text = self.llm.get_input_embeddings()(text_ids.to(self.llm.device, non_blocking=True))
        rows = []
        for row_text, row_media in zip(text, is_media):
            cut = [-1, *row_media.nonzero().flatten().tolist(), row_text.shape[0]]
            parts = [row_text[cut[0] + 1 : cut[1]]]
            for i, block in enumerate(blocks):
                parts += [block.to(row_text.dtype), row_text[cut[i + 1] + 1 : cut[i + 2]]]
            rows.append(torch.cat(parts))
        return torch.stack(rows)

    def labels(self, input_ids: torch.Tensor, blocks: list[torch.Tensor]) -> torch.Tensor:
        """Training labels aligned with `embed(input_ids, blocks)`: text tokens predict themselves (the LLM
        shifts them), media positions are -100 (ignored), as in VILA's supervised stages."""
        media = self.config.media
        input_ids = input_ids.to(self.llm.device)
        is_media = (input_ids == media.image_token_id) | (input_ids == media.video_token_id)
        rows = []
        for row, row_media in zip(input_ids, is_media):
            cut = [-1, *row_media.nonzero().flatten().tolist(), row.shape[0]]
            parts = [row[cut[0] + 1 : cut[1]]]
            for i, block in enumerate(blocks):
                parts += [row.new_full((block.shape[0],), IGNORE_INDEX), row[cut[i + 1] + 1 : cut[i + 2]]]
            rows.append(torch.cat(parts))
        return torch.stack(rows)

    def training_loss(
        self,
        media: MediaInputs | list[MediaInputs],
        input_ids: torch.Tensor,
        temporal_pool: bool = True,
        answer_len: int | None = None,
        section=None,
    ) -> torch.Tensor:
        """Mean next-token cross-entropy of the text tokens, through every stage with autograd on: the
        forward pass of a training step (which parts learn is the caller's choice of requires_grad). Each
        stage runs inside `section(name)` when given (vision, projector, llm_forward; see pipeline.py).

        `media` is one request's media shared by every row, or one per row (a real micro-batch: each sample
        has its own images, and the vision tower runs over all of them in one batch). `answer_len`: only the
        last that many positions carry loss (supervised fine-tuning on the answer, not the prompt)."""
        section = section or (lambda name: contextlib.nullcontext())
        per_row = media if isinstance(media, list) else [media] * input_ids.shape[0]
        if len(per_row) != input_ids.shape[0]:
            raise ValueError(f"{len(per_row)} media for {input_ids.shape[0]} rows")
        shared = not isinstance(media, list)
        items = list(media.items) if shared else [item for m in per_row for item in m.items]
        with section(VISION):  # every tile and frame of the batch through the ViT at once
            feats = self.encode_media(_Joined(items)) if items else []
        with section(PROJECTOR):
            if shared:
                blocks = self.project(feats, media, temporal_pool)
                embeds, labels = self.embed(input_ids, blocks), self.labels(input_ids, blocks)
            else:
                embeds, labels = [], []
                for row, m in zip(input_ids, per_row):
                    blocks = self.project(self._reorder(feats, items, m), m, temporal_pool)
                    embeds.append(self.embed(row[None], blocks))
                    labels.append(self.labels(row[None], blocks))
                embeds, labels = torch.cat(embeds), torch.cat(labels)
        if answer_len is not None:
            labels[:, : labels.shape[1] - answer_len] = IGNORE_INDEX
        with section(LLM_FORWARD):
            return self.llm(inputs_embeds=embeds, labels=labels, use_cache=False).loss

    @staticmethod
    def _reorder(feats: list[torch.Tensor], items: list, media: MediaInputs) -> list[torch.Tensor]:
        """The features of `media`'s items, picked out of a joined batch by identity."""
        index = {id(item): i for i, item in enumerate(items)}
        return [feats[index[id(item)]] for item in media.items]

    # ---- stage 4: LLM ------------------------------------------------------------------------------------
    def new_cache(self, kind: str = "dynamic", max_len: int | None = None):
        """A KV cache for `prefill`: "dynamic" grows per step; "static" preallocates `max_len` positions
        (transformers StaticCache, the torch.compile-friendly path)."""
        if kind == "dynamic":
            return DynamicCache(config=self.llm.config)
        if kind == "static":
            if not max_len or max_len < 1:
                raise ValueError("a static cache needs max_len (prompt + new tokens)")
            return StaticCache(config=self.llm.config, max_cache_len=max_len)
        raise ValueError(f"unknown cache kind {kind!r}; known: dynamic, static")

    @torch.inference_mode()
    def prefill(self, inputs_embeds: torch.Tensor, cache=None, all_logits: bool = False) -> PrefillOutput:
        """One forward over the whole prompt; fills `cache` (a new DynamicCache by default). Logits for the
        last position only unless `all_logits` (the LM head over every position is wasted work)."""
        cache = self.new_cache() if cache is None else cache
        out = self.llm(
            inputs_embeds=inputs_embeds, use_cache=True, logits_to_keep=0 if all_logits else 1, **{_CACHE_KWARG: cache}
        )
        return PrefillOutput(out.logits if all_logits else out.logits[:, -1], cache)

    @torch.inference_mode()
    def decode_step(self, token_ids: torch.Tensor, cache) -> torch.Tensor:
        """Next-token logits (B, V) for `token_ids` (B, 1) at the cache's current length; extends the cache."""
        out = self.llm(input_ids=token_ids, use_cache=True, logits_to_keep=1, **{_CACHE_KWARG: cache})
        return out.logits[:, -1]

    @torch.inference_mode()
    def forward_logits(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        """Logits at every position from one cache-free forward (the reference for cache correctness)."""
        return self.llm(inputs_embeds=inputs_embeds, use_cache=False).logits

    def param_counts(self) -> dict[str, int]:
        """Parameters per component; tied embeddings are counted once."""
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731 (parameters() dedups ties)
        parts = {"vision": count(self.vision_tower), "projector": count(self.mm_projector), "llm": count(self.llm)}
        return parts | {"total": sum(parts.values())}


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def build_model(
    cfg: NVILAConfig,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    attn_implementation: str = "sdpa",
    seed: int | None = 0,
) -> NVILAModel:
    """Random-weight model created directly on `device` in `dtype` (no fp32 copy of an 8B model on the
    host). device="meta" builds shapes only, for parameter counts. A peer VLM's config builds the peer
    (model/peer_model.py), so every suite serves both."""
    if getattr(cfg, "family", None) == "peer":
        from .peer_model import build_peer

        return build_peer(cfg, dtype, device, attn_implementation, seed)
    if seed is not None:
        torch.manual_seed(seed)
    with torch.device(device), _default_dtype(dtype):
        model = NVILAModel(cfg, attn_implementation)
    return model.eval()
