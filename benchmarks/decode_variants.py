"""Decode and prefill variants of the compiled engine on one GPU (the notes file's experiments).

    python benchmarks/decode_variants.py OUT_DIR

For NVILA-8B at 1920x1080 + 64 text tokens, 128 new tokens: TPOT per compile mode of the captured decode
step, the kernels one decode step spends its time in, and the LLM prefill graph with and without compile.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from nvila_bench.core.point import BenchPoint
from nvila_bench.core.session import Session
from nvila_bench.core.timing import MeasureConfig
from nvila_bench.model.engines import CompiledEngine
from nvila_bench.model.pipeline import embed
from nvila_bench.suites import decode, prefill
from nvila_bench.suites.prefill import request_of


def kernel_table(session: Session, point: BenchPoint) -> list:
    """Top kernels of 10 decode steps run without the graph (same kernels, visible to the profiler)."""
    from torch.profiler import ProfilerActivity, profile

    model = session.model(point)
    with torch.inference_mode():
        embeds = embed(model, request_of(point))
        engine = CompiledEngine(model)
        engine.setup(embeds, point.new_tokens)
        engine.generate(embeds, point.new_tokens)
        engine._rewind(embeds.shape[1])  # 10 more steps from the context's end, inside the cache
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(10):
                engine._run_step()
            torch.cuda.synchronize()
    rows = sorted(prof.key_averages(), key=lambda e: -e.device_time_total)[:25]
    return [(e.key[:90], e.count, round(e.device_time_total / 10 / 1e3, 4)) for e in rows]  # ms per step


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    session = Session(MeasureConfig(warmup=1, repeats=3, min_seconds=0.5))
    base = dict(preset="nvila-8b", device="cuda", images=((1920, 1080),), prompt_tokens=64, new_tokens=128)
    report = {}
    report["kernels"] = kernel_table(session, BenchPoint(**base, engine="compiled"))
    for row in report["kernels"]:
        print(row, flush=True)
    for mode in ("none", "max-autotune-no-cudagraphs"):
        os.environ["NVILA_BENCH_COMPILE_MODE"] = mode
        torch.compiler.reset()
        try:
            m = decode.measure_point(BenchPoint(**base, engine="compiled"), session)
            report[f"decode_{mode}"] = {k: m[k].value for k in ("tpot", "setup_seconds")} | {"note": m.get("engine_note") and m["engine_note"].value}
        except Exception as e:  # noqa: BLE001
            report[f"decode_{mode}"] = f"{type(e).__name__}: {e}"[:1000]
        print("decode", mode, report[f"decode_{mode}"], flush=True)
    os.environ["NVILA_BENCH_COMPILE_MODE"] = ""
    for mode in ("none",):
        os.environ["NVILA_BENCH_PREFILL_COMPILE_MODE"] = mode
        torch.compiler.reset()
        m = prefill.measure_point(BenchPoint(**base, engine="compiled"), session)
        report[f"prefill_{mode}"] = {k: m[k].value for k in ("ttft", "preprocess", "vision", "projector", "llm_prefill", "setup_seconds")}
        print("prefill", mode, report[f"prefill_{mode}"], flush=True)
    (out / "variants.json").write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
