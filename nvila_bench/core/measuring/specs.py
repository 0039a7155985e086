"""What a suite declares it measures: one `MetricSpec` per metric it writes, and a suite's `SuiteOutputs` as the
report, the gate and the dashboard see them. Plain data, importable without torch: the CLI reads every suite's
declarations (suites/registry.py `declared_outputs`) and hands them to the readers."""

from __future__ import annotations

from dataclasses import dataclass

BETTER = ("lower", "higher", None)


@dataclass(frozen=True)
class MetricSpec:
    """One metric a suite writes: its key, unit, which direction is better, and how readers treat it."""

    name: str  # the metric's key in a record
    unit: str  # "s", "tokens/s", "bytes", "fraction", ...
    better: str | None  # "lower" | "higher" | None (a count or a setting)
    gated: bool = False  # compared by `nvila-bench gate` by default
    headline: bool = False  # a column of the suite's table in the report, and a dashboard series
    help: str = ""  # one line, shown in the report and in `nvila-bench run SUITE --help`

    def __post_init__(self):
        if self.better not in BETTER:
            raise ValueError(f"{self.name}: better must be one of {BETTER}, got {self.better!r}")
        if self.gated and self.better is None:
            raise ValueError(f"{self.name}: a gated metric needs a better direction")


@dataclass(frozen=True)
class SuiteOutputs:
    """A suite as the readers know it: its metrics, and the report view it has of its own (if any)."""

    suite: str
    title: str  # the suite's one-line help
    metrics: tuple[MetricSpec, ...] = ()
    view: str | None = None  # reports/views/<view>.py + reports/templates/views/<view>.html.j2

    def spec(self, name: str) -> MetricSpec | None:
        return next((m for m in self.metrics if m.name == name), None)

    @property
    def gated(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics if m.gated)

    @property
    def headline(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics if m.headline)
