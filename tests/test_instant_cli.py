"""The commands that measure nothing answer without loading torch or transformers (issue 32): each runs in a fresh
Python through `nvila_bench.cli.main`, which then finds neither in sys.modules. benchmarks/cli_startup.py times
them."""

import subprocess
import sys

import pytest
from fake_records import CPU_ENV, decode_record, prefill_record, rung_record

from nvila_bench.core.measuring.result_files import ResultWriter

WRAPPER = """
import sys
from nvila_bench.cli import main
code = main(sys.argv[1:])
heavy = [m for m in ("torch", "transformers") if m in sys.modules]
assert not heavy, f"{' '.join(sys.argv[1:])} imported {heavy}"
sys.exit(code)
"""


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WRAPPER, *argv], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A tiny results folder: prefill, decode and deployment records."""
    folder = tmp_path_factory.mktemp("results")
    writer = ResultWriter(folder)
    for record in (prefill_record(), decode_record(), rung_record(env=CPU_ENV), rung_record(rung="bf16", env=CPU_ENV)):
        writer.write(record)
    return folder


COMMANDS = {
    "help": ["--help"],
    "presets": ["presets"],
    "info": ["info", "--preset", "nvila-8b"],
    "tokens": ["tokens", "--preset", "nvila-8b", "--image", "1920x1080"],
    "tokens-video": ["tokens", "--preset", "nvila-8b-video", "--video-frames", "256"],
    "cost": ["cost", "--preset", "nvila-8b", "--image", "1920x1080", "--hardware", "h100-sxm"],
    "profile-help": ["profile", "--help"],
    "estimate-help": ["estimate", "--help"],
    "run-help": ["run", "--help"],
    "run-prefill-help": ["run", "prefill", "--help"],
    "run-deployment-help": ["run", "deployment", "--help"],
    "a refusal": ["tokens", "--preset", "no-such-preset", "--image", "448x448"],
}


@pytest.mark.parametrize("argv", COMMANDS.values(), ids=COMMANDS.keys())
def test_a_command_that_measures_nothing_loads_no_torch(argv):
    proc = run_cli(*argv)
    assert "imported" not in proc.stderr, proc.stderr
    assert proc.returncode == (2 if "no-such-preset" in argv else 0), proc.stderr
    assert proc.stdout or proc.stderr


def test_report_gate_and_dashboard_load_no_torch(results, tmp_path):
    for argv in (
        ["report", str(results), "--out", str(tmp_path / "report.html")],
        ["gate", "--baseline", str(results), "--candidate", str(results), "--summary-md", str(tmp_path / "gate.md")],
        ["dashboard", str(results), "--out", str(tmp_path / "site")],
    ):
        proc = run_cli(*argv)
        assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "report.html").stat().st_size > 0 and (tmp_path / "gate.md").read_text()
    assert (tmp_path / "site" / "index.html").is_file()
