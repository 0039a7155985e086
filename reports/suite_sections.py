"""Each suite's own section of the report, from what the suite declares (`SuiteOutputs`, passed in by the CLI).

A suite with a view (`SuiteOutputs.view`) gets its view: `reports/views/<view>.py` turns the records into what
`reports/templates/views/<view>.html.j2` shows (see views/__init__.py). A view is shown whether or not the run
measured its suite, so its "not measured" lines say how to. Every other suite the records hold gets a generic
table: one row per point (its settings and hardware) and one column per headline metric, with its unit and help.
A suite no declaration names (records of an older version) shows every metric its records hold.
"""

from __future__ import annotations

from collections.abc import Mapping

from nvila_bench.core.measuring.results import Record
from nvila_bench.core.measuring.specs import MetricSpec, SuiteOutputs

from . import views
from .records import hardware_of, point_label, value


def _columns(suite: str, records: list[Record], outputs: SuiteOutputs | None) -> list[MetricSpec]:
    """The suite's headline metrics; for a suite no declaration names, every metric of its records (their units)."""
    if outputs is not None:
        return [spec for name in outputs.headline if (spec := outputs.spec(name))]
    seen: dict[str, MetricSpec] = {}
    for r in records:
        for name, m in r.metrics.items():
            if name not in seen and _kind(m.value) != "other":
                seen[name] = MetricSpec(name, m.unit, m.better)
    return list(seen.values())


def _kind(x) -> str:
    """How a cell shows a value: a number (formatted by its unit), a text, nothing, or other (a list, a table)."""
    if x is None:
        return "none"
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return "number"
    return "text" if isinstance(x, str) else "other"


def suite_table(suite: str, records: list[Record], outputs: SuiteOutputs | None) -> dict:
    """The generic section of one suite: its completed points (the failed ones are in the failures section)."""
    mine = [r for r in records if r.suite == suite]
    done = [r for r in mine if r.ok]
    columns = _columns(suite, done, outputs)
    rows = [
        {
            "label": point_label(r).removeprefix(f"{suite} "),
            "hardware": hardware_of(r),
            "provenance": r.provenance,
            "cells": [{"value": value(r, c.name), "kind": _kind(value(r, c.name)), "unit": c.unit} for c in columns],
        }
        for r in done
    ]
    return {
        "kind": "table",
        "suite": suite,
        "title": suite,
        "anchor": f"suite-{suite}",
        "help": outputs.title if outputs else "",
        "declared": outputs is not None,
        "columns": [{"name": c.name, "unit": c.unit, "help": c.help} for c in columns],
        "rows": rows,
        "failed": len(mine) - len(done),
        "provenance": sorted({r.provenance for r in done}),
    }


def view_section(name: str, records: list[Record]) -> dict:
    module = views.find(name)
    return {
        "kind": "view",
        "view": name,
        "title": module.TITLE,
        "anchor": module.ANCHOR,
        "template": views.template(name),
        "data": module.build(records),
    }


def suite_sections(records: list[Record], outputs: Mapping[str, SuiteOutputs]) -> list[dict]:
    """Every declared suite's view (one section per view, where several suites share one), and a generic table for
    each other suite the records hold, in the declarations' order (then the undeclared suites', by name)."""
    present = list(dict.fromkeys(r.suite for r in records))
    out, shown = [], set()
    for suite, declared in outputs.items():
        if declared.view:
            if declared.view not in shown:
                shown.add(declared.view)
                out.append(view_section(declared.view, records))
        elif suite in present:
            out.append(suite_table(suite, records, declared))
    out += [suite_table(suite, records, None) for suite in sorted(set(present) - set(outputs))]
    return out
