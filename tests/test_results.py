"""Results: schema validation, append-one-line writer, reader errors."""

import json

import pytest

from nvila_bench.core.results import SCHEMA_VERSION, ResultWriter, make_record, metric, point_id, read_results, validate_record


def record(**kw):
    args = dict(suite="prefill", config={"preset": "nvila-tiny"}, metrics={"ttft": metric(0.5, "s")}, run_id="r1")
    return make_record(**(args | kw))


def test_record_fields():
    r = record()
    assert r["schema_version"] == SCHEMA_VERSION and r["status"] == "ok" and r["preset"] == "nvila-tiny"
    assert r["point_id"] == point_id("prefill", {"preset": "nvila-tiny"}) != point_id("decode", {"preset": "nvila-tiny"})
    assert r["timestamp"].endswith("Z")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"status": "crashed"}, "status 'crashed'"),
        ({"provenance": "guessed"}, "provenance 'guessed'"),
        ({"status": "oom"}, "needs an error message"),
        ({"metrics": {"x": {"value": 1}}}, "metric 'x' needs value and unit"),
        ({"metrics": {"x": {"value": 1, "unit": "s", "provenance": "vibes"}}}, "metric 'x' provenance"),
        ({"schema_version": 99}, "schema_version 99"),
    ],
)
def test_invalid_records_are_rejected(change, message):
    bad = record() | change
    with pytest.raises(ValueError, match=message):
        validate_record(bad)


def test_writer_appends_whole_lines(tmp_path):
    writer = ResultWriter(tmp_path / "out")
    for i in range(3):
        writer.write(record(run_id=f"r{i}"))
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["run_id"] for line in lines] == ["r0", "r1", "r2"]
    assert [r["run_id"] for r in read_results(tmp_path / "out")] == ["r0", "r1", "r2"]


def test_writer_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        ResultWriter(tmp_path).write(record(metrics={"ttft": metric(float("nan"), "s")}))
    assert not (tmp_path / "results.jsonl").exists() or (tmp_path / "results.jsonl").read_text() == ""


def test_reader_names_the_bad_line(tmp_path):
    ResultWriter(tmp_path).write(record())
    with open(tmp_path / "results.jsonl", "a") as f:
        f.write('{"schema_version": 1}\n')
    with pytest.raises(ValueError, match=r"results.jsonl:2: invalid result record: missing 'run_id'"):
        read_results(tmp_path)
