"""benchmarks/gpu_session.sh's control flow, with a stand-in `python3` on PATH that logs each call and the real
coreutils `timeout`: a lent GPU's minutes must not go to a part that hangs, to a script that stops at the first
failed part or measures before refusing its arguments, and a cut call must still leave goals.md and the report.
And every measuring part's command must parse and plan here as the GPU will run it, into the records that
benchmarks/goals.py reads."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = [
    "ceilings",
    "decode",
    "ttft",
    "w4a16",
    "torchao-peer",
    "vila-prefill",
    "vila-decode",
    "lite",
    "w8a8-vision",
    "aa-decode",
    "aa-prefill",
    "check",
    "peer-bf16",
    "peer-w4a16",
    "peer-hf-bf16",
    "peer-hf-w4a16",
    "peer-video",
]
PEER_PARTS = {
    "peer-bf16": ("bf16", "compiled"),
    "peer-w4a16": ("w4a16-llm", "compiled"),
    "peer-hf-bf16": ("bf16", "hf-static"),
    "peer-hf-w4a16": ("w4a16-llm", "hf-static"),
    "peer-video": ("w4a16-llm", "compiled"),
}

FAKE = r"""#!/bin/bash
printf '%s\x1f' "$@" >> "$CALLS"; echo >> "$CALLS"
if [[ "$*" == "-c import fastjsonschema" ]]; then
  echo "PYTHONPATH=${PYTHONPATH:-}" >> "$SEEN"; exit "${READS_EXIT:-0}"
fi
if [[ -n ${HANG:-} && "$*" == *"$HANG"* ]]; then echo $$ > "$HANG_PID"; exec sleep 30; fi
if [[ -n ${FAIL:-} && "$*" == *"$FAIL"* ]]; then exit 3; fi
case "$*" in
  *"nvila_bench ceilings"*) touch "${@: -1}/ceilings.json";;
  *"goals.py"*"--versions"*) echo "gpu: a stand-in" > "$2/versions.txt";;
  *"goals.py"*"--write"*) cp "$2/parts.txt" "$2/goals.md"; echo "report of $(wc -l < "$2/parts.txt")" > "$2/report.html"
    ;;
esac
exit 0
"""


def session(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    """Run the script with the stand-in; its calls' argv, in order."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python3").write_text(FAKE)
    (bin_dir / "python3").chmod(0o755)
    calls = tmp_path / "calls"
    calls.write_text("")
    env = (
        os.environ
        | {
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "CALLS": str(calls),
            "SEEN": str(tmp_path / "seen"),
            "HANG_PID": str(tmp_path / "hang.pid"),
            "TMPDIR": str(tmp_path),
            "GPU_SESSION_PACE": "1",
            "WHEELS": str(tmp_path / "no-wheels"),
        }
        | env
    )
    script = ["bash", "benchmarks/gpu_session.sh", *args]
    proc = subprocess.run(script, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    return proc, [line.split("\x1f")[:-1] for line in calls.read_text().splitlines()]


def what(calls: list[list[str]]) -> list[str]:
    """Each call in a few words: "run decode", "ceilings", "goals", "aa_pairs decode", "pytest", "pip", ..."""
    out = []
    for argv in calls:
        text = " ".join(argv)
        if argv[:2] == ["-m", "nvila_bench"]:
            out.append(" ".join(argv[2:4]) if argv[2] == "run" else argv[2])
        elif "goals.py" in text:
            out.append("versions" if "--versions" in argv else "goals")
        elif "aa_pairs.py" in text:
            out.append("aa " + argv[argv.index("--suite") + 1])
        else:
            out.append({"pip": "pip", "pytest": "pytest"}.get(argv[1] if argv[0] == "-m" else "", text))
    return out


def test_parts_run_in_priority_order_a_failed_one_costs_no_other_and_goals_follow_each(tmp_path):
    out = tmp_path / "out"
    proc, calls = session(tmp_path, str(out), "540", "lite,w4a16,decode", FAIL="run deployment")
    assert proc.returncode == 1, proc.stderr  # a part failed
    assert what(calls) == [
        "pip",
        "versions",
        "-c import fastjsonschema",
        "ceilings",
        "goals",
        "run decode",
        "goals",
        "run deployment",
        "goals",
        "run prefill",
        "goals",
    ]
    parts = (out / "parts.txt").read_text()
    assert "w4a16: exited 3 after" in parts and "decode: ok in" in parts and "lite: ok in" in parts
    assert "ceilings: measured all the same (OUT has none" in proc.stdout  # the MBU goal's copy rate
    assert (out / "goals.md").read_text() == parts  # the stand-in goals.py copies parts.txt: the last write saw all
    assert (out / "logs" / "decode.log").exists() and (out / "versions.txt").read_text() == "gpu: a stand-in\n"
    decode = next(argv for argv in calls if argv[2:4] == ["run", "decode"])
    assert decode[-2:] == ["--out", str(out)] and decode.count("--engine") == 2


def test_a_hanging_part_is_cut_at_its_timeout_and_the_next_runs_after_goals_are_written(tmp_path):
    out = tmp_path / "out"
    proc, calls = session(tmp_path, str(out), "540", "decode,ttft", HANG="run decode")
    assert proc.returncode == 1
    assert what(calls)[3:] == ["ceilings", "goals", "run decode", "goals", "run prefill", "goals"]
    assert "decode: cut at its timeout of 2 s; its finished points are kept" in proc.stdout  # 130 s at 1% pace
    goals = (out / "goals.md").read_text()
    assert "decode: cut at its timeout" in goals and "ttft: ok in" in goals
    assert (out / "report.html").read_text().startswith("report of")
    pid = int((tmp_path / "hang.pid").read_text())
    state = Path(f"/proc/{pid}/stat")
    assert not state.exists() or state.read_text().split(") ")[1][0] == "Z"  # the hung process is gone


def test_goals_md_is_written_after_a_cut_even_when_nothing_else_runs(tmp_path):
    out = tmp_path / "out"
    proc, calls = session(tmp_path, str(out), "540", "check", HANG="-m pytest")
    assert what(calls)[3:] == ["ceilings", "goals", "pytest", "goals"]
    assert "check: cut at its timeout of 3 s" in (out / "goals.md").read_text()


@pytest.mark.parametrize(
    "parts, message",
    [
        ("decode,prefil", "unknown part 'prefil'"),
        ("*", "unknown part '*'"),  # never globbed into the repository's file names
        ("d*", "unknown part 'd*'"),
        ("decode ttft", "unknown part 'decode ttft'"),
        (",", "an empty part name in ','"),
        ("decode,,ttft", "an empty part name in 'decode,,ttft'"),
        ("decode,", "an empty part name in 'decode,'"),
        ("", "an empty part name in ''"),
    ],
)
def test_a_bad_part_name_is_refused_in_one_line_before_anything_runs(tmp_path, parts, message):
    proc, calls = session(tmp_path, str(tmp_path / "out"), "540", parts)
    assert proc.returncode == 2 and calls == [] and not (tmp_path / "out").exists()
    assert proc.stderr.startswith(f"gpu_session.sh: error: {message}") and proc.stderr.count("\n") == 1, proc.stderr
    assert "known: " + " ".join(PARTS) in proc.stderr  # the table's order is the priority order


@pytest.mark.parametrize("budget", ["0", "abc", "-5", "1e3", "9999999"])
def test_a_bad_budget_is_refused_before_anything_runs(tmp_path, budget):
    proc, calls = session(tmp_path, str(tmp_path / "out"), budget)
    assert proc.returncode == 2 and calls == []
    assert f"BUDGET_S must be a whole number in 1..100000, got '{budget}'" in proc.stderr


def test_a_budget_too_small_skips_the_parts_that_no_longer_fit_with_a_line_each(tmp_path):
    out = tmp_path / "out"
    proc, calls = session(tmp_path, str(out), "60", GPU_SESSION_PACE="100")  # 60 s less the 20 s reserve: 40 s
    assert proc.returncode == 1
    assert what(calls)[3:] == ["ceilings", "goals", "goals"]  # the ceilings fit (15 s); goals.md again for the skips
    for name, need in (("decode", 65), ("w4a16", 110), ("lite", 55), ("check", 60)):
        assert f"{name}: skipped, needs {need} s to its first record and" in proc.stdout
    assert "vila-prefill: skipped" in (out / "goals.md").read_text()


def test_the_wheels_install_when_carried_and_are_skipped_cleanly_when_not(tmp_path):
    proc, calls = session(tmp_path, str(tmp_path / "out"), "540", "check")
    assert proc.returncode == 0 and "no wheels in" in proc.stdout and "their install skipped" in proc.stdout
    assert not any("--target" in argv for argv in calls)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "torchao-0.18.0-py3-none-any.whl").write_text("")
    proc, calls = session(tmp_path, str(tmp_path / "out"), "540", "check", WHEELS=str(wheels))
    site = str(tmp_path / "nvila-session-site")
    (install,) = [argv for argv in calls if "--target" in argv]
    assert install[install.index("--target") + 1] == site
    assert install[-1] == str(wheels / "torchao-0.18.0-py3-none-any.whl")
    assert (tmp_path / "seen").read_text().splitlines()[-1] == f"PYTHONPATH={site}"  # every later call sees them


def test_without_fastjsonschema_the_parts_run_and_the_goals_are_said_to_be_missing(tmp_path):
    proc, calls = session(tmp_path, str(tmp_path / "out"), "540", "lite", READS_EXIT="1")
    assert "no goals.md or report: reading records needs fastjsonschema" in proc.stdout
    assert "goals" not in what(calls) and "run prefill" in what(calls)


def test_a_bundle_gets_goals_report_and_the_whole_folder_after_each_part(tmp_path):
    out, bundle = tmp_path / "out", tmp_path / "bundle"
    proc, _ = session(tmp_path, str(out), "540", "lite", BUNDLE=str(bundle))
    assert proc.returncode == 0
    assert sorted(p.name for p in bundle.iterdir()) == ["goals.md", "report.html", "session.tar.gz"]
    with tarfile.open(bundle / "session.tar.gz") as tar:
        assert {"out/parts.txt", "out/logs/lite.log", "out/ceilings.json"} <= set(tar.getnames())
    proc, calls = session(tmp_path, str(out), "540", "lite", BUNDLE=str(out / "inside"))
    assert proc.returncode == 2 and calls == [] and "must lie outside OUT" in proc.stderr


def _plan(argv: list[str]) -> list:
    """The jobs `nvila-bench run SUITE ARGS` would measure, parsed by the CLI itself (no device check: the GPU's)."""
    from unittest import mock

    from nvila_bench.suites.registry import get_suite

    run = importlib.import_module("nvila_bench.cli.run")  # the module (nvila_bench.cli.run is the click group)

    suite = get_suite(argv[0])
    params = run.suite_command(suite).make_context(suite.name, list(argv[1:])).params
    own = {option.name for option in suite.options}
    common = {k: v for k, v in params.items() if k not in own}
    with mock.patch.object(run, "check_device", lambda device: None):
        jobs, _ = run.plan(suite, common, {k: v for k, v in params.items() if k in own})
    return jobs


@pytest.fixture(scope="module")
def goals():
    spec = importlib.util.spec_from_file_location("goals", ROOT / "benchmarks" / "goals.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["goals"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules["goals"]


def test_every_measuring_part_plans_here_into_the_records_goals_py_reads(tmp_path, goals):
    """Each `nvila-bench run` of the session, as the script expands it, passes the CLI's checks (a refusal on
    the GPU costs the part), and its points are the ones benchmarks/goals.py picks for its goals."""
    from nvila_bench.suites.registry import get_suite

    from nvila_bench.core.measuring.results import Metric, Record

    _, calls = session(tmp_path, str(tmp_path / "out"), "100000")
    runs = [argv[3:] for argv in calls if argv[2:3] == ["run"]]
    assert [" ".join(argv[:1] + argv[argv.index("--preset") + 1 : argv.index("--preset") + 2]) for argv in runs] == [
        "decode nvila-8b",
        "prefill nvila-8b",
        "deployment nvila-8b",
        "deployment nvila-8b",
        "prefill vila1.5-8b",
        "decode vila1.5-8b",
        "prefill nvila-lite-2b",
        "deployment nvila-8b",
        *["deployment nvila-8b"] * len(PEER_PARTS),
    ]
    gpu = {"device": "cuda", "torch_device_name": "NVIDIA H100 80GB HBM3", "gpu": [{"name": "NVIDIA H100 80GB HBM3"}]}
    records = []
    for index, argv in enumerate(runs):
        for job in _plan(argv):
            video = job.point.video_frames is not None  # the peers' 64-frame part
            assert job.point.device == "cuda" and job.point.images == (() if video else ((1920, 1080),))
            config = get_suite(job.suite).config(job.point)
            records.append(Record(job.suite, config, {"tpot": Metric.timing([0.005])}, f"run-{index}", environment=gpu))
    assert goals.pick(records, "decode", "nvila-8b") and goals.pick(records, "decode", "nvila-8b", "hf-static")
    assert goals.pick(records, "prefill", "nvila-8b") and goals.pick(records, "prefill", "nvila-lite-2b")
    rungs = (("bf16", "compiled"), ("w4a16-llm", "compiled"), ("w4a16-llm", "hf-static"), ("w8a8-vit-int8", "compiled"))
    for name, engine in rungs:
        assert goals.rung(records, name, engine), (name, engine)
    assert goals.rung(records, "w4a16-llm", "hf-static").extra["int4_kernel"] == "tinygemm"


def test_each_peer_part_is_one_run_of_nvila_8b_and_both_qwen_peers_that_the_report_pairs(tmp_path):
    """Issue 30: NVILA-8B beside Qwen2-VL-7B and Qwen2.5-VL-7B at 1920x1080 (and 64 frames), bf16 and W4A16, compiled
    and hf-static; each part one command, so its NVILA and peer records share a run and pair in the report."""
    from nvila_bench.reports.peers import same_run_pairs
    from nvila_bench.suites.registry import get_suite

    from nvila_bench.core.measuring.results import Metric, Record

    gpu = {"device": "cuda", "torch_device_name": "NVIDIA H100 80GB HBM3", "gpu": [{"name": "NVIDIA H100 80GB HBM3"}]}
    for part, (rung, engine) in PEER_PARTS.items():
        _, calls = session(tmp_path, str(tmp_path / part), "100000", part)
        (argv,) = [argv[3:] for argv in calls if argv[2:3] == ["run"]]
        jobs = _plan(argv)
        assert {(j.point.extra["rung"], j.point.engine) for j in jobs} == {(rung, engine)}
        video = part == "peer-video"
        request = ((), 64) if video else (((1920, 1080),), None)
        assert {(j.point.images, j.point.video_frames) for j in jobs} == {request}
        nvila = "nvila-8b-video" if video else "nvila-8b"
        assert [j.point.preset for j in jobs] == [nvila, "qwen2-vl-7b", "qwen2.5-vl-7b"]
        metrics = {"ttft": Metric.timing([0.1]), "decode_tokens_per_s": Metric.measured(100.0, "tokens/s", "higher")}
        records = [
            Record("deployment", get_suite("deployment").config(j.point), metrics, part, environment=gpu) for j in jobs
        ]
        for peer in ("qwen2-vl-7b", "qwen2.5-vl-7b"):
            (pair,) = same_run_pairs(records, "ttft", peer)
            assert (pair[0].preset, pair[1].preset) == (jobs[0].point.preset, peer)
