"""One result currency: typed `Metric`s in `Record`s, written as versioned JSONL by one writer.

A record is one sweep point (or one analytic figure set, one profile, one accuracy task):

    {"schema_version": 2, "run_id": "...", "point_id": "...", "timestamp": "2026-...Z",
     "suite": "prefill", "status": "ok" | "oom" | "error", "error": null | "one line",
     "provenance": "measured" | "analytic" | "paper", "preset": "nvila-8b",
     "config": {... every setting of the point ...}, "environment": {... see env.py ...},
     "metrics": {"ttft": {"value": 0.041, "unit": "s", "provenance": "measured", "better": "lower",
                          "merge": "pool", "summary": {...stats.Summary...}, "samples": [...]}, ...}}

A metric says itself which direction is better (`better`: lower, higher, or null for counts and settings)
and how K process runs of a point merge into one (`merge`: pool the samples, take the max, rescale with the
metric it is `derived_from`, or keep the first run's). Version-1 files (no `better` / `merge`) are read and
upgraded on the fly (`upgrade_v1`), so old runs still report and gate.

`ResultWriter` appends a record with a single `os.write` of a whole line and fsyncs it: a crash or Ctrl-C
loses at most the point in flight, never a completed one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from nvila_bench.core.stats import Summary, bounded_samples, summarize, throughput_from_samples

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
STATUSES = ("ok", "oom", "error")
PROVENANCES = ("measured", "analytic", "paper")
BETTER = ("lower", "higher", None)  # None: not a figure of merit (a count, a setting, a table)
MERGES = ("pool", "max", "rescale", "first")


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]


def point_id(suite: str, config: dict) -> str:
    """Stable id of a point's settings: the same settings give the same id across runs (for history)."""
    return hashlib.sha256(json.dumps([suite, config], sort_keys=True).encode()).hexdigest()[:12]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Metric:
    """One figure of a record: its value and unit, where it comes from, which direction is better and how
    several process runs of the point merge. Timings and rates also keep their distribution."""

    value: Any  # a number, or a table (list / dict) or text for descriptive metrics
    unit: str
    provenance: str = "measured"
    better: str | None = None
    merge: str = "first"
    summary: dict | None = None  # stats.Summary.to_dict() of the samples
    samples: list[float] | None = None  # raw samples (at most 1000 per process run)
    groups: list[int] | None = None  # sizes of the process runs pooled in `samples`
    derived_from: str | None = None  # e.g. an MFU computed from the median of "ttft"

    def __post_init__(self):
        if not isinstance(self.unit, str):
            raise ValueError(f"unit must be text, got {self.unit!r}")
        if self.provenance not in PROVENANCES:
            raise ValueError(f"provenance {self.provenance!r} not in {PROVENANCES}")
        if self.better not in BETTER:
            raise ValueError(f"better {self.better!r} not in {BETTER}")
        if self.merge not in MERGES:
            raise ValueError(f"merge {self.merge!r} not in {MERGES}")
        if self.merge == "rescale" and not self.derived_from:
            raise ValueError("a rescaled metric needs derived_from")

    # ---- constructors ---------------------------------------------------------------------------------
    @classmethod
    def timing(cls, seconds: Sequence[float], unit: str = "s") -> Metric:
        """A measured duration: median of the samples, lower is better, runs pool their samples."""
        summary = summarize(seconds, unit)
        return cls(summary.median, unit, better="lower", merge="pool", summary=summary.to_dict(),
                   samples=bounded_samples(seconds))  # fmt: skip

    @classmethod
    def rate(cls, seconds: Sequence[float], items: float, unit: str) -> Metric:
        """A measured throughput: `items` per iteration over each iteration's seconds (each sample inverted,
        never the median latency), higher is better."""
        summary = throughput_from_samples(seconds, items, unit)
        rates = [items / s for s in seconds]
        return cls(summary.median, unit, better="higher", merge="pool", summary=summary.to_dict(),
                   samples=bounded_samples(rates))  # fmt: skip

    @classmethod
    def analytic(cls, value, unit: str, better: str | None = None) -> Metric:
        """A figure of the cost or memory model (or a peak it uses): no samples, never merged."""
        return cls(value, unit, "analytic", better=better)

    @classmethod
    def measured(cls, value, unit: str, better: str | None = None, merge: str = "first") -> Metric:
        """One measured value without a distribution (a count, a peak, a score)."""
        return cls(value, unit, better=better, merge=merge)

    @classmethod
    def utilisation(cls, value: float, of: str) -> Metric:
        """MFU / MBU: a fraction of a peak computed from the median of metric `of`; follows it when runs merge."""
        return cls(value, "fraction", better="higher", merge="rescale", derived_from=of)

    @property
    def stats(self) -> Summary | None:
        return Summary.from_dict(self.summary) if self.summary else None

    def to_dict(self) -> dict:
        out = {"value": self.value, "unit": self.unit, "provenance": self.provenance, "better": self.better,
               "merge": self.merge}  # fmt: skip
        for name in ("summary", "samples", "groups", "derived_from"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> Metric:
        if not isinstance(d, dict) or "value" not in d or "unit" not in d:
            raise ValueError("a metric needs value and unit")
        known = {"value", "unit", "provenance", "better", "merge", "summary", "samples", "groups", "derived_from"}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class Record:
    """One point's result: settings, environment, status and metrics. Build with `Record(...)`; write with
    `ResultWriter`; read with `read_results`."""

    suite: str
    config: dict
    metrics: dict[str, Metric]
    run_id: str
    status: str = "ok"
    error: str | None = None
    provenance: str = "measured"
    environment: dict | None = None
    timestamp: str = field(default_factory=_now)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self):
        problems = []
        if not isinstance(self.suite, str) or not self.suite:
            problems.append(f"suite {self.suite!r} is not a name")
        if not isinstance(self.config, dict):
            problems.append("config must be an object")
        if not isinstance(self.metrics, dict) or not all(isinstance(m, Metric) for m in self.metrics.values()):
            problems.append("metrics must map names to Metric")
        if self.status not in STATUSES:
            problems.append(f"status {self.status!r} not in {STATUSES}")
        if self.provenance not in PROVENANCES:
            problems.append(f"provenance {self.provenance!r} not in {PROVENANCES}")
        if self.status != "ok" and not self.error:
            problems.append(f"status {self.status!r} needs an error message")
        if problems:
            raise ValueError("invalid result record: " + "; ".join(problems))

    @property
    def preset(self) -> str | None:
        return self.config.get("preset")

    @property
    def point_id(self) -> str:
        return point_id(self.suite, self.config)

    @property
    def extra(self) -> dict:
        return self.config.get("extra") or {}

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def value(self, name: str):
        """A metric's value, or None when the point failed or the metric is missing."""
        m = self.metrics.get(name) if self.ok else None
        return None if m is None else m.value

    def to_dict(self) -> dict:
        return {
            "schema_version": self.schema_version, "run_id": self.run_id, "point_id": self.point_id,
            "timestamp": self.timestamp, "suite": self.suite, "status": self.status, "error": self.error,
            "provenance": self.provenance, "preset": self.preset, "config": self.config,
            "environment": self.environment, "metrics": {k: m.to_dict() for k, m in self.metrics.items()},
        }  # fmt: skip

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict) -> Record:
        """A record of any readable schema version (version 1 is upgraded); ValueError names what is wrong."""
        if not isinstance(d, dict):
            raise ValueError("a record must be a JSON object")
        version = d.get("schema_version")
        if version not in READABLE_VERSIONS:
            raise ValueError(f"schema_version {version!r} is not one this version reads ({READABLE_VERSIONS})")
        missing = [k for k in ("run_id", "timestamp", "suite", "status", "provenance", "config", "metrics") if k not in d]
        if missing:
            raise ValueError(f"invalid result record: missing {', '.join(map(repr, missing))}")
        if not isinstance(d["metrics"], dict):
            raise ValueError("invalid result record: metrics must be an object")
        raw = upgrade_v1(d["metrics"]) if version == 1 else d["metrics"]
        metrics = {}
        for name, m in raw.items():
            try:
                metrics[name] = Metric.from_dict(m)
            except (TypeError, ValueError) as e:
                raise ValueError(f"invalid result record: metric {name!r}: {e}") from None
        return cls(d["suite"], d["config"], metrics, d["run_id"], d["status"], d.get("error"), d["provenance"],
                   d.get("environment"), d["timestamp"], SCHEMA_VERSION)  # fmt: skip


# ---- reading version 1 ----------------------------------------------------------------------------------
# Version 1 stored neither direction nor merge rule. The gate guessed "higher is better" from a "/s" unit
# suffix (so an MFU drop passed as an improvement); these are the metrics of version 1 whose direction is
# known, by name or by unit.
_HIGHER_V1 = ("score", "mfu", "mbu", "samples_per_s", "tokens_per_s", "iterations_per_s", "decode_tokens_per_s")


def v1_direction(name: str, unit: str, provenance: str) -> str | None:
    if unit.endswith("/s") or name in _HIGHER_V1 or name.endswith(("_mfu", "_mbu")):
        return "higher"
    if provenance == "measured" and unit in ("s", "bytes") or name == "profiler_overhead":
        return "lower"
    return None


def upgrade_v1(metrics: dict) -> dict:
    """Version-1 metrics as version 2: direction as above; merge by what version 1 did (pool samples, max of
    measured peaks and KV-cache bytes, rescale what has an "of")."""
    out = {}
    for name, m in metrics.items():
        if not isinstance(m, dict):
            raise ValueError(f"invalid result record: metric {name!r} is not an object")
        m = dict(m)
        unit, provenance = str(m.get("unit")), m.get("provenance")
        m.setdefault("better", v1_direction(name, unit, provenance))
        if "of" in m:
            m["derived_from"], m["merge"] = m.pop("of"), "rescale"
        elif "samples" in m and "summary" in m:
            m["merge"] = "pool"
        elif name.startswith(("peak_", "kv_cache_bytes")) and provenance == "measured":
            m["merge"] = "max"
        out[name] = m
    return out


# ---- writing and reading ---------------------------------------------------------------------------------
class ResultWriter:
    """The one writer: appends records to DIR/results.jsonl, one flushed and fsync'd line each."""

    def __init__(self, out_dir: str | Path, filename: str = "results.jsonl"):
        self.path = Path(out_dir) / filename
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def write(self, record: Record) -> None:
        line = (record.to_json() + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one call: a signal cannot leave half a line behind
            os.fsync(fd)
        finally:
            os.close(fd)
        self.count += 1


def read_results(path: str | Path) -> list[Record]:
    """All records of a results file (or of DIR/results.jsonl). Any problem is a ValueError of one line naming
    the file and line: missing or empty file, a line that is not JSON (a truncated last line is called
    truncated), a record of an unknown schema version or shape."""
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
            data = json.loads(line)
        except json.JSONDecodeError as e:
            truncated = number == len(lines) and not text.endswith("\n")
            why = "truncated record (the file ends mid-line)" if truncated else f"not JSON ({e.msg})"
            raise ValueError(f"{path}:{number}: {why}") from None
        try:
            records.append(Record.from_dict(data))
        except ValueError as e:
            raise ValueError(f"{path}:{number}: {e}") from None
    if not records:
        raise ValueError(f"{path}: no result records")
    return records


def load_results(paths) -> list[Record]:
    """Records of several results files or directories (a directory: every *.jsonl below it), in order."""
    records = []
    for path in map(Path, paths):
        files = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
        if path.is_dir() and not files:
            raise ValueError(f"{path}: no *.jsonl results files in this directory")
        for file in files:
            records.extend(read_results(file))
    return records


def hardware_of(record: Record) -> str:
    """What a record's figures ran on, in words: the GPU name, the CPU model, or the hardware table entry an
    analytic record was computed for. Two records are comparable only on the same hardware."""
    env = record.environment or {}
    if record.provenance == "analytic" or not env:
        return f"{record.config.get('hardware') or 'no hardware'} (analytic)"
    if str(env.get("device", "cpu")).startswith("cuda"):
        gpus = env.get("gpu") or [{}]
        return env.get("torch_device_name") or gpus[0].get("name") or "unknown GPU"
    return f"CPU {env.get('cpu_model') or 'unknown'} ({env.get('cpu_count')} threads)"
