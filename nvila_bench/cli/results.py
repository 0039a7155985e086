"""Commands over result files, no measuring: report, dashboard, gate. What each suite writes (its metrics, units,
which are gated and headline, its report view) comes from the suites' declarations (`declared_outputs`)."""

from __future__ import annotations

import click

from .common import check_output, writing


def declared():
    """Every registered suite's declared outputs (suite -> SuiteOutputs), handed to the report, gate and dashboard."""
    from nvila_bench.suites.registry import declared_outputs

    return declared_outputs()


def register(cli: click.Group) -> None:
    for command in (report, dashboard, gate_command):
        cli.add_command(command)


@click.command()
@click.argument("results", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False), help="The HTML file to write.")
@click.option("--title", default="nvila-bench report", show_default=True, help="Page title.")
def report(results, out_file, title):
    """One self-contained HTML report from RESULTS (results files or directories)."""
    from nvila_bench.core.measuring.files import write_atomic
    from nvila_bench.core.measuring.result_files import load_results
    from nvila_bench.reports.render import render_report, source_names

    check_output(out_file)
    records = load_results(results)
    sources = source_names(results, out_file)
    with writing(out_file):
        path = write_atomic(out_file, render_report(records, sources, declared(), title))
    click.echo(f"report: {len(records)} record(s) -> {path}", err=True)


@click.command()
@click.argument("results_dir", type=click.Path())
@click.option(
    "--out", "site_dir", required=True, type=click.Path(file_okay=False), help="Directory of the static site."
)
@click.option("--threshold", default="5%", show_default=True, help="Smallest change flagged, as in `gate`.")
def dashboard(results_dir, site_dir, threshold):
    """History over many runs (each *.jsonl under RESULTS_DIR is one run): trends, flagged changes, reports."""
    from nvila_bench.core.comparison.gate import parse_threshold
    from nvila_bench.reports.dashboard import build_site

    check_output(site_dir, directory=True)
    with writing(site_dir):  # reading problems are ValueErrors already (one line too)
        path = build_site(results_dir, site_dir, parse_threshold(threshold), declared())
    click.echo(f"dashboard -> {path}", err=True)


@click.command(name="gate")
@click.option(
    "--baseline",
    "baseline",
    required=True,
    multiple=True,
    type=click.Path(),
    help="Baseline results file or directory.",
)
@click.option(
    "--candidate",
    "candidate",
    required=True,
    multiple=True,
    type=click.Path(),
    help="Candidate results file or directory.",
)
@click.option("--threshold", default="5%", show_default=True, help="Smallest change that counts, e.g. 5% or 0.05.")
@click.option(
    "--metrics",
    "metrics",
    multiple=True,
    help="Metrics to gate (repeat or comma-separate) [each suite's gated metrics: `nvila-bench run SUITE --help`].",
)
@click.option(
    "--summary-md",
    type=click.Path(dir_okay=False),
    help="Also write the Markdown summary here (e.g. $GITHUB_STEP_SUMMARY).",
)
@click.pass_context
def gate_command(ctx, baseline, candidate, threshold, metrics, summary_md):
    """Exit 0 when the candidate did not regress against the baseline, 1 when it did, 2 when the two cannot be
    compared. A point regresses only when the 95% CI of its change lies beyond the threshold."""
    from nvila_bench.core.comparison.gate import gate, markdown_summary, parse_threshold
    from nvila_bench.core.measuring.result_files import load_results
    from nvila_bench.reports.records import point_label

    if summary_md:
        check_output(summary_md, "--summary-md")
    base, cand = load_results(baseline), load_results(candidate)
    names = tuple(m.strip() for item in metrics for m in item.split(",") if m.strip()) or None
    limit = parse_threshold(threshold)
    gated = None if names else {suite: outputs.gated for suite, outputs in declared().items()}
    result = gate(base, cand, limit, names, gated, label=point_label)
    text = markdown_summary(result, base, cand)
    if summary_md:
        # Append: $GITHUB_STEP_SUMMARY may already hold other steps' output.
        with writing(summary_md, "--summary-md"), open(summary_md, "a") as f:
            f.write(text)
    click.echo(text)
    if result.passed:
        missing = (
            f"; {result.unmatched_baseline} baseline point(s) not in the candidate" if result.unmatched_baseline else ""
        )
        click.echo(f"nvila-bench gate: pass ({len(result.comparisons)} comparison(s){missing})", err=True)
        return 0
    worst = result.regressions[0]
    click.echo(
        f"nvila-bench gate: regression: {worst.label} {worst.metric} {worst.change_text}"
        f"{' and ' + str(len(result.regressions) - 1) + ' more' if len(result.regressions) > 1 else ''}",
        err=True,
    )
    ctx.exit(1)
