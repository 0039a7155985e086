"""benchmarks/goals.py reads issue 15's and issue 16's goals out of a GPU results folder: checked on the committed
H100 runs, whose figures benchmarks/NOTES.md states, on folders that lack parts, and on ladders built from the
committed bf16 rung. A figure from a point whose engine fell back never meets a goal."""

from __future__ import annotations

import copy
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
TTFT = "NVILA-8B TTFT, 1920x1080 + 64 tokens"
MBU = "NVILA-8B decode MBU, of the run's measured copy rate (~5.6 ms/token on an H100)"
PEER, CV = "NVILA-8B decode speed-up over hf-static, same run", "Time-per-token CV, compiled"
W4, OVER_BF16 = "W4A16 decode, NVILA-8B image request", "W4A16 decode over the bf16 rung"
OVER_PEER = "W4A16 decode over transformers + torchao int4 (hf-static, tinygemm)"
W8, PREFILL = "W8A8 vision tower over the bf16 rung's tower", "W4A16 LLM prefill vs the bf16 rung's"
BYTES = "W4A16 rung: weight bytes measured vs predicted (ViT, projector, LLM)"
AA_DECODE = "A/A pairs of one decode point through `gate` at 5%"
AA_PREFILL = "A/A pairs of one prefill point through `gate` at 5%"
V3_NOTE = "LLM prefill eager (3137 tokens > 2048: no graph)"


@pytest.fixture(scope="module")
def goals():
    spec = importlib.util.spec_from_file_location("goals", ROOT / "benchmarks" / "goals.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["goals"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules["goals"]


def _got(goals, folder: Path) -> dict:
    fast, ladder, _ = goals.goals(folder)
    return {g.name: (g.figure, g.verdict) for g in fast + ladder}


def _status(goals, folder: Path) -> dict:
    fast, ladder, _ = goals.goals(folder)
    return {g.name: g.status for g in fast + ladder}


def test_the_v3_goals_run_as_the_notes_state_it(goals):
    folder = RESULTS / "h100-sxm-2026-11-28"
    fast, ladder, hardware = goals.goals(folder)
    assert hardware == "NVIDIA H100 80GB HBM3"
    got = _got(goals, folder)
    assert got[MBU] == ("0.792 (6.009 ms/token; floor 4.76 ms)", False)  # the goal is now 0.85 of the copy rate
    assert got[PEER] == ("1.57x (9.44 / 6.009 ms)", None)  # reported, no target
    assert got[CV] == ("0.31%", True)
    # 129.3 ms was measured with the LLM prefill run eagerly: a fallen-back figure, missed whatever its value
    assert got[TTFT] == ("129.3 ms", False)
    assert _status(goals, folder)[TTFT] == f"**missed** (fell back: {V3_NOTE})"
    assert got["Vision tower MFU, NVILA-8B / Lite-2B (both)"] == ("0.565 / 0.556", False)  # the 8B's point fell back
    assert got["NVILA-Lite-2B LLM prefill MFU"] == ("0.484", True)
    # its ids agree, but they are one id repeated, and logits were not recorded then: no check, so unmeasured
    assert got["NVILA-8B decode: compiled = hf-static, same run (bf16)"] == (
        "ids agree (1 distinct of 16); logits not recorded (before 2026-12-06): the logits part is unchecked",
        None,
    )
    # no A/A pairs in that run (the notes say why) and no ladder: unmeasured, not met
    assert got[AA_DECODE] == (None, None)
    assert all(g.verdict is None and g.status == "unmeasured" for g in ladder)
    row = next(g for g in fast if g.name == TTFT).row()
    assert row.startswith(f"| {TTFT} | <= 110 ms | 129.3 ms | **missed** (fell back: {V3_NOTE}) | `prefill/")


def test_a_folder_with_only_some_parts(goals, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(RESULTS / "h100-sxm-2026-11-27-decode", folder)
    got = _got(goals, folder)
    assert got[PEER] == ("1.24x (9.54 / 7.670 ms)", None)
    assert got[TTFT] == (None, None)  # no prefill part in that folder
    # the v1 pairs were measured in one process: 0 alarms, but not the goal's setting (2+ processes a side)
    assert got[AA_DECODE] == ("0 in 5, 1 process a side: not the goal's setting yet", None)
    summary = "prefill nvila-lite-2b: {} false alarm(s) in {} A/A pairs (2 processes a side)\n"
    cut = "pair 0: gate exit 1\n" + summary.format(1, 1) + "pair 1: gate exit 0\n" + summary.format(1, 2)
    (folder / "aa-prefill.txt").write_text(cut)  # a run cut after two pairs: the last summary counts
    assert _got(goals, folder)[AA_PREFILL] == ("1 in 2, 2 processes a side", False)
    (folder / "aa-prefill.txt").write_text(summary.format(0, 5))
    assert _got(goals, folder)[AA_PREFILL] == ("0 in 5, 2 processes a side", True)
    assert f"| {TTFT} | <= 110 ms | - | unmeasured | - |" in goals.table(folder)


def test_goals_read_the_summary_aa_pairs_prints(goals, tmp_path):
    spec = importlib.util.spec_from_file_location("aa_pairs", ROOT / "benchmarks" / "aa_pairs.py")
    aa = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(aa)
    for processes, failed, figure, met in (
        (2, 0, "0 in 5, 2 processes a side", True),
        (1, 0, "0 in 5, 1 process a side: not the goal's setting yet", None),
        (3, 1, "0 in 4, 3 processes a side: not the goal's setting yet", None),
    ):
        line = aa.summary("decode", "nvila-lite-2b", 0, 5 - failed, processes, failed)
        (tmp_path / "aa-decode.txt").write_text(f"decode pair 0: gate exit 0\n{line}\n")
        assert _got(goals, tmp_path)[AA_DECODE] == (figure, met), line


def test_a_folder_with_no_records_yet_lists_every_goal_unmeasured_with_the_versions_and_parts(goals, tmp_path):
    """A session cut before its first record still gets its goals page: what ran, what was cut, on what."""
    (tmp_path / "versions.txt").write_text("gpu: NVIDIA H100 80GB HBM3 (driver 580.159.04)\ntorchao: 0.18.0\n")
    (tmp_path / "parts.txt").write_text("decode: cut at its timeout of 130 s; its finished points are kept\n")
    text = goals.table(tmp_path)
    assert "no goal point measured" in text and text.count("| unmeasured |") == 17
    assert "- gpu: NVIDIA H100 80GB HBM3 (driver 580.159.04)\n- torchao: 0.18.0" in text
    assert "- decode: cut at its timeout of 130 s" in text


def test_neither_a_jpeg_files_record_nor_a_peer_of_another_run_stands_for_a_goal(goals, tmp_path):
    """A JPEG file's point measures the same request with decoding inside preprocessing, later; and a re-run
    appends its records to the folder: the speed-up over hf-static is a ratio measured side by side."""
    folder = tmp_path / "run"
    shutil.copytree(RESULTS / "h100-sxm-2026-11-28", folder)
    lines = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    point = ("prefill", "nvila-8b", "compiled")
    big = next(r for r in lines if (r["suite"], r["preset"], r["config"]["engine"]) == point)
    from_file = json.loads(json.dumps(big))
    from_file["config"]["extra"] = {"image_file": "street.jpg"}
    from_file["timestamp"] = "2026-12-31T00:00:00Z"
    from_file["metrics"]["ttft"]["value"] = 0.5
    for r in lines:
        if r["suite"] == "decode" and r["config"]["engine"] == "hf-static":
            r["run_id"] = "another-run"
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [*lines, from_file]))
    got = _got(goals, folder)
    assert got[TTFT] == ("129.3 ms", False)  # the synthetic image's record, not the file's
    assert got[PEER] == (None, None)


@pytest.mark.parametrize(
    "scale, digest, nan, figure, met",
    [
        (1.002, "same", 0, "last-step logits 2.0e-03 apart", True),
        (1.5, "same", 0, "last-step logits 5.0e-01 apart", False),
        (1.0, "same", 3, "NaN in the logits (3)", False),
        # one id repeated and sequences that part later: nothing checked, neither met nor missed
        (1.0, "other", 0, "the sequences part later (bf16 near-ties can), so the logits part is unchecked", None),
    ],
)
def test_compiled_equals_hf_static_by_the_logits_of_the_last_step(goals, tmp_path, scale, digest, nan, figure, met):
    folder = tmp_path / "run"
    shutil.copytree(RESULTS / "h100-sxm-2026-11-28", folder)
    lines = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    logits = [0.5, -1.25, None, 2.0] * 64
    for r in lines:
        if r["suite"] == "decode" and r["config"]["engine"] in ("compiled", "hf-static"):
            peer = r["config"]["engine"] == "hf-static"
            factor = scale if peer else 1.0
            r["metrics"]["output_ids_digest"] = {"value": digest if peer else "same", "unit": "sha256"}
            scaled = [None if x is None else x * factor for x in logits]
            r["metrics"]["last_step_logits"] = {"value": scaled, "unit": "logits"}
            r["metrics"]["last_step_logits_nan"] = {"value": nan if peer else 0, "unit": "count"}
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    got = _got(goals, folder)
    same = "NVILA-8B decode: compiled = hf-static, same run (bf16)"
    assert got[same] == (f"ids agree (1 distinct of 16); {figure}", met)


# ---- issue 16: the ladder ----------------------------------------------------------------------------------
BF16 = json.loads((RESULTS / "h100-sxm-2026-11-28-deployment" / "results.jsonl").read_text().splitlines()[0])


def _rung(
    name: str,
    tps: float,
    llm_prefill: float,
    vision: float,
    engine: str = "compiled",
    run_id: str = "run-l",
    note: str | None = None,
    **extra,
) -> dict:
    """The committed bf16 rung's record as rung `name` with these figures (seconds, tokens/s)."""
    r = copy.deepcopy(BF16)
    r["run_id"], r["config"]["engine"] = run_id, engine
    r["config"]["extra"] |= {"rung": name} | extra
    metrics = r["metrics"]
    metrics.pop("engine_note")
    if note:
        metrics["engine_note"] = {"value": note, "unit": "text"}
    for name, value in (("decode_tokens_per_s", tps), ("llm_prefill", llm_prefill), ("vision", vision)):
        metrics[name]["value"] = value
    return r


def _ladder(tmp_path: Path, *records: dict) -> Path:
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return tmp_path


def test_the_w4a16_goals_against_bf16_the_torchao_peer_and_the_prediction(goals, tmp_path):
    w4 = _rung("w4a16-llm", 320.0, 0.0850, 0.0416, llm_weights="w4a16", int4_kernel="gemlite")
    w4["metrics"]["llm_weights_bytes"]["value"] = 4_740_000_000
    w4["metrics"]["llm_weights_bytes_predicted"]["value"] = 4_700_000_000  # 0.85% over: within 1%
    peer = _rung("w4a16-llm", 71.0, 1.57, 0.05, "hf-static", "run-p", llm_weights="w4a16", int4_kernel="tinygemm")
    w8 = _rung("w8a8-vit-int8", 318.0, 0.0851, 0.0280, run_id="run-v", llm_weights="w4a16", vision_weights="w8a8-int8")
    folder = _ladder(tmp_path, _rung("bf16", 165.0, 0.0860, 0.0416), w4, peer, w8)
    got = _got(goals, folder)
    assert got[W4] == ("320.0 tokens/s (gemlite)", True)
    assert got[OVER_BF16] == ("1.94x (320 vs 165 tokens/s)", True)
    assert got[OVER_PEER] == ("4.51x (320 vs 71 tokens/s, another run)", True)
    assert got[PREFILL] == ("85.00 vs 86.00 ms (0.99x the time)", True)
    assert got[BYTES] == ("5.692 GB vs 5.652 GB (+0.71%)", True)
    assert got[W8] == ("1.49x (28 vs 41.6 ms, another run)", True)
    w4["metrics"]["llm_weights_bytes"]["value"] = 4_800_000_000  # 2.1% over
    w4["metrics"]["decode_tokens_per_s"]["value"] = 250.0
    got = _got(goals, _ladder(tmp_path, _rung("bf16", 165.0, 0.0860, 0.0416), w4))
    assert got[W4] == ("250.0 tokens/s (gemlite)", False) and got[OVER_BF16] == ("1.52x (250 vs 165 tokens/s)", False)
    assert got[BYTES][1] is False and got[W8] == (None, None)


def test_a_goal_met_by_a_fallen_back_figure_reads_missed_with_the_note(goals, tmp_path):
    note = "the decode prefill fell back to eager: RuntimeError: CUDA error"
    folder = _ladder(
        tmp_path,
        _rung("bf16", 165.0, 0.0860, 0.0416),
        _rung("w4a16-llm", 400.0, 0.080, 0.0416, note=note, llm_weights="w4a16", int4_kernel="gemlite"),
    )
    got, status = _got(goals, folder), _status(goals, folder)
    assert got[W4] == ("400.0 tokens/s (gemlite)", False) and status[W4] == f"**missed** (fell back: {note})"
    assert got[OVER_BF16][1] is False and status[PREFILL] == f"**missed** (fell back: {note})"
    # the bf16 rung falling back makes the ratio over it no measure of W4A16 either
    folder = _ladder(
        tmp_path,
        _rung("bf16", 100.0, 0.0860, 0.0416, note=note),
        _rung("w4a16-llm", 400.0, 0.080, 0.0416, llm_weights="w4a16", int4_kernel="gemlite"),
    )
    assert _got(goals, folder)[W4] == ("400.0 tokens/s (gemlite)", True) and _got(goals, folder)[OVER_BF16][1] is False
