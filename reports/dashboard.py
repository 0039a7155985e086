"""The history dashboard: many runs (one results file each, e.g. one per CI job) as a static site.

    SITE/index.html          runs by date and git revision, one trend chart per key metric and preset with
                             regressions and improvements marked, and the list of flagged changes
    SITE/runs/<run>.html     each run's full report

The key metrics are each suite's declared headline and gated metrics (`SuiteOutputs`, passed in by the CLI). A
change is flagged with the gate's own rule (`nvila_bench.core.comparison.gate.compare_metric`): between
consecutive runs of the same point on the same hardware, only when the 95% CI of the change lies beyond the
threshold.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from nvila_bench.core.comparison.gate import compare_metric, direction, match_key
from nvila_bench.core.measuring.files import write_atomic
from nvila_bench.core.measuring.result_files import read_results
from nvila_bench.core.measuring.results import STATUSES, Record, hardware_of
from nvila_bench.core.measuring.specs import SuiteOutputs

from . import charts
from .records import latest, point_label
from .render import render_dashboard, render_report


@dataclass
class Run:
    """One results file: its records, when it ran and at which revision."""

    path: Path
    slug: str
    records: list[Record]

    @property
    def date(self) -> str:
        return min(r.timestamp for r in self.records)

    @property
    def revision(self) -> str:
        envs = [r.environment or {} for r in self.records]
        revs = [e.get("git_revision") for e in envs if e.get("git_revision")]
        if not revs:
            return "unknown"
        dirty = any(e.get("git_dirty") for e in envs)
        return revs[0][:10] + ("+dirty" if dirty else "")

    @property
    def hardware(self) -> list[str]:
        return sorted({hardware_of(r) for r in self.records if r.provenance == "measured"})

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.records)


def find_runs(results_dir: str | Path) -> list[Run]:
    """Every *.jsonl under the directory is one run, ordered by its first timestamp."""
    root = Path(results_dir)
    if not root.is_dir():
        raise ValueError(f"{root}: not a directory of results")
    files = sorted(root.rglob("*.jsonl"))
    if not files:
        raise ValueError(f"{root}: no *.jsonl results files below this directory")
    rels = [str(path.relative_to(root).with_suffix("")) for path in files]
    runs = [Run(path, slug, read_results(path)) for path, slug in zip(files, page_names(rels))]
    runs.sort(key=lambda run: (run.date, run.slug))
    return runs


def page_names(rels: list[str], limit: int = 80) -> list[str]:
    """A file-name-safe page name per results file (its path, punctuation folded to "_"), unique even on a
    case-insensitive disk: a name that two files share (`a b` and `a_b`), or that had to be shortened, gets
    a short hash of the file's whole relative path."""
    bases = [re.sub(r"[^A-Za-z0-9._-]+", "_", rel).strip("_.") or "run" for rel in rels]
    counts = Counter(b.casefold() for b in bases)
    hashed = [f"{b[:limit]}-{hashlib.sha256(rel.encode()).hexdigest()[:8]}" for b, rel in zip(bases, rels)]
    names = [h if counts[b.casefold()] > 1 or len(b) > limit else b for b, h in zip(bases, hashed)]
    if len({n.casefold() for n in names}) < len(names):  # a file named like another's hashed name
        names = hashed
    return names


def series_metrics(outputs: Mapping[str, SuiteOutputs]) -> dict[str, tuple[str, ...]]:
    """Suite -> the metrics the dashboard follows: its declared headline metrics, then its gated ones."""
    return {name: tuple(dict.fromkeys(o.headline + o.gated)) for name, o in outputs.items()}


def trends(runs: list[Run], threshold: float, metrics: Mapping[str, tuple[str, ...]]) -> tuple[list[dict], list[dict]]:
    """(one chart per metric and preset, the flagged changes) of `metrics` (suite -> the names it follows). Each
    point's series follows its match key and hardware across runs; a flag compares a run with the previous run
    that measured the same point (only for a metric that states which direction is better)."""
    series: dict[tuple[str, str], dict[tuple[str, str], dict]] = {}  # (metric, preset) -> (point, hw) -> series
    flags = []
    last: dict[tuple[str, str, str], tuple[int, Record]] = {}
    for index, run in enumerate(runs):
        for r in latest(run.records):  # a point measured twice in one file counts once: its newest record
            if r.provenance != "measured" or not r.ok:
                continue
            for metric in metrics.get(r.suite, ()):
                m = r.metrics.get(metric)
                if m is None or m.summary is None:
                    continue
                hw, key = hardware_of(r), match_key(r)
                s = series.setdefault((metric, str(r.preset)), {}).setdefault(
                    (key, hw),
                    {
                        "label": point_label(r) + f" ({hw})",
                        "x": [],
                        "y": [],
                        "low": [],
                        "high": [],
                        "flags": [],
                        "ticks": [],
                        "unit": m.unit,
                    },
                )
                flag = "pass"
                previous = last.get((metric, key, hw))
                if previous is not None and direction([previous[1].metrics[metric], m]) is not None:
                    c = compare_metric(s["label"], metric, previous[1].metrics[metric], m, threshold)
                    flag = c.verdict
                    if flag in ("regression", "improvement"):
                        flags.append(
                            {
                                "run": run.slug,
                                "previous": runs[previous[0]].slug,
                                "metric": metric,
                                "point": s["label"],
                                "change": c.change_text,
                                "verdict": flag,
                            }
                        )
                last[(metric, key, hw)] = (index, r)
                s["x"].append(index)
                s["y"].append(m.value)
                s["low"].append(m.summary["ci_low"])
                s["high"].append(m.summary["ci_high"])
                s["flags"].append(flag)
                s["ticks"].append(f"{run.date[:10]} {run.revision[:7]}")
    out = []
    for (metric, preset), by_point in sorted(series.items()):
        lines = list(by_point.values())
        unit = lines[0]["unit"]
        scale = 1e3 if unit == "s" else 1.0
        for s in lines:
            for k in ("y", "low", "high"):
                s[k] = [v * scale for v in s[k]]
        ylabel = f"{metric} ({'ms' if unit == 's' else unit})"
        out.append(
            {
                "metric": metric,
                "preset": preset,
                "runs": len({x for s in lines for x in s["x"]}),
                "chart": charts.trend(lines, ylabel),
            }
        )
    return out, flags


def build_site(
    results_dir: str | Path, site_dir: str | Path, threshold: float, outputs: Mapping[str, SuiteOutputs]
) -> Path:
    """Write the dashboard and every run's report (`outputs`: every suite's declarations); returns the index
    page's path."""
    runs = find_runs(results_dir)
    site = Path(site_dir)
    for run in runs:
        source = run.path.relative_to(results_dir).as_posix()  # never the measuring machine's absolute path
        html = render_report(run.records, [source], outputs, title=f"nvila-bench report: {run.slug}")
        write_atomic(site / "runs" / f"{run.slug}.html", html)
    charts_, flags = trends(runs, threshold, series_metrics(outputs))
    context = {
        "title": "nvila-bench dashboard",
        "source": Path(results_dir).resolve().name,
        "threshold": threshold,
        "runs": [
            {
                "slug": r.slug,
                "date": r.date,
                "revision": r.revision,
                "hardware": r.hardware,
                "records": len(r.records),
                **{s: r.count(s) for s in STATUSES},
                "statuses": {s: r.count(s) for s in STATUSES if r.count(s)},
                "suites": sorted({x.suite for x in r.records}),
            }
            for r in reversed(runs)
        ],
        "trends": charts_,
        "flags": flags,
    }
    return write_atomic(site / "index.html", render_dashboard(context))
