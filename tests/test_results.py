"""Results: typed records, validation, append-one-line writer, reader errors, version-1 upgrade."""

import json

import pytest

from nvila_bench.core.measuring.result_files import ResultWriter, read_results
from nvila_bench.core.measuring.results import SCHEMA_VERSION, Metric, Record, point_id, upgrade_v1


def record(**kw) -> Record:
    args = dict(
        suite="prefill", config={"preset": "nvila-tiny"}, metrics={"ttft": Metric.measured(0.5, "s")}, run_id="r1"
    )
    return Record(**(args | kw))


def test_record_fields():
    r = record()
    assert r.schema_version == SCHEMA_VERSION and r.status == "ok" and r.ok and r.preset == "nvila-tiny"
    assert r.point_id == point_id("prefill", {"preset": "nvila-tiny"}) != point_id("decode", {"preset": "nvila-tiny"})
    assert r.timestamp.endswith("Z")
    d = r.to_dict()
    assert d["schema_version"] == SCHEMA_VERSION and d["preset"] == "nvila-tiny" and d["point_id"] == r.point_id
    assert r.value("ttft") == 0.5 and r.value("missing") is None and r.extra == {}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"status": "crashed"}, r"must be one of \['ok', .*got 'crashed' \(status\)"),
        ({"provenance": "guessed"}, r"got 'guessed' \(provenance\)"),
        ({"status": "oom"}, r"must be string, got None \(error\)"),  # a failed point needs its error message
        ({"metrics": {"x": {"value": 1}}}, r"missing 'unit' \(metrics.x\)"),
        ({"metrics": {"x": {"value": 1, "unit": "s", "provenance": "vibes"}}}, r"got 'vibes' \(metrics.x.provenance\)"),
        ({"schema_version": 99}, "schema_version 99"),
    ],
)
def test_invalid_records_are_rejected(change, message):
    bad = record().to_dict() | change
    with pytest.raises(ValueError, match=message):
        Record.from_dict(bad)


def test_invalid_records_cannot_be_built():
    with pytest.raises(ValueError, match="needs an error message"):
        record(status="oom")
    with pytest.raises(ValueError, match="better 'up'"):
        Metric(1.0, "s", better="up")
    with pytest.raises(ValueError, match="needs derived_from"):
        Metric(0.5, "fraction", merge="rescale")


def test_round_trip_through_json():
    """Record -> JSON -> Record is the identity, for every kind of metric the constructors make."""
    r = record(
        metrics={
            "ttft": Metric.timing([0.1, 0.12, 0.11]),
            "rate": Metric.rate([0.1, 0.2], 4, "tokens/s"),
            "mfu": Metric.utilisation(0.4, of="ttft"),
            "flops": Metric.analytic(1e12, "FLOP"),
            "peak": Metric.measured(2**30, "bytes", better="lower", merge="max"),
            "table": Metric.measured([{"stage": "vision", "seconds": 0.1}], "per step"),
        },
        environment={"device": "cpu"},
        config={"preset": "nvila-tiny", "extra": {"variant": "a"}},
    )
    back = Record.from_dict(json.loads(r.to_json()))
    assert back == r
    assert back.metrics["mfu"].derived_from == "ttft" and back.metrics["rate"].better == "higher"
    assert back.extra == {"variant": "a"} and back.point_id == r.point_id


def test_a_version_1_record_upgrades():
    """Version 1 stored no direction or merge rule: they are inferred (timings lower and pooled, rates higher,
    a metric with "of" rescaled with its source, counts without a direction)."""
    v1 = {
        "schema_version": 1,
        "run_id": "r",
        "point_id": "x",
        "timestamp": "2026-11-27T11:32:11Z",
        "suite": "decode",
        "status": "ok",
        "error": None,
        "provenance": "measured",
        "preset": "nvila-8b",
        "config": {"preset": "nvila-8b"},
        "environment": None,
        "metrics": {
            "ttft": {
                "value": 0.1,
                "unit": "s",
                "provenance": "measured",
                "samples": [0.1, 0.1],
                "summary": Metric.timing([0.1, 0.1]).summary,
            },
            "decode_tokens_per_s": {
                "value": 50.0,
                "unit": "tokens/s",
                "provenance": "measured",
                "samples": [50.0, 50.0],
                "summary": Metric.rate([0.02, 0.02], 1, "tokens/s").summary,
            },
            "llm_prefill_mfu": {"value": 0.8, "unit": "fraction", "provenance": "measured", "of": "llm_prefill"},
            "mfu": {"value": 0.4, "unit": "fraction", "provenance": "measured"},
            "peak_memory_allocated": {"value": 123, "unit": "bytes", "provenance": "measured"},
            "iterations": {"value": 5, "unit": "count", "provenance": "measured"},
            "llm_prefill_flops": {"value": 1e12, "unit": "FLOP", "provenance": "analytic"},
        },
    }
    r = Record.from_dict(v1)
    assert r.schema_version == SCHEMA_VERSION and r.preset == "nvila-8b"
    m = r.metrics
    assert (m["ttft"].better, m["ttft"].merge) == ("lower", "pool")
    assert (m["decode_tokens_per_s"].better, m["decode_tokens_per_s"].merge) == ("higher", "pool")
    mfu = m["llm_prefill_mfu"]
    assert (mfu.better, mfu.merge, mfu.derived_from) == ("higher", "rescale", "llm_prefill")
    assert m["mfu"].better == "higher"  # a fraction: the old unit-suffix guess called it lower-is-better
    assert (m["peak_memory_allocated"].better, m["peak_memory_allocated"].merge) == ("lower", "max")
    assert m["iterations"].better is None and m["llm_prefill_flops"].better is None
    assert "of" not in upgrade_v1(v1["metrics"])["llm_prefill_mfu"]
    assert Record.from_dict(json.loads(r.to_json())) == r  # and it writes back as version 2


def test_writer_appends_whole_lines(tmp_path):
    writer = ResultWriter(tmp_path / "out")
    for i in range(3):
        writer.write(record(run_id=f"r{i}"))
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["run_id"] for line in lines] == ["r0", "r1", "r2"]
    assert [r.run_id for r in read_results(tmp_path / "out")] == ["r0", "r1", "r2"]


def test_writer_never_writes_nan(tmp_path):
    """JSON has no NaN: the writer cannot raise on one (it used to, losing the sweep); the figure is null."""
    ResultWriter(tmp_path).write(record(metrics={"ttft": Metric.measured(float("nan"), "s")}))
    (back,) = read_results(tmp_path)
    assert back.status == "nonfinite" and back.metrics["ttft"].value is None


def test_reader_names_the_bad_line(tmp_path):
    ResultWriter(tmp_path).write(record())
    with open(tmp_path / "results.jsonl", "a") as f:
        f.write('{"schema_version": 1}\n')
    with pytest.raises(ValueError, match=r"results.jsonl:2: invalid result record: missing 'run_id'"):
        read_results(tmp_path)
