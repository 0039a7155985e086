"""Subprocess entry point for `--isolate` / `--processes`: read one job (JSON) on stdin, measure it, print its
record as one JSON line on stdout. An OOM, error, skip or non-finite figure inside is recorded by run_job (so
the parent keeps its status); only a hard crash makes the parent write the record instead."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nvila_bench.core.analysis.hardware import Peaks
from nvila_bench.core.measuring.point import BenchPoint
from nvila_bench.core.measuring.session import Session
from nvila_bench.core.measuring.timing import MeasureConfig
from nvila_bench.runner.sweep import run_job
from nvila_bench.suites.registry import Job


def main() -> int:
    payload = json.loads(sys.stdin.read())
    point = BenchPoint.from_config(payload["point"])
    peaks = {d: Peaks(**p) for d, p in (payload.get("other_peaks") or {}).items()}
    peaks[point.dtype] = Peaks(**payload["peaks"]) if payload.get("peaks") else None
    out_dir = Path(payload["out_dir"]) if payload.get("out_dir") else None
    session = Session(MeasureConfig(**payload["measure"]), peaks, out_dir)
    record = run_job(Job(payload["suite"], point), session, payload["run_id"], payload["environment"])
    print("\n" + record.to_json(), flush=True)  # on a line of its own, whatever the suite printed before
    return 0


if __name__ == "__main__":
    sys.exit(main())
