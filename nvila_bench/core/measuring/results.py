"""One result currency: typed `Metric`s in `Record`s, written as versioned JSONL by one writer.

A record is one sweep point (or one analytic figure set, one profile, one accuracy task): its settings
(`config`), `environment`, `status` and `metrics`, each metric with its value, unit, provenance, which direction
is better (`better`) and how K process runs of a point merge (`merge`). `record.schema.json` is the full format;
`read_results` checks every line against it. Version-1 files (no `better` / `merge`) are upgraded on reading.
`ResultWriter` appends one whole fsync'd line or nothing: a crash, Ctrl-C or a full disk loses at most the point
in flight. A non-finite figure is written as null with a note.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import numbers
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from nvila_bench.core.measuring.record_schema import validate_record
from nvila_bench.core.measuring.stats import Summary, bounded_samples, summarize, throughput_from_samples

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
# ok: measured; oom: out of (device or host) memory; error: failed; skipped: cannot run here (a missing
# library, a GPU-only option on CPU), with the reason; nonfinite: measured, but a figure came out NaN / inf
# (recorded as null with a note, e.g. a diverging training run).
STATUSES = ("ok", "oom", "error", "skipped", "nonfinite")
PROVENANCES = ("measured", "analytic", "paper")
BETTER = ("lower", "higher", None)  # None: not a figure of merit (a count, a setting, a table)
MERGES = ("pool", "max", "rescale", "first")
_OPTIONAL = ("summary", "samples", "groups", "derived_from", "note")  # metric fields written only when set
_KNOWN = {"value", "unit", "provenance", "better", "merge", *_OPTIONAL}


class PointSkipped(Exception):
    """Raised by a suite's measure when a point cannot run here (QLoRA without bitsandbytes, FP8 without
    torchao, a GPU-only option on CPU): the runner records it as `skipped` with this message as the reason."""


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

    value: Any  # a number, or a table (list / dict) or text for descriptive metrics; None: see note
    unit: str
    provenance: str = "measured"
    better: str | None = None
    merge: str = "first"
    summary: dict | None = None  # stats.Summary.to_dict() of the samples
    samples: list[float] | None = None  # raw samples (at most 1000 per process run)
    groups: list[int] | None = None  # sizes of the process runs pooled in `samples`
    derived_from: str | None = None  # e.g. an MFU computed from the median of "ttft"
    note: str | None = None  # why the value is missing, e.g. "non-finite (nan)"

    def __post_init__(self):
        if not isinstance(self.unit, str):
            raise ValueError(f"unit must be text, got {self.unit!r}")
        for name, allowed in (("provenance", PROVENANCES), ("better", BETTER), ("merge", MERGES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} {getattr(self, name)!r} not in {allowed}")
        if self.merge == "rescale" and not self.derived_from:
            raise ValueError("a rescaled metric needs derived_from")

    @classmethod
    def timing(cls, seconds: Sequence[float], unit: str = "s") -> Metric:
        """A measured duration: median of the samples, lower is better, runs pool their samples."""
        summary = summarize(seconds, unit)
        return cls(
            summary.median,
            unit,
            better="lower",
            merge="pool",
            summary=summary.to_dict(),
            samples=bounded_samples(seconds),
        )

    @classmethod
    def rate(cls, seconds: Sequence[float], items: float, unit: str) -> Metric:
        """A measured throughput, higher is better: `items` over each iteration's seconds (never the median)."""
        summary = throughput_from_samples(seconds, items, unit)
        rates = [items / s for s in seconds]
        return cls(
            summary.median,
            unit,
            better="higher",
            merge="pool",
            summary=summary.to_dict(),
            samples=bounded_samples(rates),
        )

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
        out = {
            "value": self.value,
            "unit": self.unit,
            "provenance": self.provenance,
            "better": self.better,
            "merge": self.merge,
        }
        return out | {name: getattr(self, name) for name in _OPTIONAL if getattr(self, name) is not None}

    @classmethod
    def from_dict(cls, d: dict) -> Metric:  # d as record.schema.json checked it
        return cls(**{k: v for k, v in d.items() if k in _KNOWN})


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
        checks = [
            (isinstance(self.suite, str) and self.suite, f"suite {self.suite!r} is not a name"),
            (isinstance(self.config, dict), "config must be an object"),
            (
                isinstance(self.metrics, dict) and all(isinstance(m, Metric) for m in self.metrics.values()),
                "metrics must map names to Metric",
            ),
            (self.status in STATUSES, f"status {self.status!r} not in {STATUSES}"),
            (self.provenance in PROVENANCES, f"provenance {self.provenance!r} not in {PROVENANCES}"),
            (self.status == "ok" or self.error, f"status {self.status!r} needs an error message"),
        ]
        problems = [message for passed, message in checks if not passed]
        if problems:
            raise ValueError("invalid result record: " + "; ".join(problems))
        self.make_finite()

    def make_finite(self) -> None:
        """JSON has no NaN or infinity (and a NaN figure would compare as anything): a metric with a non-finite
        value, summary or sample becomes null with a note, its finite samples kept, and an `ok` point becomes
        `nonfinite` naming them; a non-finite setting (config, environment) becomes text, e.g. "inf"."""
        self.config, self.environment = _scrub(self.config, []), _scrub(self.environment, [])
        bad = []
        for name, m in self.metrics.items():
            found = []
            _scrub([m.value, m.summary, m.samples], found)
            if found:
                kinds = ", ".join(sorted(set(found)))
                samples = [x for x in m.samples or () if math.isfinite(x)] or None
                self.metrics[name] = replace(
                    m, value=None, summary=None, samples=samples, groups=None, note=f"non-finite ({kinds})"
                )
                bad.append(f"{name} ({kinds})")
        if bad and self.status == "ok":
            self.status, self.error = "nonfinite", "non-finite figures: " + ", ".join(bad)

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
        self.make_finite()  # again: a figure may have turned non-finite after construction (a merge)
        return {
            "schema_version": self.schema_version,
            "run_id": self.run_id,
            "point_id": self.point_id,
            "timestamp": self.timestamp,
            "suite": self.suite,
            "status": self.status,
            "error": self.error,
            "provenance": self.provenance,
            "preset": self.preset,
            "config": self.config,
            "environment": self.environment,
            "metrics": {k: m.to_dict() for k, m in self.metrics.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict) -> Record:
        """A record of any readable schema version (version 1 is upgraded), validated in full against
        record.schema.json; a ValueError of one line says what is wrong and where in the record."""
        if not isinstance(d, dict):
            raise ValueError("a record must be a JSON object")
        version = d.get("schema_version")
        if type(version) is not int or version not in READABLE_VERSIONS:  # type(): `true` is no version
            raise ValueError(f"schema_version {version!r} is not one this version reads ({READABLE_VERSIONS})")
        validate_record(d)  # then every metric below is well-formed
        raw = upgrade_v1(d["metrics"]) if version == 1 else d["metrics"]
        metrics = {name: Metric.from_dict(m) for name, m in raw.items()}
        return cls(
            d["suite"],
            d["config"],
            metrics,
            d["run_id"],
            d["status"],
            d.get("error"),
            d["provenance"],
            d.get("environment"),
            d["timestamp"],
            SCHEMA_VERSION,
        )


def _scrub(obj, found: list):
    """`obj` with each non-finite number as text ("nan", "inf", "-inf"), each appended to `found`."""
    if isinstance(obj, numbers.Real) and not isinstance(obj, numbers.Integral) and not math.isfinite(obj):
        found.append(str(float(obj)))
        return found[-1]
    if isinstance(obj, dict):
        return {k: _scrub(v, found) for k, v in obj.items()}
    return [_scrub(v, found) for v in obj] if isinstance(obj, (list, tuple)) else obj


# Version 1 stored neither direction nor merge rule (the gate guessed "higher" from a "/s" unit, so an MFU drop
# passed as an improvement); these are the version-1 metrics whose direction is known, by name or by unit.
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
