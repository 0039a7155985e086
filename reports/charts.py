"""Charts as inline SVG strings (matplotlib, Agg backend): the report stays one self-contained file.

Each function takes plain data (lists and dicts built by `sections.py`) and returns an `<svg>` element.
Text is kept as SVG text (small files, selectable), math parsing is off (a `$` in a preset name must not
be read as TeX), and the SVG ids are salted with a fixed string, so the same data gives the same bytes.
matplotlib escapes every label it writes into the SVG, so labels taken from result files cannot inject
markup.
"""

from __future__ import annotations

import io

from nvila_bench.model.stages import LLM_PREFILL, PREPROCESS, PROJECTOR, VISION

STAGE_COLOURS = {  # the prefill stages (model.stages), then the decode of the remaining tokens
    PREPROCESS: "#8c564b",
    VISION: "#1f77b4",
    PROJECTOR: "#ff7f0e",
    LLM_PREFILL: "#2ca02c",
    "decode": "#9467bd",
}


def _plt():
    try:
        import matplotlib
    except ImportError:
        raise ValueError("reports need matplotlib for their charts: pip install matplotlib") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "svg.fonttype": "none",
            "svg.hashsalt": "nvila-bench",
            "text.parse_math": False,
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "figure.dpi": 96,
        }
    )
    return plt


def _log_axis(ax, axis: str = "y") -> None:
    """Log scale with plain-number tick labels (math parsing is off, so the default 10^k labels would not render)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    getattr(ax, f"set_{axis}scale")("log")
    target = getattr(ax, f"{axis}axis")
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.6g}"))
    target.set_minor_formatter(NullFormatter())


def _svg(fig) -> str:
    plt = _plt()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype: the SVG is inlined in HTML


def stacked_stages(rows: list[dict], stages: tuple[str, ...]) -> str:
    """Horizontal stacked bars: one bar per row {"label", stage: seconds, ...}, milliseconds on the axis."""
    return _svg(stacked_stages_figure(rows, stages))


def stacked_stages_figure(rows: list[dict], stages: tuple[str, ...]):
    """The figure of `stacked_stages`; its legend sits in its own strip below the axes and their label
    (constrained layout reserves the room), so it never covers them."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.3), layout="constrained")
    labels = [r["label"] for r in rows][::-1]
    left = [0.0] * len(rows)
    for stage in stages:
        widths = [(r.get(stage) or 0.0) * 1e3 for r in rows][::-1]
        ax.barh(labels, widths, left=left, color=STAGE_COLOURS.get(stage), label=stage)
        left = [a + b for a, b in zip(left, widths)]
    ax.set_xlabel("milliseconds (median per stage)")
    fig.legend(ncols=len(stages), loc="outside lower center", frameon=False)
    return fig


def roofline(points: list[dict], roofs: list[dict]) -> str:
    """Achieved FLOP/s against arithmetic intensity, with each peak's roof (min(peak, intensity x bandwidth)).

    points: {"label", "intensity" FLOP/byte, "achieved" FLOP/s, "stage"}; roofs: {"label", "flops", "bandwidth"}.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    xs = [p["intensity"] for p in points]
    lo, hi = min(xs + [1.0]) / 4, max(xs + [1e3]) * 4
    for roof in roofs:
        ridge = roof["flops"] / roof["bandwidth"]
        grid = [lo, min(max(ridge, lo), hi), hi]
        ax.plot(grid, [min(roof["flops"], x * roof["bandwidth"]) for x in grid], "k--", lw=1)
        ax.annotate(roof["label"], (hi, roof["flops"]), ha="right", va="bottom", fontsize=8)
    for stage, colour in STAGE_COLOURS.items():
        mine = [p for p in points if p["stage"] == stage]
        if mine:
            ax.scatter(
                [p["intensity"] for p in mine], [p["achieved"] for p in mine], color=colour, label=stage, zorder=3
            )
    _log_axis(ax, "x")
    _log_axis(ax, "y")
    ax.set_xlabel("arithmetic intensity (FLOP / byte, cost model)")
    ax.set_ylabel("achieved FLOP/s (executed FLOPs / measured time)")
    ax.legend(frameon=False, fontsize=8)
    return _svg(fig)


def grouped_bars(groups: list[str], series: dict[str, list[float | None]], ylabel: str, log: bool = False) -> str:
    """Bars per group (e.g. image / video), one colour per series (e.g. baseline / scaled-only / NVILA)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    width = 0.8 / max(1, len(series))
    for k, (name, values) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(groups))]
        heights = [v or 0.0 for v in values]
        bars = ax.bar(xs, heights, width, label=name)
        for bar, v in zip(bars, values):
            if v is not None:
                ax.annotate(
                    f"{v:,.3g}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(ylabel)
    if log:
        _log_axis(ax, "y")
    ax.legend(frameon=False, fontsize=8)
    return _svg(fig)


def distributions(rows: list[dict], unit_scale: float = 1e3, xlabel: str = "milliseconds") -> str:
    """Box plots of raw samples (whiskers p1-p99), one per row {"label", "samples"}."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.0))
    data = [[s * unit_scale for s in r["samples"]] for r in rows][::-1]
    ax.boxplot(data, orientation="horizontal", whis=(1, 99), showfliers=True, flierprops={"markersize": 2})
    ax.set_yticks(range(1, len(rows) + 1), [r["label"] for r in rows][::-1])
    ax.set_xlabel(xlabel)
    return _svg(fig)


def scatter(points: list[dict], xlabel: str, ylabel: str) -> str:
    """Labelled points {"label", "x", "y"} (accuracy beside speed)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for p in points:
        ax.scatter([p["x"]], [p["y"]], zorder=3)
        ax.annotate(p["label"], (p["x"], p["y"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _svg(fig)


def trend(series: list[dict], ylabel: str) -> str:
    """History of one metric: per series {"label", "x": [run index], "y", "low", "high", "flags": [verdict]},
    a line with CI error bars; regressions marked with red triangles, improvements with green ones."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ticks: dict[int, str] = {}
    for s in series:
        err = [[y - lo for y, lo in zip(s["y"], s["low"])], [hi - y for y, hi in zip(s["y"], s["high"])]]
        ax.errorbar(s["x"], s["y"], yerr=err, marker="o", ms=3, capsize=2, lw=1, label=s["label"])
        for x, y, flag in zip(s["x"], s["y"], s["flags"]):
            if flag == "regression":
                ax.scatter([x], [y], marker="v", s=80, color="#d62728", zorder=4)
            elif flag == "improvement":
                ax.scatter([x], [y], marker="^", s=80, color="#2ca02c", zorder=4)
        ticks.update(zip(s["x"], s["ticks"]))
    ax.set_xticks(sorted(ticks), [ticks[k] for k in sorted(ticks)], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.35))
    return _svg(fig)
