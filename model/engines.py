"""Inference engines: how the LLM's prefill and greedy decode run (docs/architecture.md#engines).

    eager        the reference: one Python-driven forward per token (the pipeline's greedy_decode loop)
    compiled     static KV cache; the whole decode step (LLM forward + greedy argmax + writing the id) is
                 captured once as a CUDA graph and replayed per token: no Python, no host sync per token,
                 the ids are read once at the end. The forward is torch.compile'd first (on CPU: compiled
                 only, no graph). A batch or context it cannot capture falls back to eager, with a note.
    hf-generate  peer: transformers `generate()` with its dynamic cache
    hf-static    peer: transformers `generate(cache_implementation="static")`, which compiles the forward
                 itself on CUDA (the path transformers documents for fast decoding)

Every engine is driven the same way, so a suite times them side by side on the same weights and context:
`setup(embeds, new_tokens)` does the one-time work (compile, graph capture; the caller times it), then each
`generate(embeds, new_tokens, section)` prefills and decodes, marking section("llm_prefill") once and
section("decode_step") per step. The model never times itself: `section` is the caller's clock.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

from .pipeline import Section, greedy_decode, no_sections, prefill
from .stages import DECODE_STEP, LLM_PREFILL

ENGINES = ("eager", "compiled", "hf-generate", "hf-static")
PEERS = ("hf-generate", "hf-static")


def default_engine(device: str) -> str:
    return "compiled" if str(device).startswith("cuda") else "eager"


def check_engine(name: str) -> None:
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")


@dataclass
class Engine:
    """The eager reference; subclasses change how the steps run. `note` says what happened that a reader of
    the figures must know (a fallback); `cache` is the last KV cache (for its size)."""

    model: object
    cache_kind: str = "dynamic"
    name: str = "eager"
    note: str | None = None
    cache: object = field(default=None, repr=False)

    def setup(self, embeds: torch.Tensor, new_tokens: int) -> None:
        """One-time work before timing (compile, capture). The eager engine has none."""

    def setup_media(self) -> None:
        """Set the media stages this engine measures: compiled for `compiled`, plain for the others (they
        compile on their first run; run them once after this)."""
        compile_media(self.model, on=self.name == "compiled")

    def setup_prefill(self, embeds: torch.Tensor) -> None:
        """One-time work before timing `first_token` (the prefill suite)."""

    @torch.inference_mode()
    def first_token(self, embeds: torch.Tensor) -> torch.Tensor:
        """The LLM prefill of the whole context and its greedy pick (B, 1): the LLM's part of TTFT."""
        return prefill(self.model, embeds, self.model.new_cache(self.cache_kind, embeds.shape[1] + 1))[0]

    @torch.inference_mode()
    def generate(self, embeds: torch.Tensor, new_tokens: int, section: Section = no_sections) -> torch.Tensor:
        """Greedy ids (B, new_tokens): the prefill's token, then new_tokens - 1 decode steps, EOS ignored."""
        self.cache = self.model.new_cache(self.cache_kind, embeds.shape[1] + new_tokens)
        with section(LLM_PREFILL):
            token, self.cache = prefill(self.model, embeds, self.cache)
        return torch.cat([token, greedy_decode(self.model, token, self.cache, new_tokens - 1, section)], dim=1)


@dataclass
class CompiledEngine(Engine):
    """Static cache + compiled forward + (on CUDA) the decode step as one CUDA graph, replayed per token."""

    name: str = "compiled"
    cache_kind: str = "static"
    use_graph: bool = True  # CUDA only
    _graph: object = field(default=None, repr=False)
    _forward: object = field(default=None, repr=False)
    _shape: tuple | None = field(default=None, repr=False)

    def setup(self, embeds: torch.Tensor, new_tokens: int) -> None:
        """Compile the forward and capture the decode step for this batch and context (the first call of
        `generate` does it anyway; calling setup first keeps it out of the timed iterations)."""
        self._forward = _compiled(self.model.llm)
        try:
            with torch.inference_mode():
                self._prepare(embeds, new_tokens)
        except Exception as e:  # noqa: BLE001 - any failure to capture: run eager, and say so in the record
            self.note = f"fell back to eager: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
            self._forward, self._graph, self._shape = None, None, None
            torch.compiler.reset()

    def _prepare(self, embeds: torch.Tensor, new_tokens: int) -> None:
        batch, context = embeds.shape[:2]
        self._shape = (batch, context, new_tokens)
        self.cache = self.model.new_cache("static", context + new_tokens)
        token = self._prefill(embeds)  # allocates the cache's tensors (transformers allocates them lazily)
        self._token = token.clone()  # the graph's input and output: the id of the current position
        self._ids = torch.zeros((batch, new_tokens), dtype=torch.long, device=token.device)
        self._step = torch.zeros((), dtype=torch.long, device=token.device)
        cuda = embeds.device.type == "cuda" and self.use_graph
        # Run the step eagerly (compiling it) a few times, on a side stream as CUDA graph capture requires.
        stream = torch.cuda.Stream() if cuda else None
        with _decode_attention(), torch.cuda.stream(stream) if cuda else contextlib.nullcontext():
            for _ in range(3):
                self._run_step()
            if cuda:
                torch.cuda.current_stream().wait_stream(stream)
                self._graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self._graph):
                    self._run_step()
        self._rewind(context)

    @torch.inference_mode()
    def _prefill(self, embeds: torch.Tensor) -> torch.Tensor:
        out = self.model.llm(inputs_embeds=embeds, use_cache=True, logits_to_keep=1, **{_cache_kwarg(): self.cache})
        return out.logits[:, -1].argmax(-1, keepdim=True)

    def _run_step(self) -> None:
        """One decode step on the static buffers: next id of `_token`, written back into it and into `_ids`."""
        logits = self._forward(input_ids=self._token, use_cache=True, logits_to_keep=1, **{_cache_kwarg(): self.cache}).logits
        self._token.copy_(logits[:, -1].argmax(-1, keepdim=True))
        self._ids.index_copy_(1, self._step.view(1), self._token)
        self._step.add_(1)

    def _rewind(self, length: int) -> None:
        """Set every layer's fill level to `length` (entries past it are stale and get overwritten)."""
        for layer in self.cache.layers:
            layer.cumulative_length.fill_(length)
        self._step.fill_(1)  # slot 0 holds the prefill's token

    @torch.inference_mode()
    def generate(self, embeds: torch.Tensor, new_tokens: int, section: Section = no_sections) -> torch.Tensor:
        if self._shape != (*embeds.shape[:2], new_tokens):
            self.setup(embeds, new_tokens)
        if self._forward is None:  # fell back
            return super().generate(embeds, new_tokens, section)
        with section(LLM_PREFILL):
            self._rewind(0)
            self._token.copy_(self._prefill(embeds))
            self._ids[:, :1].copy_(self._token)
            self._step.fill_(1)
        for _ in range(new_tokens - 1):
            with section(DECODE_STEP):
                self._graph.replay() if self._graph is not None else self._run_step()
        return self._ids.clone()


    # ---- prefill: one CUDA graph per context length (the bucket is the exact length) --------------------
    def setup_prefill(self, embeds: torch.Tensor) -> None:
        """Compile the media stages and capture the LLM prefill for this batch and length. A prefill into an
        empty DynamicCache needs no mask (SDPA's is_causal) and no host sync, so it can be captured whole;
        the cache it fills lives in the graph's memory, as a server's would in its KV pool."""
        self._prefill_shape = tuple(embeds.shape)
        try:
            with torch.inference_mode():
                self._capture_prefill(embeds)
        except Exception as e:  # noqa: BLE001 - run the prefill eagerly, and say so in the record
            self.note = f"prefill fell back to eager: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
            self._prefill_graph = None

    def _capture_prefill(self, embeds: torch.Tensor) -> None:
        from transformers import DynamicCache

        import os

        forward = _compiled(self.model.llm, os.environ.get("NVILA_BENCH_PREFILL_COMPILE_MODE"))
        self._embeds = embeds.clone()
        cuda = embeds.device.type == "cuda"

        def run() -> torch.Tensor:
            cache = DynamicCache(config=self.model.llm.config)
            out = forward(inputs_embeds=self._embeds, use_cache=True, logits_to_keep=1, **{_cache_kwarg(): cache})
            return out.logits[:, -1].argmax(-1, keepdim=True)

        if not cuda:  # compiled only
            run()
            self._prefill_graph, self._prefill_run = None, run
            return
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                run()
        torch.cuda.current_stream().wait_stream(stream)
        self._prefill_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._prefill_graph):
            self._prefill_token = run()

    @torch.inference_mode()
    def first_token(self, embeds: torch.Tensor) -> torch.Tensor:
        if getattr(self, "_prefill_shape", None) != tuple(embeds.shape):
            self.setup_prefill(embeds)
        graph = getattr(self, "_prefill_graph", None)
        if graph is None and not hasattr(self, "_prefill_run"):
            return super().first_token(embeds)
        self._embeds.copy_(embeds)
        if graph is None:
            return self._prefill_run()
        graph.replay()
        return self._prefill_token


def compile_media(model, on: bool = True) -> None:
    """Compile (or, with on=False, un-compile) the vision tower's layers and the projector in place: an
    engine sets the media mode it measures, whatever the model's last engine left."""
    from .vision import _body

    body = _body(model.vision_tower)
    for module in (body.embeddings, *body.encoder.layers, model.mm_projector):
        if on and getattr(module, "_compiled_call_impl", None) is None:
            module.compile(dynamic=False)
        elif not on:
            module._compiled_call_impl = None  # back to the plain forward (nn.Module.compile's own slot)


class _Lap:
    """A transformers logits processor that marks stage boundaries: it runs once per generated token, right
    after that token's forward, so the first call ends the prefill and each later one a decode step."""

    def __init__(self, section: Section):
        self.section, self.calls, self.open = section, 0, None

    def begin(self) -> None:
        self.open = self.section(LLM_PREFILL)
        self.open.__enter__()

    def __call__(self, input_ids, scores):
        self.open.__exit__(None, None, None)
        self.calls += 1
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
            max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, eos_token_id=None,
            pad_token_id=0, cache_implementation="static" if self.name == "hf-static" else None,
        )  # fmt: skip
        lap = _Lap(section)
        lap.begin()
        ids = self.model.llm.generate(inputs_embeds=embeds, generation_config=config,
                                      logits_processor=LogitsProcessorList([lap]))  # fmt: skip
        lap.end()
        return ids[:, -new_tokens:]


def make_engine(name: str, model, cache_kind: str = "dynamic") -> Engine:
    check_engine(name)
    if name == "compiled":
        return CompiledEngine(model)
    if name in PEERS:
        return HFEngine(model, name=name)
    return Engine(model, cache_kind)


def _decode_attention():
    """Experiment knob (benchmarks/engine_probe.py): NVILA_BENCH_DECODE_SDPA=math|efficient|cudnn|flash pins
    the SDPA backend of the captured decode step; unset, PyTorch picks."""
    import os

    name = os.environ.get("NVILA_BENCH_DECODE_SDPA")
    if not name:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = {"math": SDPBackend.MATH, "efficient": SDPBackend.EFFICIENT_ATTENTION,
               "cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION}[name]  # fmt: skip
    return sdpa_kernel([backend])


def _compiled(module, mode: str | None = None):
    """The module's forward through torch.compile (inductor; CUDA graphs are ours, not inductor's).
    Experiment knob: NVILA_BENCH_COMPILE_MODE=none captures the plain forward, or names an inductor mode
    (e.g. max-autotune-no-cudagraphs)."""
    import os

    mode = mode or os.environ.get("NVILA_BENCH_COMPILE_MODE") or None
    if mode == "none":
        return module
    if mode and "autotune" in mode:
        torch._inductor.config.coordinate_descent_tuning = True
    return torch.compile(module, dynamic=False, fullgraph=False, mode=mode)


def _cache_kwarg() -> str:
    from .nvila import _CACHE_KWARG

    return _CACHE_KWARG
