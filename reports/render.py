"""Render reports and the history dashboard with Jinja2 (autoescaping on: names, errors and settings taken
from result files cannot inject markup). Charts arrive as SVG strings made by matplotlib, the only markup
marked safe. The output is one self-contained HTML file per page: no scripts from a network, no CDN."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

import jinja2
from markupsafe import Markup

import nvila_bench
from nvila_bench.core.measuring.results import Record
from nvila_bench.core.measuring.specs import SuiteOutputs

from . import sections


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("nvila_bench.reports", "templates"),
        autoescape=True,  # every template, whatever its file name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ms=fmt_ms, num=fmt_num, mib=fmt_mib, pct=fmt_pct, svg=lambda s: Markup(s) if s else "")
    return env


def fmt_ms(seconds) -> str:
    if seconds is None:
        return ""
    return f"{small(seconds * 1e3, 3)} ms" if seconds < 1 else f"{seconds:,.3f} s"


def small(x: float, decimals: int) -> str:
    """`x` with `decimals` decimals, or two significant digits where those would show a non-zero as 0."""
    return f"{x:,.{decimals}f}" if x == 0 or abs(x) >= 10**-decimals / 2 else f"{x:.2g}"


def fmt_num(x, digits: int = 4) -> str:
    if x is None:
        return ""
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e15):
        return f"{int(x):,}"
    return f"{x:,.{digits}g}"


def fmt_mib(nbytes) -> str:
    return "" if nbytes is None else f"{nbytes / 2**30:,.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:,.1f} MiB"


def fmt_pct(x) -> str:
    return "" if x is None else f"{small(x * 100, 1)}%"


def _meta() -> dict:
    return {
        "version": nvila_bench.__version__,
        "generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


def source_names(sources: list[str], out_file: str) -> list[str]:
    """How the report names its results files: relative to the report's folder where they lie below it, else by
    folder and file name; never an absolute path of the machine that measured."""
    folder = Path(out_file).resolve().parent
    out = []
    for source in sources:
        path = Path(source).resolve()
        if path.is_relative_to(folder) and path != folder:
            out.append(path.relative_to(folder).as_posix())
        else:
            out.append("/".join(part for part in (path.parent.name, path.name) if part))
    return out


def render_report(
    records: list[Record],
    sources: list[str],
    outputs: Mapping[str, SuiteOutputs],
    title: str = "nvila-bench report",
) -> str:
    """The HTML report of the records (as `load_results` returns them; version-1 files are upgraded there).
    `sources` name the results files as the page shows them (`source_names`); `outputs` are the suites'
    declarations (suite -> SuiteOutputs: the CLI passes every registered suite's)."""
    context = sections.build(records, sources, outputs)
    return _env().get_template("report.html.j2").render(title=title, meta=_meta(), **context)


def render_dashboard(context: dict) -> str:
    return _env().get_template("dashboard.html.j2").render(meta=_meta(), **context)
