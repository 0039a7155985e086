"""Probe of the fast-inference work on one GPU, stage by stage, outside the CLI (for the notes file).

    python benchmarks/engine_probe.py OUT_DIR [--preset nvila-8b] [--new-tokens 128]

Prints and writes (OUT_DIR/probe.json): the ceilings (GEMM, copy), the decode floor, the decode suite's
TPOT for each engine with the first 16 ids of each, and the prefill suite's stages per preprocessing path and engine
(NVILA-8B and NVILA-Lite-2B). The goals themselves are measured through
the CLI by benchmarks/gpu_session.sh.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

import torch
from nvila_bench.suites import decode, prefill
from nvila_bench.suites.ceilings import measure_ceilings

from nvila_bench.core.analysis import costmodel
from nvila_bench.core.analysis.hardware import Peaks
from nvila_bench.core.measuring.point import BenchPoint
from nvila_bench.core.measuring.session import Session
from nvila_bench.core.measuring.timing import MeasureConfig


def main(out: Path, preset: str = "nvila-8b", new_tokens: int = 128) -> None:
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    import transformers

    report["transformers"] = transformers.__version__
    ceil = measure_ceilings("cuda", "bfloat16", 8192, 1.0)
    report["ceilings"] = ceil
    print("ceilings", ceil, flush=True)
    peaks = Peaks(ceil["gemm_tflops"] * 1e12, ceil["copy_gbs"] * 1e9, "measured:probe")
    session = Session(MeasureConfig(warmup=1, repeats=3, min_seconds=0.5), {"bfloat16": peaks})
    base = dict(preset=preset, device="cuda", images=((1920, 1080),), prompt_tokens=64, new_tokens=new_tokens)
    for engine in ("compiled", "hf-static", "hf-generate"):  # decode step variants: decode_variants.py
        torch.compiler.reset()
        engine_label = engine
        try:
            point = BenchPoint(**base, engine=engine)
            t = time.perf_counter()
            m = decode.measure_point(point, session)
            row = {k: m[k].value for k in ("tpot", "prefill", "setup_seconds", "context_tokens", "decode_tokens_per_s")}
            row |= {
                "ids16": m["output_ids"].value[:16],
                "note": m["engine_note"].value if "engine_note" in m else None,
                "cv": (m["tpot"].summary or {}).get("cv"),
                "wall": time.perf_counter() - t,
            }
            cfg = session.model(point).config
            step = costmodel.decode_step_cost(cfg, row["context_tokens"] + new_tokens // 2)
            row["floor_s"] = step.bytes / (ceil["copy_gbs"] * 1e9)
        except Exception as e:  # noqa: BLE001 - a probe reports and goes on
            row = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-3000:]}
        report[f"decode_{engine_label}"] = row
        print("decode", engine_label, {k: v for k, v in row.items() if k != "trace"}, flush=True)
    for pre, engine in (("cpu", "eager"), ("gpu", "eager"), ("gpu", "compiled"), ("gpu", "hf-static")):
        for preset_ in (preset, "nvila-lite-2b"):
            try:
                m = prefill.measure_point(
                    BenchPoint(**(base | {"preset": preset_}), engine=engine, preprocess=pre), session
                )
                row = {
                    k: m[k].value
                    for k in m
                    if k
                    in (
                        "ttft",
                        "preprocess",
                        "vision",
                        "projector",
                        "llm_prefill",
                        "vision_mfu",
                        "llm_prefill_mfu",
                        "setup_seconds",
                        "engine_note",
                    )
                }
            except Exception as e:  # noqa: BLE001
                row = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-3000:]}
            report[f"prefill_{preset_}_{pre}_{engine}"] = row
            print("prefill", preset_, pre, engine, {k: v for k, v in row.items() if k != "trace"}, flush=True)
    (out / "probe.json").write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    args = sys.argv[1:]
    opts = dict(zip(args[1::2], args[2::2]))
    main(Path(args[0]), opts.get("--preset", "nvila-8b"), int(opts.get("--new-tokens", 128)))
