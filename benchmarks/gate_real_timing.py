"""The regression gate on real timings of this machine: an A/A pair passes, a 2x slowdown is flagged.

    python benchmarks/gate_real_timing.py        # needs a quiet machine; about a minute on 2 CPU cores

Not a unit test: on a busy shared runner the run-to-run drift (up to 30% measured on a 2-vCPU VM) can hide
even a 2x effect, and CI must not depend on a quiet machine. The gate's statistics under modelled noise are
tested in tests/test_gate.py; this script proves the whole path (CLI -> records -> gate) on real timings.
Runs are interleaved (A, B, slow, A, B, slow, ...) and each side pools its four runs as process groups.
"""

import os
import sys
import tempfile
from pathlib import Path

from nvila_bench.cli import main
from nvila_bench.core.comparison.gate import gate
from nvila_bench.core.measuring.result_files import load_results


def run() -> int:
    out = Path(tempfile.mkdtemp(prefix="gate-real-timing-"))
    argv = [
        "run",
        "prefill",
        "--preset",
        "vila-tiny",
        "--image",
        "448x448",
        "--warmup",
        "3",
        "--min-seconds",
        "0.4",
        "--quiet",
    ]
    assert main(argv + ["--out", str(out / "warm")]) == 0  # the first run in a process is slower
    for i in range(4):
        os.environ.pop("NVILA_BENCH_SLOWDOWN", None)
        assert main(argv + ["--out", str(out / "a" / str(i))]) == 0
        assert main(argv + ["--out", str(out / "b" / str(i))]) == 0
        os.environ["NVILA_BENCH_SLOWDOWN"] = "2.0"  # every stage stretched by a busy wait (timing.py)
        assert main(argv + ["--out", str(out / "slow" / str(i))]) == 0
    os.environ.pop("NVILA_BENCH_SLOWDOWN", None)
    a, b, slow = (load_results([out / side]) for side in ("a", "b", "slow"))
    aa, ab = gate(a, b, metrics=("ttft",)), gate(a, slow, metrics=("ttft",))
    print(f"A/A: {'pass' if aa.passed else 'FALSE ALARM'} {[c.change_text for c in aa.comparisons]}")
    print(f"A/slow: {[(c.verdict, c.change_text) for c in ab.comparisons]}")
    ok = aa.passed and [c.verdict for c in ab.comparisons] == ["regression"] and not ab.single_process
    print("gate on real timings:", "as expected" if ok else "NOT as expected (a busy machine?)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run())
