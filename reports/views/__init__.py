"""Suites' own report views, found by the name a suite declares (`Suite.view`, read as `SuiteOutputs.view`).

A view is two files named after it:

    reports/views/<view>.py                    TITLE (the page's navigation), ANCHOR (the section's id) and
                                               build(records) -> dict: a pure function of every current record
                                               of the report (a view may draw on other suites' records)
    reports/templates/views/<view>.html.j2     the section's body; what build returned is `view`

A suite without one gets the report's generic table of its headline metrics (reports/suite_sections.py).
"""

from __future__ import annotations

import re
from importlib import import_module
from importlib.resources import files
from types import ModuleType

NAME = re.compile(r"[a-z][a-z0-9_]*")


def template(name: str) -> str:
    """The view's template partial, as the report's Jinja loader names it."""
    return f"views/{name}.html.j2"


def find(name: str) -> ModuleType:
    """The view module of that name, with its template partial beside it; ValueError (one line) when either is
    missing, naming the files a view needs."""
    if not NAME.fullmatch(name or ""):
        raise ValueError(f"report view {name!r}: a view's name is a Python module name (reports/views/<view>.py)")
    partial = files("nvila_bench.reports").joinpath("templates", template(name))
    try:
        module = import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
        module = None
    if module is None or not partial.is_file():
        raise ValueError(
            f"report view {name!r} needs reports/views/{name}.py and reports/templates/views/{name}.html.j2"
        )
    return module
