"""Start-up time of the commands that measure nothing (issue 32: `--help` and `tokens` under 0.5 s on 2 cores).

Each command runs `--runs` times in a fresh Python, as `nvila-bench` runs it; the median wall time is printed,
with whether torch or transformers were imported (tests/test_instant_cli.py asserts they are not).

    python benchmarks/cli_startup.py [--runs 5] [--results DIR]   # DIR: records for report / gate / dashboard
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_S = 0.5
GOALS = ("--help", "tokens")  # the commands the goal is about
# Runs a command as `nvila-bench` does, then says which heavy modules it loaded (on stderr, after its output).
PROBE = (
    "import sys; from nvila_bench.cli import main; code = main(sys.argv[1:]); "
    "print('loaded:', [m for m in ('torch', 'transformers', 'pandas') if m in sys.modules], file=sys.stderr); "
    "sys.exit(code)"
)


def commands(results: Path | None, out: Path) -> dict[str, list[str]]:
    found = {
        "--help": ["--help"],
        "presets": ["presets"],
        "info": ["info", "--preset", "nvila-8b"],
        "tokens": ["tokens", "--preset", "nvila-8b", "--image", "1920x1080"],
        "cost": ["cost", "--preset", "nvila-8b", "--image", "1920x1080", "--hardware", "h100-sxm"],
        "run --help": ["run", "--help"],
        "run prefill --help": ["run", "prefill", "--help"],
    }
    if results is not None:
        folder = results if results.is_dir() else results.parent  # the dashboard reads each *.jsonl of a folder
        found |= {
            "report": ["report", str(results), "--out", str(out / "report.html")],
            "gate": ["gate", "--baseline", str(results), "--candidate", str(results)],
            "dashboard": ["dashboard", str(folder), "--out", str(out / "site")],
        }
    return found


def timed(argv: list[str]) -> tuple[float, str, int]:
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True)
    loaded = next((line for line in proc.stderr.splitlines() if line.startswith("loaded:")), "loaded: ?")
    return time.perf_counter() - began, loaded.removeprefix("loaded: "), proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--results", type=Path, help="A results.jsonl or folder for report / gate / dashboard.")
    args = parser.parse_args()
    missed = []
    with tempfile.TemporaryDirectory() as out:
        for name, argv in commands(args.results, Path(out)).items():
            runs = [timed(argv) for _ in range(args.runs)]
            median = statistics.median(seconds for seconds, _, _ in runs)
            _, loaded, code = runs[-1]
            goal = f"  (goal {GOAL_S} s)" if name in GOALS else ""
            print(f"{name:<20} {median:6.3f} s  exit {code}  heavy imports: {loaded}{goal}")
            if name in GOALS and median > GOAL_S:
                missed.append(name)
    print(f"missed the {GOAL_S} s goal: {', '.join(missed)}" if missed else f"goal met: {', '.join(GOALS)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
