"""What keeps the deployment ladder honest: ladders of different requests stay apart, a rung that fell back to
eager says so, a ratio over a peer measured by another command says "other run", a trained checkpoint's accuracy
per rung is shown with its points against bf16, and the paper's GPU is matched by whole name."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fake_records import report_html
from nvila_bench.reports import deployment_paper
from nvila_bench.reports.views import deployment
from test_report import LADDER, deployment_record

from nvila_bench.core.measuring.results import Metric


def _config(record, **changes):
    return replace(record, config=record.config | changes)


def _metrics(record, **metrics):
    return replace(record, metrics=record.metrics | metrics)


def test_ladders_of_different_requests_are_two_tables_never_one():
    small = [deployment_record(*LADDER[1]), deployment_record(*LADDER[2])]
    large = [_config(r, images=["1920x1080"]) for r in (deployment_record(*LADDER[1]), deployment_record(*LADDER[2]))]
    groups = deployment.ladder(small + large)["groups"]
    assert sorted(g["request"] for g in groups) == [
        "1920x1080, 64 prompt tokens, 8 new tokens",
        "448x448, 64 prompt tokens, 8 new tokens",
    ]
    assert all(
        [r["rung"] for r in g["rows"]] == ["bf16", "w4a16-llm"] for g in groups
    )  # nothing dropped as a duplicate
    assert "Request: 1920x1080, 64 prompt tokens, 8 new tokens." in report_html(small + large, ["x.jsonl"])


def test_a_rung_that_fell_back_to_eager_says_so_in_its_row():
    note = "fell back to eager: RuntimeError: operation not permitted when stream is capturing"
    record = _metrics(deployment_record(*LADDER[2]), engine_note=Metric.measured(note, "text"))
    row = deployment.ladder([record])["groups"][0]["rows"][0]
    assert row["fell_back"] and row["engine_note"] == note
    assert f'<span class="regression">note: {note}</span>' in report_html([record], ["x.jsonl"])


def test_a_ratio_over_a_peer_of_another_run_says_so():
    ours = [_config(deployment_record(*LADDER[2]), engine="compiled")]
    same = [_config(deployment_record(*LADDER[2]), engine="hf-static")]
    other = [replace(same[0], run_id="run-other")]
    for peer, flag in ((same, True), (other, False)):
        row = {g["engine"]: g for g in deployment.ladder(ours + peer)["groups"]}["compiled"]["rows"][0]
        assert [(p["engine"], p["same_run"]) for p in row["vs_peers"]] == [("hf-static", flag)]
    assert "hf-static, other run</span>" in report_html(ours + other, ["x.jsonl"])
    assert "other run</span>" not in report_html(ours + same, ["x.jsonl"])


def test_a_trained_checkpoints_accuracy_per_rung_with_its_points_against_bf16():
    bf16 = _metrics(deployment_record(*LADDER[1]), synthetic_accuracy=Metric.measured(0.90, "fraction"))
    w4 = _metrics(
        deployment_record(*LADDER[2]),
        synthetic_accuracy=Metric.measured(0.875, "fraction"),
        checkpoint_top1_agreement=Metric.measured(0.96, "fraction"),
    )
    rows = {r["rung"]: r for r in deployment.ladder([bf16, w4])["groups"][0]["rows"]}
    assert rows["w4a16-llm"]["accuracy_points_vs_bf16"] == pytest.approx(-2.5)
    assert rows["w4a16-llm"]["checkpoint_top1"] == 0.96
    html = report_html([bf16, w4], ["x.jsonl"])
    assert "-2.5 points" in html and "top-1 96.0%" in html
    alone = deployment.ladder([w4])["groups"][0]["rows"][0]  # no bf16 row to compare with: no points, still rendered
    assert alone["accuracy_points_vs_bf16"] is None and "87.5%" in report_html([w4], ["x.jsonl"])


@pytest.mark.parametrize(
    "paper_gpu, hardware, same",
    [
        ("A100", "NVIDIA A100-SXM4-80GB", True),
        ("A100", "NVIDIA RTX A1000", False),
        ("RTX 4090", "GeForce RTX4090", True),
        ("Orin", "Jetson AGX Orin", True),
        ("A100", "CPU A100", False),
    ],
)
def test_the_papers_gpu_is_matched_by_whole_name(paper_gpu, hardware, same):
    assert deployment_paper.same_hardware(paper_gpu, hardware) is same
