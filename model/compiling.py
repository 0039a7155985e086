"""How the compiled engine compiles and captures (docs/architecture.md#engines): torch.compile of a
function, the media stages compiled in place, and the LLM prefill compiled and captured as a CUDA graph.
The decode step's capture lives with its loop (engines.py `CompiledEngine`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .fast_llm import FastPrefill, allocate
from .pipeline import Section, no_sections
from .stages import GRAPH_CAPTURE

RECOMPILE_LIMIT = 64  # compiled variants kept per function (dynamo's default, 8, is one sweep of batch sizes)


def allow_a_sweep_of_shapes() -> None:
    """One process compiles the same functions (FastPrefill and FastDecoder's `__call__`, the vision layers,
    hf-static's forward) for every preset, batch, length and weight format a sweep visits, and dynamo
    compiles a function again for each (dynamic=False). Past its recompile limit, 8 by default, dynamo runs
    the function uncompiled without a word, and a record would call eager figures compiled. So: keep up to
    RECOMPILE_LIMIT variants, and past that raise (the engine's fallback notes, or the point's error, say so)."""
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
    config.fail_on_recompile_limit_hit = True


def compile_media(model, on: bool = True, on_fail=None) -> None:
    """Compile (or, with on=False, un-compile) the media stages: the vision tower as model/fast_vision.py's
    FastVision, one compiled function (`model.vision_forward`; a tower whose attention is not SDPA gets its
    own layers compiled in place instead), and the Dynamic-S2 merge and the projector in place. An engine sets the media
    mode it
    measures, whatever the model's last engine left. Compiling happens at the first call; if that fails (e.g.
    inductor's CPU code for int8 activations), every media stage runs plain from then on, and
    `on_fail(reason)` is told once."""
    if getattr(model, "is_peer", False):  # transformers' own vision tower and projector (model/peer_model.py)
        if on and on_fail:
            on_fail("vision tower and projector eager (a peer's run transformers' own forward, not compiled)")
        return
    from .fast_vision import FastVision
    from .vision import vision_body, vision_features

    body = vision_body(model.vision_tower)
    layers = (body.embeddings, *body.encoder.layers)
    if not on:
        model.vision_forward = None
        for module in (*layers, model.s2_merge, model.mm_projector):
            module._compiled_call_impl = None  # back to the plain forward (nn.Module.compile's own slot)
        return

    model._media_on_fail = on_fail  # the engine setting them up now hears of a failure, not the one that installed them

    def fail(name: str, e: Exception) -> None:
        compile_media(model, on=False)
        if model._media_on_fail:
            model._media_on_fail(
                f"vision tower and projector eager ({name} failed to compile: "
                f"{type(e).__name__}: {' '.join(str(e).split())[:120]})"
            )

    modules = (model.s2_merge, model.mm_projector)
    if getattr(model.vision_tower.config, "_attn_implementation", "sdpa") != "sdpa":
        modules = (*layers, *modules)
    elif model.vision_forward is None:
        tower, used = model.vision_tower, model.config.vision.layers_used
        model.vision_forward = _guarded(
            compiled(FastVision(tower, used).__call__),
            lambda f: setattr(model, "vision_forward", f),
            lambda pixels: vision_features(tower, pixels, used),
            lambda e: fail("FastVision", e),
        )
    for module in modules:
        if module._compiled_call_impl is None:
            module._compiled_call_impl = _guarded(
                compiled(module._call_impl),
                lambda f, m=module: setattr(m, "_compiled_call_impl", f),
                module._call_impl,
                lambda e, m=module: fail(type(m).__name__, e),
            )


def _guarded(fast, install, plain, fail):
    """`fast` (compiled), whose first call compiles it: if that raises, `fail(error)` (which un-compiles the
    media stages) and the call runs `plain`; if not, `install(fast)` puts it in place, unguarded (later errors
    are errors, not compile failures)."""

    def call(*args, **kwargs):
        try:
            out = fast(*args, **kwargs)
        except torch.OutOfMemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - a compile failure: run the media stages plain, say so in the record
            fail(e)
            return plain(*args, **kwargs)
        install(fast)
        return out

    return call


def compiled(fn, mode: str | None = None):
    """`fn` through torch.compile (inductor; CUDA graphs are ours, not inductor's), or as it is for "none"."""
    if mode == "none":
        return fn
    if mode in ("reduce-overhead", "max-autotune"):
        raise ValueError(
            f"compile mode {mode!r} makes inductor's own CUDA graphs, inside ours; use e.g. max-autotune-no-cudagraphs"
        )
    allow_a_sweep_of_shapes()
    return torch.compile(fn, dynamic=False, mode=None if mode == "default" else mode)


def capture(fn, warmups: int, section: Section = no_sections) -> tuple[torch.cuda.CUDAGraph, object]:
    """`fn()` run `warmups` times on a side stream (compiling it, creating cuBLAS workspaces), as CUDA graph
    capture requires, then captured once: (the graph, what `fn` returned inside it, its static output).
    `section(GRAPH_CAPTURE)` (a suite's clock) encloses the capture alone, so its cost is told apart from
    the compile's."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmups):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    # Captured on this call's own stream, not torch's one shared capture stream: a capture that failed (the
    # engine then tries its next attention) cannot leave that stream's allocations routed to a dead pool.
    with section(GRAPH_CAPTURE), torch.cuda.graph(graph, stream=stream):
        out = fn()
    return graph, out


@dataclass
class CapturedPrefill:
    """`prefill(embeds)` -> first token (B, 1): FastPrefill into `cache`, compiled, and on CUDA captured as one
    CUDA graph (the greedy pick included) when batch x length <= `graph_tokens`. Above that the compiled
    forward runs without a graph: there the GPU, not Python, is the bottleneck, and a graph of a long prefill
    was slower on the H100 (benchmarks/NOTES.md). Built for one (batch, length); the first call compiles."""

    forward: object
    graph: torch.cuda.CUDAGraph | None = None
    embeds: torch.Tensor | None = None  # the graph's input buffer
    token: torch.Tensor | None = None  # and its output

    @classmethod
    def build(
        cls,
        llm,
        cache,
        embeds: torch.Tensor,
        graph_tokens: int,
        mode: str | None = None,
        section: Section = no_sections,
    ) -> "CapturedPrefill":
        """Allocate `cache`, compile the prefill on `embeds` and, where it applies, capture it (`section`:
        capture's)."""
        allocate(cache, llm, embeds.shape[0], embeds.dtype, embeds.device)
        fast = FastPrefill(llm, cache)
        step = compiled(fast.__call__, mode)

        def forward(x: torch.Tensor) -> torch.Tensor:
            logits, kv = step(x)
            fast.write(kv)  # outside the compiled function (one compile for every cache), inside the graph
            return logits.argmax(-1, keepdim=True)

        self = cls(forward)
        if embeds.device.type != "cuda" or embeds.shape[0] * embeds.shape[1] > graph_tokens:
            self.forward(embeds)  # compiles
            return self
        self.embeds = embeds.clone()
        self.graph, self.token = capture(lambda: self.forward(self.embeds), warmups=3, section=section)
        return self

    def __call__(self, embeds: torch.Tensor) -> torch.Tensor:
        if self.graph is None:
            return self.forward(embeds)
        self.embeds.copy_(embeds)
        self.graph.replay()
        return self.token.clone()  # the graph's buffer is overwritten by the next replay; B ids cost nothing to copy
