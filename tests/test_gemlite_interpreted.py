"""The CUDA W4A16 path through gemlite (model/gemlite_int4.py, as model/quantize.py applies it), on CPU: its
Triton kernels run in Triton's interpreter, in a subprocess (tests/gemlite_interpreter.py says how and what it
cannot cover). It checks what no CPU kernel can: gemlite's packed int4 computes with exactly the HQQ-rounded
weights, so does the dequantize + matmul path of prefill-sized inputs, its bytes are `linear_bytes(...,
"gemlite")`'s, and the compiled engine decodes a gemlite model as eager does.

Triton and gemlite are not in the test venv (Triton is 1 GB and would change what torch and torchao do there):
`make test` installs them into .triton-interpreter/ for this test alone. Without it the test skips, except
under CI=true, where it fails.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("NVILA_BENCH_TRITON_SITE", ROOT / ".triton-interpreter"))

if not (SITE / "gemlite").is_dir() or not (SITE / "triton").is_dir():
    if os.environ.get("CI"):
        pytest.fail(f"CI=true but {SITE} has no triton and gemlite (make test installs them)", pytrace=False)
    pytest.skip(f"needs triton and gemlite in {SITE} (make test installs them)", allow_module_level=True)


@pytest.fixture(scope="module")
def run():
    env = {
        **os.environ,
        "TRITON_INTERPRET": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "gemlite_interpreter.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_gemlite_layers_compute_with_the_hqq_weights_and_take_the_predicted_bytes(run):
    assert run["gemlite"].startswith("0.6.")
    assert len(run["layers"]) == 3
    for shape, layer in run["layers"].items():
        assert layer["bytes"] == layer["predicted"], shape
        assert layer["dtype"] == "torch.float16"
        k = shape.split("x")[0]
        assert set(layer["relative_error"]) == {
            "dequantize",
            f"1x{k}",
            f"3x{k}",
            f"17x{k}",
            f"2x3x{k}",
            f"300x{k}",
            f"2x150x{k}",
        }
        for m, error in layer["relative_error"].items():
            assert error < 5e-3, (shape, m, error)  # fp16 rounding; a wrong scale, zero or packing order is > 10%


def test_a_gemlite_llm_keeps_its_bytes_logits_and_ids(run):
    model = run["model"]
    assert model["bytes"] == model["predicted"]
    assert model["fused"] == "UIntxBitPackedTensor" and model["slices_are_views"]
    assert model["compiled"], model["note"]  # the compiled step ran, not eager after a failure
    assert model["layer_class"] == "GemliteLinear" and model["note"] is None  # compiled prefill and decode, no fallback
    assert model["graph_breaks"] == 0  # GemliteLinear's branch and dequantize trace into the compiled graphs
    image, text = model["prefill_tokens"]
    assert (
        image > 2048 and 256 <= text <= 2048
    )  # compiled prefills without and (on CUDA) with a graph, both dequantizing
    assert model["logits_relative_error"] < 5e-3
    for request in ("", " text"):
        eager, compiled = model["ids"]["eager" + request][0], model["ids"]["compiled" + request][0]
        assert len(eager) == 8
        assert compiled[:4] == eager[:4], request  # fp16 rounding of fused ops may part them later
