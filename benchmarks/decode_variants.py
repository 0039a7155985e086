"""Variants of the compiled engine on one GPU, measured side by side (the notes file's experiments).

    python benchmarks/decode_variants.py OUT_DIR decode:sdpa,hf-static kernels prefill:nvila-8b:eager,fast vision

NVILA-8B at 1920x1080 + 64 text tokens, 128 new tokens (NVILA-Lite-2B for the small-LLM prefill): TPOT of
each decode step variant (model/fast_llm.py with flex or SDPA attention, transformers' forward, inductor
modes) beside transformers' generate(cache_implementation="static") in the same process; the kernels of one
step; the LLM prefill, transformers' eager forward vs model/fast_llm.py's (compiled or not, with a CUDA graph
or not; PREFILL) and its kernels; the vision tower, transformers' layers each compiled vs model/fast_vision.py's
(per inductor mode, SDPA backend) and its kernels. One JSON line
per variant in OUT_DIR/variants.jsonl, written as soon as it is measured.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from nvila_bench.model.compiling import compile_media
from nvila_bench.model.engines import CompiledEngine, Engine, HFEngine
from nvila_bench.model.nvila import build_model
from nvila_bench.model.pipeline import embed
from nvila_bench.model.presets import get_preset
from nvila_bench.model.stages import DECODE_STEP
from nvila_bench.suites.common import request_of, ttft_iteration

from nvila_bench.core.measuring.point import BenchPoint
from nvila_bench.core.measuring.timing import MeasureConfig, measure

# What the probe measures, in one place (tests/test_probe_script.py runs it on CPU with the tiny presets).
DEVICE = torch.device("cuda")
BIG = "nvila-8b"  # the decode and vision variants' model
IMAGE, PROMPT, NEW = (1920, 1080), 64, 128
TIMING = MeasureConfig(warmup=1, repeats=3, min_seconds=1.0)


def point(preset: str) -> BenchPoint:
    return BenchPoint(preset, DEVICE.type, "bfloat16", images=(IMAGE,), prompt_tokens=PROMPT, new_tokens=NEW)


def build(preset: str):
    return build_model(get_preset(preset), torch.bfloat16, DEVICE)


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def release() -> None:
    """Forget the compiled code and hand cached device memory back between variants."""
    torch.compiler.reset()
    if DEVICE.type == "cuda":
        torch.cuda.empty_cache()


def write(out: Path, row: dict) -> None:
    print(json.dumps(row), flush=True)
    with open(out / "variants.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


AUTOTUNE = "max-autotune-no-cudagraphs"
DECODE = {
    "flex": lambda model: CompiledEngine(model, attention="flex", compile_mode="default"),
    "sdpa": lambda model: CompiledEngine(model, attention="sdpa", compile_mode="default"),
    "transformers": lambda model: CompiledEngine(model, attention="transformers", compile_mode="default"),
    "flex-autotune": lambda model: CompiledEngine(model, attention="flex", compile_mode=AUTOTUNE),
    "sdpa-autotune": lambda model: CompiledEngine(model, attention="sdpa", compile_mode=AUTOTUNE),
    "hf-static": lambda model: HFEngine(model, name="hf-static"),
}


def decode_variants(out: Path, model, embeds, names: list[str], profile: bool) -> None:
    """TPOT of each variant; with `profile`, the kernels of the compiled ones' captured step."""
    for name in names:
        engine, start = DECODE[name](model), time.perf_counter()
        try:
            engine.setup(embeds, NEW)
            setup = time.perf_counter() - start
            ids = engine.generate(embeds, NEW)
            samples = measure(lambda clock, run=engine.generate: run(embeds, NEW, clock.section), DEVICE, TIMING)
            steps = samples[DECODE_STEP]
            write(
                out,
                {
                    "variant": f"decode {name}",
                    "tpot_ms": median(steps) * 1e3,
                    "min_ms": min(steps) * 1e3,
                    "setup_s": setup,
                    "note": engine.note,
                    "ids16": ids[0, :16].tolist(),
                },
            )
            if profile and getattr(engine, "_graph", None) is not None:
                kernels(out, name, engine, embeds)
        except Exception as e:  # noqa: BLE001 - record and go on
            write(out, {"variant": f"decode {name}", "error": f"{type(e).__name__}: {e}"[:2000]})
        del engine
        release()


def kernels(out: Path, name: str, engine: CompiledEngine, embeds) -> None:
    """Kernels of 20 replays of the captured step, ms per step."""
    with torch.inference_mode():
        engine._rewind(embeds.shape[1])
    device_kernels(out, f"kernels {name}", engine._graph.replay, 20)


PREFILL = {
    "eager": lambda model: Engine(model),  # transformers' forward, DynamicCache
    "fast": lambda model: CompiledEngine(
        model
    ),  # the compiled engine's: FastPrefill compiled, a graph up to 2,048 tokens
    "fast-graph": lambda model: CompiledEngine(model, prefill_graph_tokens=1 << 30),  # a graph at any length
    "fast-nograph": lambda model: CompiledEngine(model, prefill_graph_tokens=0),
    "fast-plain": lambda model: CompiledEngine(
        model, prefill_compile_mode="none", prefill_graph_tokens=0
    ),  # uncompiled
    "fast-autotune": lambda model: CompiledEngine(model, prefill_compile_mode=AUTOTUNE, prefill_graph_tokens=0),
}


def prefill_variants(out: Path, preset: str, names: list[str], profile: bool) -> None:
    """TTFT stages per LLM prefill variant (the media stages compiled once, as the compiled engine runs them,
    and kept across the variants: no dynamo reset between them, so a later variant may reuse an earlier one's
    compiled prefill and show a shorter setup_s); with `profile`, the kernels of one LLM prefill."""
    model = build(preset)
    request = request_of(point(preset))
    media = []  # why the media stages fell back to plain, if they did
    compile_media(model, on=True, on_fail=media.append)
    for name in names:
        engine = PREFILL[name](model)
        try:
            with torch.inference_mode():
                embeds = embed(model, request)
                start = time.perf_counter()
                engine.setup_prefill(embeds)
                setup = time.perf_counter() - start
                token = engine.first_token(embeds)[0].tolist()
                samples = measure(ttft_iteration(model, request, engine), DEVICE, TIMING)
            write(
                out,
                {
                    "variant": f"prefill {preset} {name}",
                    "setup_s": setup,
                    "note": engine.note,
                    "token": token,
                    "attention": engine.prefill_attention(),
                    "media_note": media[0] if media else None,
                    **{k: median(v) * 1e3 for k, v in samples.items()},
                },
            )
            if profile:
                prefill_kernels(out, f"{preset} {name}", engine, embeds)
        except Exception as e:  # noqa: BLE001 - record and go on
            write(out, {"variant": f"prefill {preset} {name}", "error": f"{type(e).__name__}: {e}"[:2000]})
        del engine
        if DEVICE.type == "cuda":
            torch.cuda.empty_cache()
    compile_media(model, on=False)
    release()


def device_kernels(out: Path, variant: str, run, runs: int) -> None:
    """The kernels of `runs` calls of `run()`, ms per call: one JSON line `variant` with the 30 longest and the
    total of all (probe files before 2026-12-02 summed the 30 shown); on a CPU, the operators' own CPU time."""
    from torch.profiler import ProfilerActivity, profile

    cuda = DEVICE.type == "cuda"
    with torch.inference_mode():
        sync()
        with profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU]) as prof:
            for _ in range(runs):
                run()
            sync()
    us = {e.key: e.device_time_total if cuda else e.self_cpu_time_total for e in prof.key_averages()}
    rows = sorted(prof.key_averages(), key=lambda e: -us[e.key])
    table = [(e.key[:100], e.count // runs, round(us[e.key] / runs / 1e3, 4)) for e in rows]
    write(out, {"variant": variant, "rows": table[:30], "total_ms": round(sum(r[2] for r in table), 3)})


def prefill_kernels(out: Path, name: str, engine: Engine, embeds) -> None:
    """Kernels of 5 LLM prefills, ms per prefill."""
    device_kernels(out, f"prefill kernels {name}", lambda: engine.first_token(embeds), 5)


def _vision(model, name: str) -> None:
    """Set the media stages to vision variant `name`: "layers" (transformers' layers and the projector, each
    compiled, the S2 merge eager: the first H100 runs' path), "fast" (model/fast_vision.py and the merge
    compiled: the compiled engine's), "fast-noepilogue" (fast, with fc1's GELU as its own pass); "-autotune"
    appended: inductor's max-autotune-no-cudagraphs."""
    from nvila_bench.model.fast_vision import FastVision
    from nvila_bench.model.vision import vision_body

    base, autotune = name.removesuffix("-autotune"), name.endswith("-autotune")
    if base not in ("layers", "fast", "fast-noepilogue"):
        raise ValueError(f"unknown vision variant {name!r}")
    compile_media(model, on=False)
    torch.compiler.reset()
    options = {"dynamic": False, "mode": AUTOTUNE if autotune else None}
    body = vision_body(model.vision_tower)
    if base == "layers":
        for module in (body.embeddings, *body.encoder.layers, model.mm_projector):
            module.compile(**options)
        return
    fast = FastVision(model.vision_tower, model.config.vision.layers_used)
    for layer in fast.layers:
        layer.epilogue &= base != "fast-noepilogue"
    model.vision_forward = torch.compile(fast.__call__, **options)
    model.s2_merge.compile(**options)
    model.mm_projector.compile(**options)


def _pinned(model, backend) -> None:
    """The vision tower's attention on SDPA backend `backend` only (the LLM prefill keeps its own choice)."""
    from nvila_bench.model.vision import vision_features
    from torch.nn.attention import sdpa_kernel

    tower, used = model.vision_tower, model.config.vision.layers_used
    inner = model.vision_forward or (lambda pixels: vision_features(tower, pixels, used))

    def forward(pixels):
        with sdpa_kernel([backend]):
            return inner(pixels)

    model.vision_forward = forward


def vision_variants(out: Path, names: list[str], profile: bool) -> None:
    """NVILA-8B's media stages per vision variant (`_vision`); "+cudnn", "+flash" or "+efficient" appended
    pins the tower's SDPA backend (e.g. fast+cudnn). The LLM prefill is eager throughout."""
    from torch.nn.attention import SDPBackend

    model = build(BIG)
    request = request_of(point(BIG))
    backends = {
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
    }
    for name in names:
        variant, _, backend = name.partition("+")
        try:
            _vision(model, variant)
            if backend:
                _pinned(model, backends[backend])
            start = time.perf_counter()
            with torch.inference_mode():
                embed(model, request)
                setup = time.perf_counter() - start
                samples = measure(ttft_iteration(model, request, Engine(model)), DEVICE, TIMING)
            write(
                out, {"variant": f"vision {name}", "setup_s": setup, **{k: median(v) * 1e3 for k, v in samples.items()}}
            )
            if profile:
                media_kernels(out, name, model, request)
        except Exception as e:  # noqa: BLE001 - record and go on
            write(out, {"variant": f"vision {name}", "error": f"{type(e).__name__}: {e}"[:2000]})
    compile_media(model, on=False)


def media_kernels(out: Path, name: str, model, request) -> None:
    """Kernels of 3 runs of the media stages and the embedding (vision tower, projector), ms per run."""
    device_kernels(out, f"vision kernels {name}", lambda: embed(model, request), 3)


def main(out: Path, parts: list[str]) -> None:
    """parts: decode:NAME,NAME  kernels (profile each variant)  prefill:PRESET:NAME,NAME  vision[:NAME,NAME]"""
    out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else DEVICE.type
    write(out, {"variant": "device", "name": name, "torch": torch.__version__})
    for part in parts:
        kind, _, rest = part.partition(":")
        if kind == "decode":
            model = build(BIG)
            with torch.inference_mode():
                embeds = embed(model, request_of(point(BIG)))
            decode_variants(out, model, embeds, rest.split(","), "kernels" in parts)
            del model, embeds
        elif kind == "prefill":
            preset, _, names = rest.partition(":")
            prefill_variants(out, preset, names.split(","), "kernels" in parts)
        elif kind == "vision":
            vision_variants(out, rest.split(",") if rest else ["layers", "fast"], "kernels" in parts)
        release()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
