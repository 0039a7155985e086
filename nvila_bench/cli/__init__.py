"""The `nvila-bench` command line (click), one module per command group:

    models.py    presets, info, tokens, summary, cost     (no measuring)
    run.py       run SUITE (generated from the suite registry)
    options.py   the options of a point's settings and measuring rules, from their declarations
    ceilings.py  ceilings
    profile.py   profile (the profile suite with profiler-style options)
    results.py   report, dashboard, gate                  (records in)
    estimate.py  estimate training-cost
    data.py      synthetic-data, train-synthetic

Bad input never shows a traceback: it prints one line `nvila-bench: error: ...` and exits with code 2.
"""

from __future__ import annotations

import sys

import click

from . import data, estimate, models, results
from .ceilings import ceilings
from .common import one_line
from .profile import profile
from .run import run

EXIT_USAGE = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nvila-bench")
def cli():
    """Benchmark NVILA against VILA1.5: token counts, latency, training cost, accuracy."""


for group in (models, results, estimate, data):
    group.register(cli)
for command in (run, ceilings, profile):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> int:
    """Entry point: click in non-standalone mode so every user error becomes one line and exit code 2."""
    if not (sys.argv[1:] if argv is None else argv):
        argv = ["--help"]  # no arguments: the help, not an error
    try:
        result = cli.main(args=argv, prog_name="nvila-bench", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("nvila-bench: interrupted", err=True)
        return 130
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        click.echo(f"nvila-bench: error: {one_line(e.format_message())}", err=True)
        return EXIT_USAGE if isinstance(e, click.UsageError) else e.exit_code
    except ValueError as e:  # invalid configs / inputs rejected by the model package (incl. CheckpointError)
        click.echo(f"nvila-bench: error: {one_line(str(e))}", err=True)
        return EXIT_USAGE
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
