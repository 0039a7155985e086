"""The transformers peers: `generate()` with its dynamic cache (hf-generate), and `generate(cache_implementation=
"static")` (hf-static), which compiles the forward itself on CUDA (the path transformers documents for fast
decoding). They hand a peer VLM's prompt ids, grids and token types to transformers, which places M-RoPE itself."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..pipeline import Section, no_sections
from ..stages import DECODE_STEP, LLM_PREFILL
from .eager import Engine


class _Lap:
    """A transformers logits processor that marks stage boundaries: it runs once per generated token, right
    after that token's forward, so the first call ends the prefill and each later one a decode step."""

    def __init__(self, section: Section):
        self.section, self.calls, self.open, self.scores = section, 0, None, None

    def begin(self) -> None:
        self.open = self.section(LLM_PREFILL)
        self.open.__enter__()

    def __call__(self, input_ids, scores):
        self.open.__exit__(None, None, None)
        self.calls += 1
        self.scores = scores  # the logits this token is chosen from (kept, not copied)
        self.open = self.section(DECODE_STEP)
        self.open.__enter__()
        return scores

    def end(self) -> None:  # the section opened after the last token has no step: leave it unrecorded
        self.open = None


@dataclass
class HFEngine(Engine):
    """transformers' own `generate()` on the same LLM and the same inputs_embeds (greedy, EOS ignored)."""

    name: str = "hf-generate"

    def setup(self, embeds: torch.Tensor, new_tokens: int) -> None:
        self.generate(embeds, new_tokens)  # hf-static compiles the forward on its first call

    def setup_prefill(self, embeds: torch.Tensor) -> None:
        self.first_token(embeds)

    def first_token(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.generate(embeds, 1)

    @torch.inference_mode()
    def generate(self, embeds: torch.Tensor, new_tokens: int, section: Section = no_sections) -> torch.Tensor:
        from transformers import GenerationConfig, LogitsProcessorList

        config = GenerationConfig(
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
            cache_implementation="static" if self.name == "hf-static" else None,
        )
        # A peer's prompt ids, grids and token types, where transformers computes M-RoPE from them (its vision tower
        # does not run: no pixels are passed)
        kwargs = self.model.generate_kwargs(embeds) if hasattr(self.model, "generate_kwargs") else {}
        lap = _Lap(section)
        lap.begin()
        ids = self.model.llm.generate(
            inputs_embeds=embeds, generation_config=config, logits_processor=LogitsProcessorList([lap]), **kwargs
        )
        lap.end()
        self.last_logits = lap.scores if new_tokens > 1 else None  # the prefill's are not a decode step's
        return ids[:, -new_tokens:]
