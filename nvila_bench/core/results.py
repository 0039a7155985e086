"""One result currency: versioned JSONL records, written one point at a time.

A record is one sweep point (or one ceilings / overhead measurement):

    {"schema_version": 1, "run_id": "...", "point_id": "...", "timestamp": "2026-...Z",
     "suite": "prefill", "status": "ok" | "oom" | "error", "error": null | "one line",
     "provenance": "measured" | "analytic" | "paper", "preset": "nvila-8b",
     "config": {... every setting of the point ...}, "environment": {... see env.py ...},
     "metrics": {"ttft": {"value": 0.041, "unit": "s", "provenance": "measured",
                          "summary": {...stats.Summary...}, "samples": [...]}, ...}}

Every metric carries its own provenance, so a measured record may hold analytic figures beside the
measured ones (e.g. the cost-model time floor). Records are appended with a single `os.write` of a whole
line and fsync'd: a crash or Ctrl-C loses at most the point in flight, never a completed one, and never
leaves half a line.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import uuid
from pathlib import Path

SCHEMA_VERSION = 1
STATUSES = ("ok", "oom", "error")
PROVENANCES = ("measured", "analytic", "paper")
REQUIRED = ("schema_version", "run_id", "point_id", "timestamp", "suite", "status", "provenance", "config", "metrics")


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]


def point_id(suite: str, config: dict) -> str:
    """Stable id of a point's settings: the same settings give the same id across runs (for history)."""
    return hashlib.sha256(json.dumps([suite, config], sort_keys=True).encode()).hexdigest()[:12]


def metric(value, unit: str, provenance: str = "measured", summary: dict | None = None, samples: list | None = None) -> dict:
    out = {"value": value, "unit": unit, "provenance": provenance}
    if summary is not None:
        out["summary"] = summary
    if samples is not None:
        out["samples"] = samples
    return out


def make_record(
    suite: str,
    config: dict,
    metrics: dict,
    run_id: str,
    environment: dict | None = None,
    status: str = "ok",
    error: str | None = None,
    provenance: str = "measured",
) -> dict:
    record = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "point_id": point_id(suite, config),
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "suite": suite,
        "status": status,
        "error": error,
        "provenance": provenance,
        "preset": config.get("preset"),
        "config": config,
        "environment": environment,
        "metrics": metrics,
    }
    validate_record(record)
    return record


def validate_record(record: dict) -> None:
    """Raise ValueError naming every way `record` breaks the schema."""
    problems = [f"missing {k!r}" for k in REQUIRED if k not in record]
    if record.get("schema_version") not in (None, SCHEMA_VERSION):
        problems.append(f"schema_version {record['schema_version']!r} != {SCHEMA_VERSION}")
    if record.get("status") not in STATUSES:
        problems.append(f"status {record.get('status')!r} not in {STATUSES}")
    if record.get("provenance") not in PROVENANCES:
        problems.append(f"provenance {record.get('provenance')!r} not in {PROVENANCES}")
    if record.get("status") in ("oom", "error") and not record.get("error"):
        problems.append(f"status {record['status']!r} needs an error message")
    for name, m in (record.get("metrics") or {}).items():
        if not isinstance(m, dict) or "value" not in m or "unit" not in m:
            problems.append(f"metric {name!r} needs value and unit")
        elif m.get("provenance") not in PROVENANCES:
            problems.append(f"metric {name!r} provenance {m.get('provenance')!r} not in {PROVENANCES}")
    if problems:
        raise ValueError("invalid result record: " + "; ".join(problems))


class ResultWriter:
    """Appends records to DIR/results.jsonl, one flushed and fsync'd line each."""

    def __init__(self, out_dir: str | Path, filename: str = "results.jsonl"):
        self.path = Path(out_dir) / filename
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def write(self, record: dict) -> None:
        validate_record(record)
        line = (json.dumps(record, sort_keys=True, allow_nan=False) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one call: a signal cannot leave half a line behind
            os.fsync(fd)
        finally:
            os.close(fd)
        self.count += 1


def read_results(path: str | Path) -> list[dict]:
    """All records of a results file (or of DIR/results.jsonl), each validated. Any problem is a ValueError
    of one line naming the file and line: missing or empty file, a line that is not JSON (a truncated last
    line is called truncated), a record of another schema version."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.jsonl"
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ValueError(f"{path}: no such results file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read results: {e}") from None
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            truncated = number == len(lines) and not text.endswith("\n")
            why = "truncated record (the file ends mid-line)" if truncated else f"not JSON ({e.msg})"
            raise ValueError(f"{path}:{number}: {why}") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number}: a record must be a JSON object")
        try:
            validate_record(record)
        except ValueError as e:
            raise ValueError(f"{path}:{number}: {e}") from None
        records.append(record)
    if not records:
        raise ValueError(f"{path}: no result records")
    return records


def load_results(paths) -> list[dict]:
    """Records of several results files or directories (a directory: every *.jsonl below it), in order."""
    records = []
    for path in map(Path, paths):
        files = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
        if path.is_dir() and not files:
            raise ValueError(f"{path}: no *.jsonl results files in this directory")
        for file in files:
            records.extend(read_results(file))
    return records


def hardware_of(record: dict) -> str:
    """What a record's figures ran on, in words: the GPU name, the CPU model, or the hardware table entry an
    analytic record was computed for. Two records are comparable only on the same hardware."""
    env = record.get("environment") or {}
    if record.get("provenance") == "analytic" or not env:
        return f"{record['config'].get('hardware') or 'no hardware'} (analytic)"
    if str(env.get("device", "cpu")).startswith("cuda"):
        gpus = env.get("gpu") or [{}]
        return env.get("torch_device_name") or gpus[0].get("name") or "unknown GPU"
    return f"CPU {env.get('cpu_model') or 'unknown'} ({env.get('cpu_count')} threads)"
