"""The eager engine, the reference: one Python-driven forward per token (the pipeline's greedy_decode loop). The
other engines subclass it and change how the steps run (model/engines/__init__.py says how every engine is
driven)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..compiling import compile_media
from ..fast_vision import fast_vision_attention_kernel
from ..pipeline import Section, greedy_decode, no_sections, prefill
from ..stages import LLM_PREFILL
from ..vision import attention_kernel


@dataclass
class Engine:
    """The eager reference; subclasses change how the steps run. `note` says what happened that a reader of
    the figures must know (a fallback); `cache` is the last KV cache (for its size)."""

    model: object
    cache_kind: str = "dynamic"
    name: str = "eager"
    note: str | None = None
    cache: object = field(default=None, repr=False)
    # Encloses each CUDA graph capture of setup (stages.GRAPH_CAPTURE): a suite's one-time clock times them
    setup_section: Section = field(default=no_sections, repr=False)
    # (B, V) of generate's last decode step; the compiled engine's is its CUDA graph's buffer, rewritten by each replay
    last_logits: torch.Tensor | None = field(default=None, repr=False)

    @property
    def generate_prefill(self) -> str | None:
        """How `generate` runs its prefill, where that is not how this engine's `first_token` runs it (recorded:
        a decode record's prefill time is then not this engine's prefill figure)."""
        return None

    def setup(self, embeds: torch.Tensor, new_tokens: int) -> None:
        """One-time work before timing (compile, capture). The eager engine has none."""

    def setup_media(self) -> None:
        """Set the media stages this engine measures: compiled for `compiled`, plain for the others (they
        compile on their first run; run them once after this)."""
        compile_media(self.model, on=self.name == "compiled", on_fail=lambda reason: self._set_note("media", reason))

    def _set_note(self, part: str, text: str | None) -> None:
        self.note = "; ".join(n for n in (self.note, text) if n) or None

    def setup_prefill(self, embeds: torch.Tensor) -> None:
        """One-time work before timing `first_token` (the prefill suite)."""

    def prefill_attention(self) -> str | None:
        """The attention kernel of this engine's own prefill, where it has one (transformers' is its own)."""
        return None

    def vision_attention(self) -> str:
        """The vision tower's attention kernel as the media stages run now (after `setup_media`)."""
        if getattr(self.model, "is_peer", False):  # transformers' own tower: its attention implementation
            return self.model.vision_attention()
        tower = self.model.vision_tower
        return fast_vision_attention_kernel(tower) if self.model.vision_forward is not None else attention_kernel(tower)

    @torch.inference_mode()
    def first_token(self, embeds: torch.Tensor) -> torch.Tensor:
        """The LLM prefill of the whole context and its greedy pick (B, 1): the LLM's part of TTFT."""
        return prefill(self.model, embeds, self.model.new_cache(self.cache_kind, embeds.shape[1] + 1))[0]

    @torch.inference_mode()
    def generate(self, embeds: torch.Tensor, new_tokens: int, section: Section = no_sections) -> torch.Tensor:
        """Greedy ids (B, new_tokens): the prefill's token, then new_tokens - 1 decode steps, EOS ignored."""
        self.cache, self.last_logits = self.model.new_cache(self.cache_kind, embeds.shape[1] + new_tokens), None
        with section(LLM_PREFILL):
            token, self.cache = prefill(self.model, embeds, self.cache)
        steps = greedy_decode(
            self.model,
            token,
            self.cache,
            new_tokens - 1,
            section,
            on_logits=lambda logits: setattr(self, "last_logits", logits),
        )
        return torch.cat([token, steps], dim=1)
