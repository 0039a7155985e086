"""A fallback is never a headline: a figure whose engine fell back (any `engine_note`: a compiled decode step,
prefill or vision tower that ran another way) is marked with its note in the headline and the engines section,
and so is a speed-up computed from it; the environment names a dirty tree's diff by its digest."""

from __future__ import annotations

from fake_records import report_data, report_html
from nvila_bench.reports import runs
from test_report import engine_record

from nvila_bench.core.measuring.results import Metric

NOTE = "LLM prefill fell back to eager: RuntimeError: operation not permitted when stream is capturing"
MARK = f'<span class="regression fell-back" title="{NOTE}">fell back: {NOTE}</span>'


def _fell_back(record, note: str = NOTE):
    record.metrics["engine_note"] = Metric.measured(note, "text")
    return record


def test_the_headline_marks_a_fallen_back_ttft_and_decode_rate_with_the_note():
    records = [engine_record("prefill", "compiled", 0.1), _fell_back(engine_record("decode", "compiled", 0.01))]
    (row,) = next(iter(report_data(records)["headline"]["groups"].values()))
    assert (row["ttft_fell_back"], row["decode_fell_back"]) == (None, NOTE)
    html = report_html(records, ["x.jsonl"])
    headline = html[html.index('id="headline"') : html.index('id="engines"')]
    assert headline.count(MARK) == 1  # beside the decode rate only: the TTFT's engine did not fall back
    plain = [engine_record("prefill", "compiled", 0.1), engine_record("decode", "compiled", 0.01)]
    assert "fell-back" not in report_html(plain, ["x.jsonl"])


def test_the_engines_section_marks_the_engine_that_fell_back_and_the_ratio_from_it():
    compiled = _fell_back(engine_record("decode", "compiled", 0.01))
    peer = engine_record("decode", "hf-static", 0.02)
    (row,) = report_data([compiled, peer])["engines"]["rows"]
    assert (row["reference_fell_back"], row["fell_back"]) == (NOTE, None)
    assert NOTE not in row["notes"]  # shown as a fallback, not among the muted notes
    html = report_html([compiled, peer], ["x.jsonl"])
    engines = html[html.index('id="engines"') : html.index('id="claims"')]
    assert MARK in engines and "of a fallen-back figure" in engines
    clean = report_html([engine_record("decode", "compiled", 0.01), peer], ["x.jsonl"])
    assert "of a fallen-back figure" not in clean and "fell-back" not in clean


def test_any_engine_note_is_a_fallback_in_the_ladder_too():
    from nvila_bench.reports.views import deployment
    from test_report import LADDER, deployment_record

    record = deployment_record(*LADDER[2])
    note = "vision tower and projector eager (FastVision failed to compile)"  # no "fell back to eager" in it
    record.metrics["engine_note"] = Metric.measured(note, "text")
    assert deployment.ladder([record])["groups"][0]["rows"][0]["fell_back"]


def test_the_environment_names_a_dirty_trees_diff_by_its_digest():
    record = engine_record("prefill", "compiled", 0.1)
    record.environment = record.environment | {"git_dirty": True, "git_diff_sha256": "ab" * 32}
    (env,) = runs.environments([record])
    assert env["revision"] == "a" * 12 + " (dirty, diff sha256 abababababab)"
    record.environment = record.environment | {"git_diff_sha256": None}  # records before the digest
    assert runs.environments([record])[0]["revision"] == "a" * 12 + " (dirty)"
