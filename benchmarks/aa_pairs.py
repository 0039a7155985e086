"""A/A pairs through the gate: the same point measured 2N times, alternately into A and B files, then
`gate --threshold 5%` on each pair. A false alarm is a gate exit code of 1 on a pair; a pair the gate cannot
compare (exit 2: an error record, or no fastjsonschema to read records with) is no pass, and makes this script
exit 1. After each pair it prints the count so far, so a run cut short still says how many pairs passed.

    python benchmarks/aa_pairs.py OUT_DIR --suite prefill|decode --preset nvila-lite-2b [--pairs 5] [--processes 2]

With --processes 1 each side is measured in this process (the model and its compiled graphs built once): the
compiled path's own run-to-run spread. With --processes K each side pools K fresh subprocesses (as `run
--processes K`), so process-to-process noise (compiles, allocations, clocks) is inside the gate's CI too: the
A/A goal's setting (K >= 2).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from nvila_bench.suites.registry import Job

from nvila_bench.cli import main as cli
from nvila_bench.core.measuring.env import capture_environment
from nvila_bench.core.measuring.point import BenchPoint
from nvila_bench.core.measuring.result_files import ResultWriter
from nvila_bench.core.measuring.results import new_run_id
from nvila_bench.core.measuring.session import Session
from nvila_bench.core.measuring.timing import MeasureConfig
from nvila_bench.runner.sweep import merge_runs, run_isolated, run_job


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("--suite", default="prefill")
    p.add_argument("--preset", default="nvila-lite-2b")
    p.add_argument("--device", default="cuda")
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--min-seconds", type=float, default=2.0)
    p.add_argument("--processes", type=int, default=1, help="fresh subprocesses pooled into each side (>= 1)")
    a = p.parse_args()
    if a.processes < 1 or a.pairs < 1:
        sys.exit("aa_pairs.py: --pairs and --processes must be >= 1")
    if importlib.util.find_spec("fastjsonschema") is None:  # the gate reads records: say so before measuring
        sys.exit("aa_pairs.py: the gate reads records with fastjsonschema: install it (benchmarks/gpu_wheels.sh)")
    point = BenchPoint(a.preset, a.device, images=((1920, 1080),), new_tokens=a.new_tokens)
    session = Session(MeasureConfig(warmup=2, repeats=10, min_seconds=a.min_seconds))
    env = capture_environment("sdpa", a.device)
    alarms, failed = 0, 0
    for i in range(a.pairs):
        files = []
        for name in "ab":
            folder, job, run_id = a.out / f"{a.suite}-{i}{name}", Job(a.suite, point), new_run_id()
            if a.processes == 1:
                record = run_job(job, session, run_id, env)
            else:
                record = merge_runs([run_isolated(job, session, run_id, env) for _ in range(a.processes)])
            ResultWriter(folder).write(record)
            files.append(str(folder / "results.jsonl"))
        code = cli(["gate", "--baseline", files[0], "--candidate", files[1], "--threshold", "5%"])
        alarms += code == 1
        failed += code not in (0, 1)
        print(f"{a.suite} pair {i}: gate exit {code}", flush=True)
        print(summary(a.suite, a.preset, alarms, i + 1 - failed, a.processes, failed), flush=True)
    sys.exit(1 if failed else 0)


def summary(suite: str, preset: str, alarms: int, compared: int, processes: int, failed: int = 0) -> str:
    """The count so far, the line benchmarks/goals.py reads (the last one of the output)."""
    side = "one process" if processes == 1 else f"{processes} processes"
    not_compared = f"; {failed} pair(s) not compared (gate exit 2)" if failed else ""
    return f"{suite} {preset}: {alarms} false alarm(s) in {compared} A/A pairs ({side} a side){not_compared}"


if __name__ == "__main__":
    main()
