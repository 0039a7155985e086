"""benchmarks/gpu_goals.sh's (and deployment_gpu.sh's) control flow, with a stand-in `python3` on PATH that
logs each call: a lent GPU's minutes must not go to a script that stops at the first failed part, or that
measures before refusing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FAKE = """#!/bin/bash
echo "$*" >> "$CALLS"
case "$*" in
  "-c import fastjsonschema") exit "$READS_EXIT";;
  *" ceilings "*) touch "${@: -1}/ceilings.json";;
  *"run prefill"*|*int4_kernels.py*) echo '{}' >> "$OUT_DIR/results.jsonl"; exit 1;;  # parts that fail
esac
exit 0
"""


def run_script(tmp_path: Path, parts: str, reads: bool = True, script: str = "gpu_goals.sh") -> tuple[subprocess.CompletedProcess, list[str]]:
    bin_dir, out = tmp_path / "bin", tmp_path / "out"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python3").write_text(FAKE)
    (bin_dir / "python3").chmod(0o755)
    calls = tmp_path / "calls"
    calls.write_text("")
    env = os.environ | {"PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls), "OUT_DIR": str(out),
                        "READS_EXIT": "0" if reads else "1"}  # fmt: skip
    proc = subprocess.run(["bash", f"benchmarks/{script}", str(out), parts], cwd=ROOT, env=env, capture_output=True, text=True)
    return proc, calls.read_text().splitlines()


def test_a_failed_part_costs_no_other_and_the_report_and_goals_follow(tmp_path):
    proc, calls = run_script(tmp_path, "prefill,probe")
    assert proc.returncode == 0, proc.stderr
    assert "gpu_goals.sh: prefill exited 1; going on" in proc.stderr
    what = [" ".join(c.split()[:3]) if c.startswith("-") else c.split()[0] for c in calls]  # "-m nvila_bench run", a script
    assert what == ["-c import fastjsonschema", "-m nvila_bench ceilings", "-m nvila_bench run",
                    "benchmarks/decode_variants.py", "-m nvila_bench report", "benchmarks/goals.py"]  # fmt: skip


def test_without_fastjsonschema_aa_is_refused_before_measuring_and_the_rest_skips_reading(tmp_path):
    proc, calls = run_script(tmp_path, "aa", reads=False)
    assert proc.returncode == 2 and "fastjsonschema" in proc.stderr
    assert calls == ["-c import fastjsonschema"]  # nothing measured, not even the ceilings
    proc, calls = run_script(tmp_path, "prefill", reads=False)
    assert "no report or goals table" in proc.stdout and not any("report" in c or "goals" in c for c in calls)


def test_an_unknown_part_is_refused_by_name(tmp_path):
    proc, calls = run_script(tmp_path, "check,prefil")
    assert proc.returncode == 2 and "unknown part prefil" in proc.stderr and calls == []


def test_the_deployment_script_goes_on_past_a_failed_part_too(tmp_path):
    proc, calls = run_script(tmp_path, "kernels,w4a16", script="deployment_gpu.sh")
    assert proc.returncode == 0 and "deployment_gpu.sh: kernels exited 1; going on" in proc.stderr
    assert [" ".join(c.split()[:3]) for c in calls if c.startswith("-m")] == [
        "-m nvila_bench ceilings", "-m nvila_bench run", "-m nvila_bench report"]  # the w4a16 rungs, then the report
