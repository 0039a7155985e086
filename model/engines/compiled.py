"""The compiled engine: static KV cache; the whole decode step (LLM forward + greedy argmax + writing the id) is
captured once as a CUDA graph and replayed per token: no Python, no host sync per token, the ids are read once at
the end. The forward is torch.compile'd first (on CPU: compiled only, no graph). A batch or context it cannot
capture falls back to eager, with a note.

For Qwen2-VL / Qwen2.5-VL (M-RoPE) the decode step adds the request's rope offset to its positions, and the
prefill is transformers' own forward into the static cache (model/fast_llm.py's prefill has no 3-D positions; the
note says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..compiling import CapturedPrefill, capture, compiled
from ..fast_llm import FastDecoder, cache_length, default_attention, prefill_attention_kernel
from ..pipeline import Section, no_sections, prefill
from ..stages import DECODE_STEP, LLM_PREFILL
from .eager import Engine

_WARMUP = 3  # eager runs of the decode step before its capture (compile, cuBLAS workspaces)
# Failures that running another way would not cure, or would hide: they end the point, whose record says why.
_FATAL = tuple(e for e in (torch.OutOfMemoryError, getattr(torch._dynamo.exc, "FailOnRecompileLimitHit", None)) if e)


@dataclass
class CompiledEngine(Engine):
    """Static cache + compiled decode step + (on CUDA) the step as one CUDA graph, replayed per token; the
    prefill is model/fast_llm.py's, compiled, and captured as a graph up to `prefill_graph_tokens`.

    `attention` picks the decode step: "flex" / "sdpa" run model/fast_llm.py's step (fused projections,
    the cache read once per KV head; auto: flex on CUDA, sdpa elsewhere), "transformers" compiles
    transformers' own forward (the first version, kept to compare against). `compile_mode` is inductor's
    (None: default; e.g. "max-autotune-no-cudagraphs"; "none": the step uncompiled)."""

    name: str = "compiled"
    cache_kind: str = "static"
    use_graph: bool = True  # CUDA only
    attention: str = "auto"
    compile_mode: str | None = None
    prefill_compile_mode: str | None = None
    prefill_graph_tokens: int = 2048  # batch x context above which the compiled prefill runs without a graph
    _graph: object = field(default=None, repr=False)
    _fill: CapturedPrefill | None = field(default=None, repr=False)  # generate's prefill (None: transformers' eager)
    _first: CapturedPrefill | None = field(default=None, repr=False)  # first_token's (None: eager)
    _prefill_shape: tuple | None = field(default=None, repr=False)
    _notes: dict = field(
        default_factory=lambda: dict.fromkeys(("media", "prefill", "decode prefill", "decode")), repr=False
    )
    _attention: str | None = field(default=None, repr=False)  # the decode step's, once set up
    _decode: object = field(default=None, repr=False)
    _logits: torch.Tensor | None = field(default=None, repr=False)  # the last step's (with a graph: its buffer)
    _shape: tuple | None = field(default=None, repr=False)

    def setup(self, embeds: torch.Tensor, new_tokens: int) -> None:
        """Compile the step and capture it for this batch and context (the first call of `generate` does it
        anyway; calling setup first keeps it out of the timed iterations). If a step cannot be captured the
        next one is tried (auto: flex, then sdpa), then eager; the note says which and why."""
        failed, self.last_logits = [], None  # (a buffer of the graph this replaces)
        for attention in self.attentions(embeds.device):
            try:
                with torch.inference_mode():
                    self._prepare(embeds, new_tokens, attention)
                self._set_note("decode", f"decode attention {attention}: {'; '.join(failed)}" if failed else None)
                return
            except _FATAL:
                raise
            except Exception as e:  # noqa: BLE001 - any failure to capture: try the next, and say so in the record
                failed.append(f"{attention} failed: {type(e).__name__}: {' '.join(str(e).split())[:160]}")
                # free the attempt's memory
                self._decode, self._graph, self._fill, self._logits, self.cache = None, None, None, None, None
                torch.compiler.reset()
        reason = failed[0].split(" failed: ", 1)[1] if len(failed) == 1 else "; ".join(failed)
        self._set_note("decode", f"fell back to eager: {reason}")

    @property
    def generate_prefill(self) -> str | None:  # first_token's path unless it fell back (the note says so)
        return "eager, into the static cache" if self._decode is not None and self._fill is None else None

    def _set_note(self, part: str, text: str | None) -> None:
        """The record's note: what the prefill's and the decode's setup each had to say."""
        self._notes[part] = text
        self.note = "; ".join(n for n in self._notes.values() if n) or None

    def attentions(self, device: torch.device) -> tuple[str, ...]:
        """The decode steps to try, in order."""
        if self.attention != "auto":
            return (self.attention,)
        return ("flex", "sdpa") if default_attention(device) == "flex" else ("sdpa",)

    def _prepare(self, embeds: torch.Tensor, new_tokens: int, attention: str) -> None:
        batch, context = embeds.shape[:2]
        self._shape, self._attention = (batch, context, new_tokens), attention
        # Whole KV blocks, and room for the warm-up steps below, which write past the context.
        self.cache = self.model.new_cache("static", cache_length(context + max(new_tokens, _WARMUP + 1)))
        self._fill = None if attention == "transformers" else self._build_prefill(self.cache, embeds, "decode prefill")
        token = self._prefill(embeds)  # allocates the cache's tensors where transformers' prefill runs
        self._token = token.clone()  # the graph's input and output: the id of the current position
        # The warm-up steps write ids 0.._WARMUP-1 too, so the buffer has room for them however few tokens are asked.
        self._ids = torch.zeros((batch, max(new_tokens, _WARMUP)), dtype=torch.long, device=token.device)
        self._step = torch.zeros((), dtype=torch.long, device=token.device)
        self._pos = torch.full((), context, dtype=torch.long, device=token.device)  # where the step writes
        self._decode = self._decode_function(attention, _rope_offset(self.model, embeds))
        if embeds.device.type == "cuda" and self.use_graph:
            # The graph's logits buffer holds each replay's logits (read after generate: last_logits)
            self._graph, self._logits = capture(self._run_step, _WARMUP, self.setup_section)
        else:
            for _ in range(_WARMUP):  # compiles it
                self._run_step()
        self._rewind(context)

    def _decode_function(self, attention: str, rope_offset: torch.Tensor | None = None):
        """A function of no arguments: the logits (B, V) of `_token` at `_pos`, extending the cache. `rope_offset`
        (B, 1): an M-RoPE model's text positions run this far from the cache positions (Qwen2-VL after its media)."""
        if attention == "transformers":
            forward = compiled(self.model.llm, self.compile_mode)
            kwargs = {_cache_kwarg(): self.cache}

            def step() -> torch.Tensor:
                if rope_offset is not None:  # M-RoPE: a text token's three positions, given (not the model's own state)
                    kwargs["position_ids"] = (self._pos + rope_offset)[None].expand(3, -1, -1)
                return forward(input_ids=self._token, use_cache=True, logits_to_keep=1, **kwargs).logits[:, -1]

            return step
        decoder = FastDecoder(self.model.llm, self.cache, self._pos, attention, rope_offset)
        step = compiled(decoder.__call__, self.compile_mode)
        return lambda: step(self._token)

    @torch.inference_mode()
    def _prefill(self, embeds: torch.Tensor) -> torch.Tensor:
        """The first token (B, 1), the prompt's K/V written into the static cache."""
        if self._fill is not None:
            return self._fill(embeds)
        return prefill(self.model, embeds, self.cache)[0]  # transformers' forward (a peer's with its M-RoPE positions)

    def _run_step(self) -> torch.Tensor:
        """One decode step on the static buffers: next id of `_token`, written back into it and into `_ids`;
        returns the step's logits (B, V)."""
        logits = self._decode()
        self._token.copy_(logits.argmax(-1, keepdim=True))
        self._ids.index_copy_(1, self._step.view(1), self._token)
        self._step.add_(1)
        self._pos.add_(1)
        return logits

    def _rewind(self, length: int) -> None:
        """Set the fill level to `length` (entries past it are stale and get overwritten). The cache's own
        counters matter only where transformers' forward runs (its eager prefill, the "transformers" step)."""
        if self._fill is None or self._attention == "transformers":
            for layer in self.cache.layers:
                layer.cumulative_length.fill_(length)
        self._pos.fill_(length)
        self._step.fill_(1)  # slot 0 holds the prefill's token

    @torch.inference_mode()
    def generate(self, embeds: torch.Tensor, new_tokens: int, section: Section = no_sections) -> torch.Tensor:
        if self._shape != (*embeds.shape[:2], new_tokens):
            self.setup(embeds, new_tokens)
        if self._decode is None:  # fell back
            return super().generate(embeds, new_tokens, section)
        with section(LLM_PREFILL):
            if self._fill is None:
                self._rewind(0)  # transformers' prefill writes from the cache's own counter
            self._token.copy_(self._prefill(embeds))
            self._ids[:, :1].copy_(self._token)
            self._rewind(embeds.shape[1])
        for _ in range(new_tokens - 1):
            with section(DECODE_STEP):
                if self._graph is not None:
                    self._graph.replay()
                else:
                    self._logits = self._run_step()
        self.last_logits = self._logits if new_tokens > 1 else None
        return self._ids[:, :new_tokens].clone()

    # ---- prefill: compiled per (batch, length), one CUDA graph up to prefill_graph_tokens ----------------
    def setup_prefill(self, embeds: torch.Tensor) -> None:
        """Compile the LLM prefill for this batch and length (and capture it) into a static cache of the
        prompt's length, as a server's KV pool would hold it."""
        self._prefill_shape = tuple(embeds.shape)
        self._first = self._build_prefill(self.model.new_cache("static", embeds.shape[1]), embeds, "prefill")

    def _build_prefill(self, cache, embeds: torch.Tensor, part: str) -> CapturedPrefill | None:
        """The fast prefill into `cache`, or None (transformers' eager prefill) with a note saying why; `part`:
        whose note ("prefill": first_token's, "decode prefill": generate's)."""
        if _rope_offset(self.model, embeds) is not None:
            whose = "the decode" if part == "decode prefill" else "LLM"
            self._set_note(
                part,
                f"{whose} prefill eager: model/fast_llm.py's prefill has no M-RoPE (the media's 3-D "
                "positions); transformers' forward runs it",
            )
            return None
        try:
            with torch.inference_mode():
                built = CapturedPrefill.build(
                    self.model.llm,
                    cache,
                    embeds,
                    self.prefill_graph_tokens,
                    self.prefill_compile_mode,
                    self.setup_section,
                )
        except _FATAL:
            raise
        except Exception as e:  # noqa: BLE001 - run the prefill eagerly, and say so in the record
            reason = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
            self._set_note(
                part, f"{'the decode' if part == 'decode prefill' else 'LLM'} prefill fell back to eager: {reason}"
            )
            return None
        self._set_note(part, None)
        return built

    def prefill_attention(self) -> str | None:
        """The SDPA backend of the compiled prefill set up last (fast_llm.prefill_attention_kernel)."""
        if self._first is None:
            return None
        weight = self.model.llm.lm_head.weight
        return prefill_attention_kernel(self.model.llm.config, self._prefill_shape[1], weight.dtype, weight.device)

    @torch.inference_mode()
    def first_token(self, embeds: torch.Tensor) -> torch.Tensor:
        if self._prefill_shape != tuple(embeds.shape):
            self.setup_prefill(embeds)
        if self._first is None:
            return prefill(self.model, embeds, self.model.new_cache("dynamic"))[0]
        return self._first(embeds)


def _rope_offset(model, embeds: torch.Tensor) -> torch.Tensor | None:
    """(B, 1) M-RoPE offset of a peer's text positions after `embeds` (PeerModel.rope_deltas); None without M-RoPE."""
    return model.rope_deltas(embeds) if hasattr(model, "rope_deltas") else None


def _cache_kwarg() -> str:
    from ..nvila import _CACHE_KWARG

    return _CACHE_KWARG
