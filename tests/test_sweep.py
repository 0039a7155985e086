"""Sweeps end to end on tiny presets: records validate, OOM / errors are recorded and the sweep goes on,
--isolate survives a dead worker, Ctrl-C keeps every completed point, bad input exits 2."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import read_dicts

from nvila_bench.cli import main
from nvila_bench.core.measuring.point import BenchPoint
from nvila_bench.core.measuring.point import points_from_axes as expand
from nvila_bench.runner.suite_file import load_suite_file

FAST = ["--warmup", "0", "--repeats", "2", "--min-seconds", "0", "--quiet"]
NVILA_BENCH = str(Path(sys.executable).parent / "nvila-bench")


def test_expand_is_a_cartesian_product_in_order():
    points = expand({"preset": ["nvila-tiny", "vila-tiny"], "batch_size": [1, 2, 4], "images": [((448, 448),)]})
    assert len(points) == 6
    assert [(p.preset, p.batch_size) for p in points[:3]] == [("nvila-tiny", 1), ("nvila-tiny", 2), ("nvila-tiny", 4)]


def test_suite_file_axes(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        'suite = "prefill"\npreset = ["nvila-tiny", "vila-tiny"]\n'
        'images = [["448x448"], ["640x480", "64x64"]]\nprompt_tokens = 16\n'
    )
    suite, axes = load_suite_file(path)
    assert suite == "prefill"
    assert axes["images"] == [((448, 448),), ((640, 480), (64, 64))]
    assert axes["prompt_tokens"] == [16]
    assert len(expand(axes)) == 4


def test_prefill_and_decode_records(tmp_path):
    out = tmp_path / "out"
    assert (
        main(
            [
                "run",
                "prefill",
                "--preset",
                "nvila-tiny",
                "--preset",
                "vila-tiny",
                "--image",
                "640x480",
                "--out",
                str(out),
                *FAST,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "run",
                "decode",
                "--preset",
                "nvila-lite-tiny",
                "--video-frames",
                "8",
                "--new-tokens",
                "5",
                "--cache",
                "static",
                "--out",
                str(out),
                *FAST,
            ]
        )
        == 0
    )
    records = read_dicts(out)
    assert [(r["suite"], r["preset"], r["status"]) for r in records] == [
        ("prefill", "nvila-tiny", "ok"),
        ("prefill", "vila-tiny", "ok"),
        ("decode", "nvila-lite-tiny", "ok"),
    ]
    prefill = records[0]["metrics"]
    assert prefill["visual_tokens"]["value"] == 3072 and prefill["media_tokens"]["value"] == 3073
    assert prefill["ttft"]["summary"]["n"] == 2 and len(prefill["ttft"]["samples"]) == 2
    stages = sum(prefill[s]["value"] for s in ("preprocess", "vision", "projector", "llm_prefill"))
    assert 0 < stages
    assert prefill["llm_prefill_flops"]["provenance"] == "analytic"
    assert prefill["vision_attention"]["value"] == "flash_attention"  # PyTorch's CPU flash kernel takes bf16 SigLIP
    decode = records[2]["metrics"]
    assert decode["tpot"]["summary"]["n"] == 2 * 4  # 2 iterations x (5 - 1) steps
    assert decode["context_tokens"]["value"] == 976 + 64
    assert decode["kv_cache_bytes"]["value"] > 0
    env = records[0]["environment"]
    assert env["torch"] and records[0]["config"]["images"] == ["640x480"]


def test_injected_oom_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("NVILA_BENCH_FAULT", "oom:nvila-lite-tiny")
    args = ["run", "prefill", "--preset", "nvila-tiny", "--preset", "nvila-lite-tiny", "--preset", "vila-tiny"]
    assert main([*args, "--image", "448x448", "--out", str(tmp_path), *FAST]) == 0
    records = read_dicts(tmp_path)
    assert [r["status"] for r in records] == ["ok", "oom", "ok"]
    assert "out of memory" in records[1]["error"]


@pytest.mark.parametrize("fault, status", [("oom", "oom"), ("error", "error")])
def test_isolated_points(tmp_path, fault, status):
    env = os.environ | {"NVILA_BENCH_FAULT": f"{fault}:vila-tiny"}
    args = [
        NVILA_BENCH,
        "run",
        "prefill",
        "--preset",
        "vila-tiny",
        "--preset",
        "nvila-tiny",
        "--isolate",
        "--out",
        str(tmp_path),
        *FAST,
    ]
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert [r["status"] for r in read_dicts(tmp_path)] == [status, "ok"]


def test_sigint_keeps_completed_points(tmp_path):
    args = [a for pair in zip(["--prompt-tokens"] * 12, [str(i) for i in range(1, 13)]) for a in pair]
    cmd = [
        NVILA_BENCH,
        "run",
        "prefill",
        "--preset",
        "vila-tiny",
        *args,
        "--image",
        "448x448",
        "--out",
        str(tmp_path),
        "--warmup",
        "0",
        "--repeats",
        "1",
        "--min-seconds",
        "0.3",
        "--quiet",
    ]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    results = tmp_path / "results.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and (not results.exists() or len(results.read_text().splitlines()) < 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    records = read_dicts(tmp_path)  # every line parses and validates
    assert 2 <= len(records) < 12
    assert f"{len(records)} completed point(s) kept" in err
    assert results.read_text().endswith("\n")


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "prefill", "--image", "448x448"], "give at least one --preset"),
        (["run", "prefill", "--preset", "nope"], "unknown preset 'nope'"),
        (["run", "prefill", "--preset", "nvila-tiny", "--video-frames", "-2"], "video frames must be a positive"),
        (["run", "prefill", "--preset", "nvila-tiny", "--dtype", "fp64"], "unknown dtype 'fp64'"),
        (["run", "prefill", "--preset", "nvila-tiny", "--device", "cuda"], "torch sees no CUDA device"),
        (["run", "prefill", "--preset", "nvila-tiny", "--attn", "magic"], "unknown attention implementation"),
        (["run", "decode", "--preset", "nvila-tiny", "--batch-size", "0"], "batch_size must be >= 1"),
        (["run", "prefill", "--preset", "nvila-tiny", "--config", "/nonexistent.toml"], "cannot read suite file"),
        (["run", "prefill", "--preset", "nvila-tiny", "--repeats", "0"], "repeats"),
    ],
)
def test_bad_run_input_exits_2(tmp_path, capsys, args, message):
    code = main([*args, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("nvila-bench: error: ") and err.count("\n") == 1
    assert message in err
    assert not (tmp_path / "o" / "results.jsonl").exists()


def test_point_round_trip():
    point = BenchPoint("nvila-tiny", images=((640, 480),), video_frames=8, batch_size=2)
    assert BenchPoint.from_config(json.loads(json.dumps(point.to_config()))) == point
    assert point.dtype == "float32" and BenchPoint("nvila-tiny", device="cuda", images=((1, 1),)).dtype == "bfloat16"


def test_merge_runs_pools_samples_and_rescales_utilisation():
    from nvila_bench.core.measuring.results import Metric, Record
    from nvila_bench.runner.sweep import merge_runs

    def run(samples, peak):
        m = {
            "ttft": Metric.timing(samples),
            "vision_mfu": Metric.utilisation(0.5, "ttft"),
            "peak_rss": Metric.measured(peak, "bytes", "lower", "max"),
            "vit_tiles": Metric.measured(17, "tiles"),
        }
        return Record("prefill", {"preset": "nvila-tiny"}, m, "r")

    merged = merge_runs([run([1.0, 1.0, 1.0], 10), run([2.0, 2.0, 2.0], 30), run([2.0, 2.0, 2.0], 20)]).to_dict()
    ttft = merged["metrics"]["ttft"]
    assert ttft["value"] == 2.0 and ttft["summary"]["n"] == 9 and len(ttft["samples"]) == 9
    assert ttft["summary"]["ci_low"] <= 1.0  # a run sitting at 1.0 can be drawn on its own
    assert merged["metrics"]["vision_mfu"]["value"] == pytest.approx(0.25)  # median doubled
    assert merged["metrics"]["peak_rss"]["value"] == 30 and merged["metrics"]["vit_tiles"]["value"] == 17
    assert merged["config"]["processes"] == 3
    failed = Record("prefill", {"preset": "nvila-tiny"}, {}, "r", status="oom", error="out of memory")
    assert merge_runs([run([1.0], 1), failed]).status == "oom"


def test_measured_ceilings_feed_mfu_only_for_their_dtype(tmp_path):
    from nvila_bench.core.analysis.hardware import resolve_peaks

    (tmp_path / "ceilings.json").write_text(
        json.dumps({"device": "cpu", "dtype": "float32", "gemm_tflops": 0.5, "copy_gbs": 20.0})
    )
    peaks = resolve_peaks("cpu", "float32", ceilings=str(tmp_path / "ceilings.json"))
    assert (peaks.flops, peaks.bandwidth) == (0.5e12, 20e9) and peaks.source.startswith("measured:")
    assert resolve_peaks("cpu", "bfloat16", ceilings=str(tmp_path / "ceilings.json")) is None
    assert resolve_peaks("cpu", "bfloat16", hardware="h100-sxm").flops == pytest.approx(989.4e12)
    assert main(["run", "prefill", "--preset", "vila-tiny", "--out", str(tmp_path), *FAST]) == 0
    metrics = read_dicts(tmp_path)[0]["metrics"]
    assert metrics["vision_mfu"]["derived_from"] == "vision" and 0 < metrics["vision_mfu"]["value"] < 1


def test_each_dtype_of_a_sweep_gets_its_own_peaks(tmp_path):
    args = [
        "run",
        "prefill",
        "--preset",
        "vila-tiny",
        "--dtype",
        "float32",
        "--dtype",
        "bfloat16",
        "--hardware",
        "h100-sxm",
    ]
    assert main([*args, "--out", str(tmp_path), *FAST]) == 0
    fp32, bf16 = read_dicts(tmp_path)
    assert "vision_mfu" not in fp32["metrics"]  # the table has no fp32 tensor-core peak: no made-up MFU
    assert bf16["metrics"]["peaks_source"]["value"] == "table:h100-sxm" and "vision_mfu" in bf16["metrics"]
