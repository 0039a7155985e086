"""A/A pairs through the gate: the same point measured N times in one process (the model and its compiled
graphs built once), alternately into A and B files, then `gate --threshold 5%` on each pair. A false alarm
is a gate exit code of 1 on a pair; a pair the gate cannot compare (exit 2: an error record, or no
fastjsonschema to read records with) is no pass, and makes this script exit 1.

    python benchmarks/aa_pairs.py OUT_DIR --suite prefill|decode --preset nvila-lite-2b [--pairs 5]

Separate processes would add process-to-process noise (use `run --processes K` for that); this checks that
the compiled path's own run-to-run spread stays under the gate's threshold.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from nvila_bench.cli import main as cli
from nvila_bench.core.env import capture_environment
from nvila_bench.core.point import BenchPoint
from nvila_bench.core.results import ResultWriter, new_run_id
from nvila_bench.core.session import Session
from nvila_bench.core.timing import MeasureConfig
from nvila_bench.runner.sweep import run_job
from nvila_bench.suites.registry import Job


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("--suite", default="prefill")
    p.add_argument("--preset", default="nvila-lite-2b")
    p.add_argument("--device", default="cuda")
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--min-seconds", type=float, default=2.0)
    a = p.parse_args()
    if importlib.util.find_spec("fastjsonschema") is None:  # the gate reads records: say so before measuring
        sys.exit("aa_pairs.py: the gate reads records with fastjsonschema: install it (benchmarks/gpu_wheels.sh)")
    point = BenchPoint(a.preset, a.device, images=((1920, 1080),), new_tokens=a.new_tokens)
    session = Session(MeasureConfig(warmup=2, repeats=10, min_seconds=a.min_seconds))
    env = capture_environment("sdpa", a.device)
    alarms, failed = 0, 0
    for i in range(a.pairs):
        files = []
        for side in "ab":
            folder = a.out / f"{a.suite}-{i}{side}"
            ResultWriter(folder).write(run_job(Job(a.suite, point), session, new_run_id(), env))
            files.append(str(folder / "results.jsonl"))
        code = cli(["gate", "--baseline", files[0], "--candidate", files[1], "--threshold", "5%"])
        alarms += code == 1
        failed += code not in (0, 1)
        print(f"{a.suite} pair {i}: gate exit {code}", flush=True)
    compared = a.pairs - failed
    print(f"{a.suite} {a.preset}: {alarms} false alarm(s) in {compared} A/A pairs"
          + (f"; {failed} pair(s) not compared (gate exit 2)" if failed else ""), flush=True)  # fmt: skip
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
