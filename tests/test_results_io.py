"""Results under hostile input: non-finite figures, skipped and host-OOM points, a full disk, torn lines, records
of the wrong shape, outputs that cannot be written. Each ends in a record, a warning or one line and exit 2."""

import errno
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import read_dicts

from nvila_bench.cli import main
from nvila_bench.core.measuring.result_files import ResultWriter, read_results
from nvila_bench.core.measuring.results import STATUSES, Metric, Record
from nvila_bench.runner import sweep

REPO = Path(__file__).resolve().parents[1]
MEASUREMENTS = REPO.parent / "shared" / "measurements"
FAST = ["--warmup", "0", "--repeats", "2", "--min-seconds", "0", "--quiet"]
NVILA_BENCH = str(Path(sys.executable).parent / "nvila-bench")
NAN, INF = float("nan"), float("inf")


def record(**kw) -> Record:
    args = dict(
        suite="prefill", config={"preset": "nvila-tiny"}, metrics={"ttft": Metric.timing([0.1, 0.2, 0.3])}, run_id="r1"
    )
    return Record(**(args | kw))


def line_of(r: Record | dict) -> str:
    return json.dumps(r.to_dict() if isinstance(r, Record) else r, sort_keys=True) + "\n"


# ---- 1. non-finite figures ------------------------------------------------------------------------------
def test_a_non_finite_figure_becomes_null_with_a_note(tmp_path):
    ttft = Metric.timing([0.1, 0.2, 0.3])
    ttft.samples = [0.1, NAN, 0.3]
    r = record(
        metrics={
            "loss_final": Metric.measured(NAN, "nats"),
            "ttft": ttft,
            "tokens": Metric.measured(7, "tokens"),
            "table": Metric.measured([{"stage": "vision", "seconds": INF}], "per step"),
        },
        config={"preset": "nvila-tiny", "extra": {"lr": INF}},
    )
    assert r.status == "nonfinite"
    assert r.error == "non-finite figures: loss_final (nan), ttft (nan), table (inf)"
    ResultWriter(tmp_path).write(r)
    (d,) = read_dicts(tmp_path)
    m = d["metrics"]
    assert m["loss_final"]["value"] is None and m["loss_final"]["note"] == "non-finite (nan)"
    assert m["ttft"]["value"] is None and m["ttft"]["samples"] == [0.1, 0.3] and "summary" not in m["ttft"]
    assert m["table"]["value"] is None and m["table"]["note"] == "non-finite (inf)"
    assert m["tokens"] == Metric.measured(7, "tokens").to_dict() and "note" not in m["tokens"]  # only when set
    assert d["config"]["extra"]["lr"] == "inf" and d["status"] == "nonfinite"
    assert "NaN" not in (tmp_path / "results.jsonl").read_text()


def test_a_figure_that_turns_non_finite_after_construction_is_caught_when_written(tmp_path):
    r = record()
    r.metrics["ttft"].value = -INF  # e.g. a merge of process runs dividing by a zero median
    ResultWriter(tmp_path).write(r)
    (back,) = read_results(tmp_path)
    assert back.status == "nonfinite" and back.error == "non-finite figures: ttft (-inf)"


def test_a_failed_point_keeps_its_status_and_error():
    r = record(status="oom", error="out of memory", metrics={"x": Metric.measured(NAN, "s")})
    assert (r.status, r.error, r.metrics["x"].value) == ("oom", "out of memory", None)


def test_a_diverging_train_sweep_records_every_point(tmp_path, capsys):
    code = main(
        [
            "run",
            "train",
            "--preset",
            "nvila-tiny",
            "--preset",
            "vila-tiny",
            "--lr",
            "1e30",
            "--out",
            str(tmp_path),
            *FAST,
        ]
    )
    assert code == 0, capsys.readouterr().err
    records = read_dicts(tmp_path)
    assert [(r["preset"], r["status"]) for r in records] == [("nvila-tiny", "nonfinite"), ("vila-tiny", "nonfinite")]
    for r in records:
        assert r["error"].startswith("non-finite figures: ") and "loss_last (nan)" in r["error"]
        assert r["metrics"]["loss_last"] == r["metrics"]["loss_last"] | {"value": None, "note": "non-finite (nan)"}
        assert r["metrics"]["step_time"]["value"] > 0  # the timings are kept


# ---- 2. skipped and host-OOM points, in process and in the worker -----------------------------------------
@pytest.mark.parametrize("fault", ["memory", "alloc"])  # Python's MemoryError; torch's CPU allocator's RuntimeError
def test_host_memory_error_is_an_oom_record(tmp_path, monkeypatch, fault):
    monkeypatch.setenv("NVILA_BENCH_FAULT", f"{fault}:vila-tiny")
    args = ["run", "prefill", "--preset", "vila-tiny", "--preset", "nvila-tiny", "--image", "448x448"]
    assert main([*args, "--out", str(tmp_path), *FAST]) == 0
    records = read_dicts(tmp_path)
    assert [r["status"] for r in records] == ["oom", "ok"], records[1]["error"]
    expected = (
        "MemoryError"
        if fault == "memory"
        else "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory"
    )
    assert records[0]["error"].startswith(f"host out of memory: {expected}")


def test_isolated_workers_keep_skipped_and_nonfinite(tmp_path):
    env = os.environ | {"NVILA_BENCH_FAULT": "skip:vila-tiny"}
    args = [NVILA_BENCH, "run", "train", "--preset", "vila-tiny", "--preset", "nvila-tiny", "--lr", "1e30", "--isolate"]
    proc = subprocess.run([*args, "--out", str(tmp_path), *FAST], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    skipped, diverged = read_dicts(tmp_path)
    assert (skipped["status"], skipped["error"]) == ("skipped", "injected: cannot run here (NVILA_BENCH_FAULT)")
    assert diverged["status"] == "nonfinite" and diverged["metrics"]["loss_last"]["value"] is None


def test_sweep_counts_every_status(tmp_path, monkeypatch):
    from nvila_bench.suites.registry import Job

    from nvila_bench.core.measuring.point import BenchPoint

    statuses = iter(STATUSES)

    def fake_job(job, session, run_id, environment):
        status = next(statuses)
        return record(status=status, error=None if status == "ok" else f"{status} here")

    class Session:
        def release(self):
            pass

    monkeypatch.setattr(sweep, "run_job", fake_job)
    jobs = [Job("prefill", BenchPoint("nvila-tiny", images=((448, 448),))) for _ in STATUSES]
    counts = sweep.run_sweep(jobs, ResultWriter(tmp_path), Session(), "r", None)
    assert counts == dict.fromkeys(STATUSES, 1)
    assert [r.status for r in read_results(tmp_path)] == list(STATUSES)


# ---- 3. short writes: whole lines or nothing ----------------------------------------------------------------
def test_a_partial_write_is_undone_and_named(tmp_path, monkeypatch):
    writer = ResultWriter(tmp_path)
    writer.write(record(run_id="kept"))
    before = (tmp_path / "results.jsonl").read_bytes()
    real_write = os.write

    def full_disk(fd, data):
        if len(data) > 10:
            return real_write(fd, bytes(data[: len(data) // 2]))  # half a line, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(ValueError, match=r"results.jsonl: cannot write the record \(No space left on device\)"):
        writer.write(record(run_id="lost"))
    assert (tmp_path / "results.jsonl").read_bytes() == before and writer.count == 1
    monkeypatch.setattr(os, "write", real_write)
    writer.write(record(run_id="next"))  # the disk has room again: the file still reads
    assert [r.run_id for r in read_results(tmp_path)] == ["kept", "next"]


def test_a_file_size_limit_stops_the_writer_not_the_process(tmp_path):
    """RLIMIT_FSIZE sends SIGXFSZ, which kills by default: the writer ignores it and undoes the partial line."""
    code = textwrap.dedent("""
        import resource, sys
        from nvila_bench.core.measuring.results import Metric, Record
        from nvila_bench.core.measuring.result_files import ResultWriter
        writer = ResultWriter(sys.argv[1])
        resource.setrlimit(resource.RLIMIT_FSIZE, (4000, resource.RLIM_INFINITY))
        record = Record("prefill", {"preset": "nvila-tiny"}, {"ttft": Metric.timing([0.1] * 20)}, "r")
        try:
            for _ in range(100):
                writer.write(record)
        except ValueError as e:
            print(writer.count, e)
    """)
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    count, message = proc.stdout.split(" ", 1)
    assert "results.jsonl: cannot write the record (File too large)" in message
    text = (tmp_path / "results.jsonl").read_text()
    assert text.endswith("}\n") and len(read_results(tmp_path)) == int(count) > 0 and len(text) <= 4000


def test_the_writer_starts_its_line_after_a_torn_one(tmp_path, capsys):
    path = tmp_path / "results.jsonl"
    path.write_text(line_of(record(run_id="a")) + line_of(record(run_id="torn"))[:150])
    ResultWriter(tmp_path).write(record(run_id="b"))
    assert path.read_text().splitlines()[2].startswith('{"config"')  # not glued onto the fragment
    assert [r.run_id for r in read_results(tmp_path)] == ["a", "b"]
    assert (
        capsys.readouterr().err == f"nvila-bench: warning: {path}:2: truncated record skipped (a write was cut off)\n"
    )


# ---- 4. torn lines on reading --------------------------------------------------------------------------------
def test_a_torn_last_line_is_skipped_with_one_warning(tmp_path, capsys):
    path = tmp_path / "results.jsonl"
    path.write_text(line_of(record(run_id="a")) + line_of(record(run_id="b"))[:-40])
    assert [r.run_id for r in read_results(path)] == ["a"]
    assert [r.run_id for r in read_results(path)] == ["a"]  # read twice, warned once
    assert (
        capsys.readouterr().err
        == f"nvila-bench: warning: {path}:2: truncated record skipped (the file ends mid-line)\n"
    )
    path.write_text(line_of(record())[:-40])  # nothing but a torn record: one error line says both
    with pytest.raises(ValueError, match=r"results.jsonl: no result records \(line 1: truncated record\)$"):
        read_results(path)


@pytest.mark.parametrize("cut", [1, 9, 30, 200])  # inside a key, after a key, inside a string, inside a number
def test_a_record_cut_anywhere_reads_as_truncated(tmp_path, capsys, cut):
    text = line_of(record())
    (tmp_path / "results.jsonl").write_text(text + text[:cut] + "\n" + text)
    assert len(read_results(tmp_path)) == 2 and "truncated record skipped" in capsys.readouterr().err


def test_a_syntax_error_inside_a_line_stays_an_error(tmp_path):
    text = line_of(record())
    (tmp_path / "results.jsonl").write_text(text + text.replace('"suite"', '"suite" "x"') + text)
    with pytest.raises(ValueError, match=r"results.jsonl:2: not JSON \(Expecting ':' delimiter\)"):
        read_results(tmp_path)


# ---- 5. full validation on reading ------------------------------------------------------------------------
GOOD = record(environment={"device": "cpu", "cpu_model": "x", "cpu_count": 2}).to_dict()
TTFT = GOOD["metrics"]["ttft"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"metrics": []}, r"must be object, got \[\] \(metrics\)"),
        ({"config": "fast"}, r"must be object, got 'fast' \(config\)"),
        ({"metrics": {"ttft": TTFT | {"value": "fast"}}}, r"must be number, got 'fast' \(metrics.ttft.value\)"),
        ({"metrics": {"ttft": TTFT | {"summary": {}}}}, r"missing 'unit', 'n', .*'ci_high' \(metrics.ttft.summary\)"),
        ({"metrics": {"ttft": TTFT | {"samples": [0.1, "x"]}}}, r"must be number, got 'x' \(metrics.ttft.samples.1\)"),
        ({"metrics": {"mfu": Metric.utilisation(0.5, "ttft").to_dict() | {"value": [1]}}}, r"\(metrics.mfu.value\)"),
        ({"metrics": {"n": {"value": True, "unit": "count"}}}, r"got True \(metrics.n.value\)"),
        ({"schema_version": True}, r"schema_version True is not one this version reads"),
        ({"suite": 3}, r"must be string, got 3 \(suite\)"),
        ({"status": "skipped", "error": ""}, r"\(error\)"),
        ({"config": {"images": [448]}}, r"must be string, got 448 \(config.images.0\)"),
        ({"environment": {"device": "cuda", "gpu": ["H100"]}}, r"must be object, got 'H100' \(environment.gpu.0\)"),
        ([1, 2], r"a record must be a JSON object"),
    ],
)
def test_a_record_of_the_wrong_shape_is_one_line_naming_where(tmp_path, change, message):
    bad = GOOD | change if isinstance(change, dict) else change
    (tmp_path / "results.jsonl").write_text(line_of(GOOD) + line_of(bad))
    with pytest.raises(ValueError, match=r"results.jsonl:2: .*" + message) as e:
        read_results(tmp_path)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused(tmp_path, constant):
    (tmp_path / "results.jsonl").write_text(line_of(GOOD).replace('"value": 0.2', f'"value": {constant}'))
    with pytest.raises(ValueError, match=rf"results.jsonl:1: not JSON \({constant} is not a number JSON allows\)"):
        read_results(tmp_path)


def test_deep_nesting_is_an_error_not_a_crash(tmp_path, capsys):
    (tmp_path / "results.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n")
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r.html")]) == 2
    assert (
        capsys.readouterr().err == f"nvila-bench: error: {tmp_path / 'results.jsonl'}:1: not JSON (nested too deeply)\n"
    )


def test_bad_records_exit_2_in_report_and_gate(tmp_path, capsys):
    (tmp_path / "results.jsonl").write_text(line_of(GOOD | {"metrics": {"ttft": TTFT | {"summary": {}}}}))
    for args in (
        ["report", str(tmp_path), "--out", str(tmp_path / "r.html")],
        ["gate", "--baseline", str(tmp_path), "--candidate", str(tmp_path)],
    ):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert (
            err.startswith(f"nvila-bench: error: {tmp_path / 'results.jsonl'}:1: invalid result record")
            and err.count("\n") == 1
        )


@pytest.mark.skipif(not MEASUREMENTS.is_dir(), reason="no shared measurements beside the repository")
def test_the_recorded_measurements_still_read():
    files = sorted(MEASUREMENTS.rglob("*.jsonl")) + sorted((REPO / "results").rglob("*.jsonl"))
    assert files and all(read_results(f) for f in files)


def test_statuses_and_the_note_round_trip():
    for status in STATUSES:
        r = record(status=status, error=None if status == "ok" else "why", metrics={"x": Metric.measured(NAN, "s")})
        assert Record.from_dict(json.loads(r.to_json())) == r


def test_the_schema_ships_with_the_package():
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"record.schema.json"]' in pyproject and '"fastjsonschema>=' in pyproject
    assert json.loads((REPO / "nvila_bench" / "core" / "measuring" / "record.schema.json").read_text())["properties"][
        "status"
    ]["enum"] == list(STATUSES)


# ---- 6. outputs that cannot be written ---------------------------------------------------------------------
def unwritable(tmp_path) -> dict[str, str]:
    (tmp_path / "file").write_text("x")
    (tmp_path / "d" / "results.jsonl").mkdir(parents=True)
    return {"": "", "under a file": str(tmp_path / "file" / "out"), "results.jsonl a directory": str(tmp_path / "d")}


@pytest.mark.parametrize("case", ["", "under a file", "results.jsonl a directory"])
def test_run_refuses_an_unwritable_out_before_measuring(tmp_path, capsys, monkeypatch, case):
    measured = []
    monkeypatch.setattr(sweep, "run_job", lambda *a: measured.append(a))
    code = main(
        ["run", "prefill", "--preset", "nvila-tiny", "--image", "448x448", "--out", unwritable(tmp_path)[case], *FAST]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("nvila-bench: error: ") and err.count("\n") == 1 and not measured
    assert "cannot write results here" in err or "output directory is ''" in err


def test_the_writer_leaves_no_empty_file_behind(tmp_path):
    ResultWriter(tmp_path / "new")
    assert (tmp_path / "new").is_dir() and not (tmp_path / "new" / "results.jsonl").exists()


@pytest.mark.parametrize("command", ["report", "dashboard"])
@pytest.mark.parametrize("case", ["", "under a file"])
def test_report_and_dashboard_refuse_an_unwritable_out(tmp_path, capsys, command, case):
    ResultWriter(tmp_path / "runs").write(record())
    out = unwritable(tmp_path)[case]
    assert main([command, str(tmp_path / "runs"), "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nvila-bench: error: Invalid value for --out: ") and err.count("\n") == 1


def test_finite_floats_are_untouched():
    r = record(config={"preset": "nvila-tiny", "extra": {"lr": 1e-5, "shape": (1, 2)}})
    assert r.status == "ok" and r.config["extra"]["lr"] == 1e-5 and math.isfinite(r.metrics["ttft"].value)


def test_measuring_needs_no_validator_and_reading_without_one_says_what_to_install(tmp_path):
    """The GPU image has no fastjsonschema: importing the package and writing records must work there; reading
    names the package to install in one line."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['fastjsonschema'] = None\n"
        "from nvila_bench.core.measuring.results import Metric, Record\n"
        "from nvila_bench.core.measuring.result_files import ResultWriter, read_results\n"
        f"ResultWriter({str(tmp_path)!r}).write(Record('prefill', {{'preset': 'nvila-tiny'}}, {{'ttft': "
        "Metric.timing([0.1, 0.2])}, 'r'))\n"
        f"try:\n    read_results({str(tmp_path)!r})\nexcept ValueError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "reading results needs fastjsonschema (pip install fastjsonschema)" in out.stdout
