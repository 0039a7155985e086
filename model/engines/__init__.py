"""Inference engines: how the LLM's prefill and greedy decode run (docs/architecture.md#engines).

    eager        the reference: one Python-driven forward per token (eager.py)
    compiled     static KV cache, the decode step compiled and captured as one CUDA graph (compiled.py)
    hf-generate  peer: transformers `generate()` with its dynamic cache (hf.py)
    hf-static    peer: transformers `generate(cache_implementation="static")` (hf.py)

Every engine is driven the same way, so a suite times them side by side on the same weights and context:
`setup(embeds, new_tokens)` does the one-time work (compile, graph capture; the caller times it), then each
`generate(embeds, new_tokens, section)` prefills and decodes, marking section("llm_prefill") once and
section("decode_step") per step. The model never times itself: `section` is the caller's clock. After
`generate`, `last_logits` (B, V) are the logits the last id was chosen from (the last decode step's), kept at no
cost to the steps, so engines can be compared by more than their ids (a random-weight model's greedy ids can be
one id repeated, whatever the engine computed). A peer VLM (model/peer_model.py) runs on every engine.

This module is torch-free: the command line checks engine names and defaults without loading torch; the engine
classes load with `make_engine` (or as attributes of this package).
"""

from __future__ import annotations

from importlib import import_module

ENGINES = ("eager", "compiled", "hf-generate", "hf-static")
PEERS = ("hf-generate", "hf-static")
CACHES = ("dynamic", "static")  # the eager engine's choice of KV cache
# The KV cache each engine runs with, whatever --cache says (eager alone takes either).
ENGINE_CACHE = {"compiled": "static", "hf-static": "static", "hf-generate": "dynamic"}
_CLASSES = {"Engine": "eager", "CompiledEngine": "compiled", "HFEngine": "hf"}


def default_engine(device: str) -> str:
    return "compiled" if str(device).startswith("cuda") else "eager"


def check_engine(name: str) -> None:
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")


def make_engine(name: str, model, cache_kind: str = "dynamic"):
    """The engine `name` on `model` (an Engine)."""
    from ..compiling import allow_a_sweep_of_shapes
    from .compiled import CompiledEngine
    from .eager import Engine
    from .hf import HFEngine

    check_engine(name)
    allow_a_sweep_of_shapes()  # hf-static compiles too, and must not run uncompiled unsaid
    if name == "compiled":
        return CompiledEngine(model)
    if name in PEERS:
        return HFEngine(model, name=name)
    return Engine(model, cache_kind)


def __getattr__(name: str):
    if name not in _CLASSES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_CLASSES[name]}", __name__), name)
