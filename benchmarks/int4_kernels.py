"""Which int4 weight-only kernel reads NVILA-8B's LLM weights fastest on this GPU (issue 16's W4A16 rung)?

    python3 benchmarks/int4_kernels.py OUT_DIR

For each linear layer shape of Qwen2-7B (q/k/v and gate/up fused as the fast decode step runs them, o,
down; and k and gate alone, as unfused layers run) at M = 1 (decode) and M = 3137 (the 1920x1080 prefill), times bf16
`F.linear` against torchao's
int4 weight-only kernels as model/quantize.py applies them: tinygemm (`Int4WeightOnlyConfig`, tile_packed_to_4d) and
gemlite's
Triton kernels (torchao's `UIntxBitPackedTensor`; needs `pip install gemlite`). Each time is
one call out of a CUDA graph of calls that cycle through enough copies of the layer to miss L2, so decode
shapes are timed as they run in the step (weights from HBM, no launch gaps); gemlite at M = 3137 also as
dequantize-then-cuBLAS, what the model runs from 256 tokens (model/gemlite_int4.py). Writes OUT_DIR/int4_kernels.json
(microseconds per call, GB/s of the bytes each format stores, max relative error against bf16).
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import torch
from nvila_bench.model.quantize import tensor_bytes
from torch import nn

SHAPES = {
    "qkv": (4608, 3584),
    "o": (3584, 3584),
    "gate_up": (37888, 3584),
    "down": (3584, 18944),  # (N, K)
    "k": (512, 3584),
    "gate": (18944, 3584),
}  # unfused (tinygemm's layers): q/k/v = o + 2 k, gate/up = 2 gate
LAYER_COUNTS = {
    "fused": {"qkv": 1, "o": 1, "gate_up": 1, "down": 1},  # one decoder layer's linears: the decode step
    "unfused": {"o": 2, "k": 2, "gate": 2, "down": 1},
}  # q has o's shape, v k's, up gate's: prefill, tinygemm
L2_MISS_BYTES = 512 * 2**20  # copies of a layer until their stored bytes pass this (H100's L2 is 50 MiB)


def quantizer(kind: str):
    """A function that quantizes an nn.Linear in place with `kind`'s int4 kernel, as model/quantize.py does."""
    from nvila_bench.model.gemlite_int4 import gemlite_weight
    from nvila_bench.model.quantize import _config
    from torchao.quantization import quantize_

    def apply(linear: nn.Linear) -> nn.Linear:
        if kind == "tinygemm":
            quantize_(linear, _config("w4a16", 128, "tinygemm"))
        elif kind == "gemlite":
            linear.weight = nn.Parameter(gemlite_weight(linear.weight.detach(), 128), requires_grad=False)
        return linear

    return apply


def time_call(fns, x, repeats: int = 20) -> float:
    """Microseconds per call: one CUDA graph calls every copy once; replayed `repeats` times."""
    for f in fns:  # autotune / warm up outside the graph
        f(x)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for f in fns:
            f(x)
    graph.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1e3 / repeats / len(fns)


def per_step(rows: list[dict], layers: int = 28) -> dict:
    """Milliseconds of a step's linears per kernel, as the model runs them: the compiled decode step fuses q/k/v
    and gate/up (bf16, gemlite; not tinygemm), the prefill runs transformers' modules one by one (on their
    slices; timed here as contiguous layers), gemlite's by dequantize + cuBLAS (its GEMM too, for comparison).
    Unfused decode too, for what fusion saves. Every row cycles through enough copies to miss L2."""
    step = {}
    for kind in ("bf16", "tinygemm", "gemlite"):
        timed = {r["layer"]: r for r in rows if r["kernel"] == kind}

        def ms(layout, m):
            return (
                layers * sum(c * timed[n][f"us_m{m}"] for n, c in LAYER_COUNTS[layout].items()) / 1e3
                if all(f"us_m{m}" in timed.get(n, {}) for n in LAYER_COUNTS[layout])
                else None
            )

        prefill = "3137_dequant" if kind == "gemlite" else "3137"  # GemliteLinear dequantizes from 256 rows
        step[kind] = {
            "decode_linears_ms": ms("unfused" if kind == "tinygemm" else "fused", 1),
            "decode_linears_ms_unfused": ms("unfused", 1),
            "prefill_linears_ms": ms("unfused", prefill),
            **({"prefill_linears_ms_gemm": ms("unfused", 3137)} if kind == "gemlite" else {}),
        }
    return step


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": []}
    try:
        import gemlite

        report["gemlite"] = gemlite.__version__ if hasattr(gemlite, "__version__") else "installed"
    except Exception as e:  # noqa: BLE001
        report["gemlite"] = f"missing: {e}"
    torch.manual_seed(0)
    for name, (n, k) in SHAPES.items():
        for kind in ("bf16", "tinygemm", "gemlite"):
            row = {"layer": name, "n": n, "k": k, "kernel": kind}
            try:
                layer = quantizer(kind)(
                    nn.Linear(k, n, bias=False, dtype=torch.bfloat16, device="cuda").requires_grad_(False)
                )
                layer_bytes = tensor_bytes(layer.weight.data)
                copies = [layer] + [
                    quantizer(kind)(
                        nn.Linear(k, n, bias=False, dtype=torch.bfloat16, device="cuda").requires_grad_(False)
                    )
                    for _ in range(max(0, L2_MISS_BYTES // layer_bytes))
                ]
                row["bytes"] = layer_bytes
                with torch.no_grad():
                    for m in (1, 3137):
                        x = torch.randn(m, k, dtype=torch.bfloat16, device="cuda")
                        us = time_call(copies, x)  # every shape from HBM: the copies pass L2 together
                        row[f"us_m{m}"] = us
                        if m == 1:
                            row["gbs_m1"] = layer_bytes / us / 1e3
                        else:
                            row["tflops_m3137"] = 2 * m * n * k / us / 1e6
                    if kind == "gemlite":  # prefill as the model runs it (GemliteLinear): dequantize, then cuBLAS
                        try:
                            from nvila_bench.model.gemlite_int4 import dequantize

                            dequant = [
                                lambda t, w=c.weight: torch.nn.functional.linear(t, dequantize(w).t()) for c in copies
                            ]
                            row["us_m3137_dequant"] = time_call(dequant, x)
                        except Exception as e:  # noqa: BLE001
                            row["dequant_error"] = f"{type(e).__name__}: {e}"[:300]
                # error of the quantized layer against its own bf16 weights (dequantized reference)
                if kind != "bf16":
                    w = torch.randn(n, k, dtype=torch.bfloat16, device="cuda") * 0.02
                    q = nn.Linear(k, n, bias=False, dtype=torch.bfloat16, device="cuda").requires_grad_(False)
                    with torch.no_grad():
                        q.weight.copy_(w)
                    q = quantizer(kind)(q)
                    x = torch.randn(4, k, dtype=torch.bfloat16, device="cuda")
                    with torch.no_grad():
                        ref, got = x.float() @ w.float().T, q(x).float()
                    row["rel_err"] = ((got - ref).norm() / ref.norm()).item()
                del copies
            except Exception as e:  # noqa: BLE001 - a probe reports and goes on
                row["error"] = f"{type(e).__name__}: {e}"[:500]
                row["trace"] = traceback.format_exc()[-1500:]
            torch.cuda.empty_cache()
            report["rows"].append(row)
            print(json.dumps({k_: v for k_, v in row.items() if k_ != "trace"}), flush=True)
            (out / "int4_kernels.json").write_text(json.dumps(report, indent=1))
    step = per_step(report["rows"])
    report["per_step_28_layers"] = step
    print("per step (28 layers):", json.dumps(step), flush=True)
    (out / "int4_kernels.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "out-int4"))
