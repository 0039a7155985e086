"""Subprocess entry point for `--isolate`: read one job (JSON) on stdin, measure it, print its record as one
JSON line on stdout. An OOM or error inside is recorded by run_point; only a hard crash makes the parent
write the record instead."""

from __future__ import annotations

import json
import sys

from nvila_bench.core.point import BenchPoint
from nvila_bench.suites.common import Peaks, Session
from nvila_bench.runner.sweep import run_point
from nvila_bench.core.timing import MeasureConfig


def main() -> int:
    job = json.loads(sys.stdin.read())
    point = BenchPoint.from_config(job["point"])
    session = Session({point.dtype: Peaks(**job["peaks"]) if job.get("peaks") else None})
    record = run_point(job["suite"], point, MeasureConfig(**job["measure"]), session, job["run_id"], job["environment"])
    print(json.dumps(record, sort_keys=True, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
