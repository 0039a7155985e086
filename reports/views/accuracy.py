"""The `accuracy` suite's report view: our scores beside the paper's (Table 9 / 10), the synthetic tasks' scores
against chance, and accuracy against measured TTFT."""

from __future__ import annotations

from nvila_bench.model import get_preset

from nvila_bench.core.analysis import paper
from nvila_bench.core.measuring.results import Record

from .. import charts
from ..claims import RUN_SUITES
from ..records import hardware_of, measured, value

TITLE = "Accuracy"  # the page's navigation
ANCHOR = "accuracy"  # the section's id
PAPER_MODEL = "nvila-8b"  # the model the paper's accuracy tables are about


def accuracy(records: list[Record]) -> dict:
    """Our accuracy records beside the paper's (Table 9 / 10) and beside our TTFT for the same preset."""
    ours = {(r.preset, r.config.get("task")): r for r in records if r.suite == "accuracy" and r.ok}
    tables = {}
    for kind in ("image", "video"):
        rows = []
        for task, entry in paper.accuracy_table(kind).items():
            scores = paper.scores(entry)
            rows.append(
                {
                    "task": task,
                    "name": entry["name"],
                    "paper": scores,
                    "ours": {p: value(ours.get((p, task)), "score") for p in scores},
                }
            )
        tables[kind] = rows
    ttft = {}
    for r in measured(records, "prefill"):
        if value(r, "ttft") is not None:
            ttft.setdefault(r.preset, value(r, "ttft"))
    scatter_points = [
        {"label": str(p), "x": ttft[p] * 1e3, "y": value(r, "score")}
        for (p, task), r in ours.items()
        if p in ttft and value(r, "score") is not None
    ]
    chart = charts.scatter(scatter_points, "TTFT, ms (measured)", "score") if scatter_points else None
    nvila = get_preset(
        PAPER_MODEL
    )  # the paper's tables: NVILA-8B, NVILA-Lite-8B and the VILA1.5 baseline; the video model
    presets = {"image": [nvila.name, "nvila-lite-8b", nvila.baseline], "video": [nvila.video_model]}
    synthetic = [
        {
            "task": r.config.get("task"),
            "preset": r.preset,
            "hardware": hardware_of(r),
            "weights": r.extra.get("weights"),
            "checkpoint": r.config.get("checkpoint"),
            "temporal_pool": r.config.get("temporal_pool"),
            "score": value(r, "score"),
            "stderr": value(r, "stderr"),
            "n": value(r, "n"),
            "chance": value(r, "chance"),
            "tokens": value(r, "media_tokens"),
        }
        for r in records
        if r.suite == "accuracy" and r.ok and str(r.config.get("task", "")).startswith("synthetic")
    ]
    return {
        "tables": tables,
        "presets": presets,
        "chart": chart,
        "measured": bool(ours),
        "synthetic": synthetic,
        "command": "nvila-bench run accuracy --preset nvila-8b --checkpoint /path/to/NVILA-8B --tasks ai2d,mmmu_val "
        "--out results/",
        "available": "accuracy" in RUN_SUITES,
    }


def build(records: list[Record]) -> dict:
    return accuracy(records)
