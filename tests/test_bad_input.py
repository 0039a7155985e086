"""Issue 32's hostile input: each case ends in one line `nvila-bench: error: ...` and exit 2 before anything is
measured, or in a `skipped` record; never a traceback, a hang, or a value replaced without a word."""

import importlib
import json
import os
import struct
import zlib

import pytest
import torch
from fake_records import decode_record, prefill_record
from nvila_bench.suites.registry import get_suite, jobs_of

from nvila_bench.cli import main
from nvila_bench.core.measuring import result_files
from nvila_bench.core.measuring.results import Metric, Record
from nvila_bench.core.measuring.session import Session
from nvila_bench.runner import sweep

FAST = ["--warmup", "0", "--repeats", "1", "--min-seconds", "0", "--quiet"]
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusal")
FIFO = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")


def refused(capsys, argv, message: str) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in out + err, err
    assert err.startswith("nvila-bench: error: ") and err.count("\n") == 1, err
    assert message in err, err
    return err


@pytest.fixture
def no_measuring(monkeypatch):
    """Every job the runner would measure, captured instead of measured."""
    jobs = []
    monkeypatch.setattr(
        sweep,
        "run_job",
        lambda job, session, run_id, environment: (
            jobs.append(job) or Record(job.suite, {}, {}, run_id, environment=environment)
        ),
    )
    return jobs


# ------------------------------------------------------------------------------------------ outputs and inputs
def test_synthetic_data_under_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    refused(capsys, ["synthetic-data", "--out", str(tmp_path / "file" / "sub")], "cannot write")


@FIFO
def test_a_fifo_suite_file_is_refused_not_read(tmp_path, capsys):
    os.mkfifo(tmp_path / "sweep.toml")
    refused(
        capsys,
        [
            "run",
            "prefill",
            "--preset",
            "nvila-tiny",
            "--config",
            str(tmp_path / "sweep.toml"),
            "--out",
            str(tmp_path / "out"),
        ],
        "is not a regular file",
    )


@FIFO
def test_a_fifo_results_file_in_out_is_refused(tmp_path, capsys, no_measuring):
    (tmp_path / "out").mkdir()
    os.mkfifo(tmp_path / "out" / "results.jsonl")
    refused(
        capsys,
        ["run", "prefill", "--preset", "nvila-tiny", "--out", str(tmp_path / "out"), *FAST],
        "not a regular file",
    )
    assert not no_measuring


@FIFO
def test_readers_refuse_a_fifo_and_a_device(tmp_path, capsys):
    os.mkfifo(tmp_path / "results.jsonl")
    for source in (str(tmp_path), "/dev/zero"):
        refused(capsys, ["report", source, "--out", str(tmp_path / "r.html")], "not a regular file")
        refused(capsys, ["gate", "--baseline", source, "--candidate", source], "not a regular file")
    refused(capsys, ["dashboard", str(tmp_path), "--out", str(tmp_path / "site")], "not a regular file")


def test_a_line_over_the_bound_is_an_error_naming_file_and_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(result_files, "MAX_LINE_BYTES", 100_000)  # 16 MiB in use: /dev/zero as a file would be one line
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(prefill_record().to_dict()) + "\n" + "x" * 200_000 + "\n")
    refused(capsys, ["report", str(path), "--out", str(tmp_path / "r.html")], f"{path}:2: a line over 100,000 bytes")


# ------------------------------------------------------------------------------------------------ absurd counts
@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["decode", "--preset", "nvila-tiny", "--new-tokens", "1000000000"],
            "nvila-tiny: 1,000,002,369 positions (2,305 media + 64 prompt + 1,000,000,000 new tokens) exceed its "
            "131,072-position context",
        ),
        (["prefill", "--preset", "nvila-tiny", "--prompt-tokens", "200000"], "exceed its 131,072-position context"),
        (
            ["prefill", "--preset", "nvila-tiny", "--batch-size", "1000000000"],
            "nvila-tiny batch 1,000,000,000: needs at least",
        ),
        (["deployment", "--preset", "nvila-tiny", "--new-tokens", "1000000000"], "exceed its 131,072-position context"),
        (
            ["deployment", "--preset", "nvila-tiny", "--quality-prompts", "100000000000000000000"],
            "--quality-prompts 100,000,000,000,000,000,000: their log-probabilities need",
        ),
        (
            [
                "prefill",
                "--preset",
                "nvila-tiny",
                "--repeats",
                "100000000000000000000",
                "--max-repeats",
                "100000000000000000000",
            ],
            "is not in the range 1<=x<=1000000",
        ),
    ],
)
def test_a_count_no_model_or_machine_can_hold_is_refused(tmp_path, capsys, no_measuring, args, message):
    refused(capsys, ["run", *args, "--out", str(tmp_path / "out")], message)
    assert not no_measuring and not (tmp_path / "out").exists()


def test_a_ladder_rung_past_its_own_context_is_skipped_not_measured(tmp_path, capsys):
    """The ladder picks its scaled-only and VILA1.5 rungs itself: their video past their context is a skipped
    record, and the rungs of the user's preset are measured; a point of the user's preset past it refuses the run."""
    # vila-tiny: 672 x 196 > 131,072; 32 new tokens (a CPU's default request has 8)
    axes = {"preset": ["nvila-tiny"], "device": ["cpu"], "video_frames": [672], "new_tokens": [32]}
    jobs = jobs_of(get_suite("deployment"), axes, {"media": "video"})
    skipped = {j.point.extra["rung"]: j.skip for j in jobs if j.skip}
    assert set(skipped) == {"scaled-only bf16", "baseline bf16", "baseline quantized"}  # no TSP, or 196 tokens a frame
    assert skipped["baseline bf16"] == (
        "vila-tiny: 131,808 positions (131,712 media + 64 prompt + 32 new tokens) exceed its 131,072-position context"
    )
    writer = result_files.ResultWriter(tmp_path)
    sweep.run_sweep([j for j in jobs if j.skip], writer, Session(), "r", None)  # nothing is measured
    assert [r.status for r in result_files.read_results(tmp_path)] == ["skipped"] * 3
    assert result_files.read_results(tmp_path)[1].error == skipped["baseline bf16"]
    refused(
        capsys,
        [
            "run",
            "deployment",
            "--preset",
            "nvila-tiny",
            "--media",
            "video",
            "--video-frames",
            "8192",
            "--out",
            str(tmp_path / "o"),
        ],
        "exceed its 131,072-position context",
    )


# ----------------------------------------------------------------------------- one set of checks for every suite
@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--engine", "compiled", "--cache", "dynamic"],
            "--cache sets the eager engine's KV cache, and no point runs eager",
        ),
        (["--video-frames", "-5", "--media", "image"], "video frames must be a positive integer, got -5"),
        (
            ["--image", "2000000x1", "--media", "image"],
            "image size 2000000x1 is too large: each side must be at most 1,000,000 px",
        ),
    ],
)
def test_deployment_takes_the_checks_of_every_suite(tmp_path, capsys, no_measuring, args, message):
    refused(capsys, ["run", "deployment", "--preset", "nvila-tiny", *args, "--out", str(tmp_path / "out")], message)
    assert not no_measuring


def test_prefill_refuses_a_side_over_a_million_pixels(tmp_path, capsys, no_measuring):
    refused(
        capsys,
        ["run", "prefill", "--preset", "nvila-tiny", "--image", "2000000x1", "--out", str(tmp_path / "o")],
        "each side must be at most 1,000,000 px",
    )


def _png(path, width, height, pixels: bool):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    data = chunk(b"IDAT", zlib.compress(b"\0" + b"\0" * 3 * width)) if pixels else b""
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + data + chunk(b"IEND", b""))


@pytest.mark.parametrize(
    "case, message",
    [
        ("fifo", "not a regular file"),
        ("truncated jpeg", "not a readable image (OSError: image file is truncated"),
        ("png without pixels", "not a readable image"),
        ("a side over 10^6 px", "2000000x1 is too large"),
    ],
)
def test_an_image_file_is_opened_and_checked_before_measuring(tmp_path, capsys, no_measuring, case, message):
    from PIL import Image

    path = tmp_path / "image.png"
    if case == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("FIFOs are POSIX")
        os.mkfifo(path)
    elif case == "truncated jpeg":
        path = tmp_path / "image.jpg"
        Image.new("RGB", (640, 480), (10, 200, 30)).save(path, quality=90)
        path.write_bytes(path.read_bytes()[:2000])
    else:
        _png(path, 2_000_000 if "side" in case else 64, 1 if "side" in case else 64, pixels="side" in case)
    refused(
        capsys,
        ["run", "prefill", "--preset", "nvila-tiny", "--image-file", str(path), "--out", str(tmp_path / "o")],
        f"--image-file {path}: {message}",
    )
    assert not no_measuring


# --------------------------------------------------------------------------------------------------- suite files
@pytest.mark.parametrize(
    "content, message",
    [
        ('engine = ""\n', "engine: unknown engine ''"),
        ('engine = ["eager", ""]\n', "engine: unknown engine ''"),
        ('preprocess = [""]\n', "preprocess: unknown preprocess ''"),
        ('dtype = [""]\n', "dtype: unknown dtype ''"),
        ("video_frames = [-5]\n", "video_frames: video frames must be a positive integer, got -5"),
        ('images = ["2000000x1"]\n', "images: image size 2000000x1 is too large"),
        ('attn_implementation = ["magic"]\n', "attn_implementation: unknown attention implementation 'magic'"),
        ('device = ["tpu"]\n', "device: unknown device 'tpu'"),
    ],
)
def test_suite_file_values_get_the_command_lines_checks(tmp_path, capsys, content, message):
    path = tmp_path / "sweep.toml"
    path.write_text('preset = ["nvila-tiny"]\n' + content)
    refused(capsys, ["run", "prefill", "--config", str(path), "--out", str(tmp_path / "out")], f"{path}: {message}")


def test_a_deployment_suite_file_with_two_devices_is_refused(tmp_path, capsys, no_measuring):
    path = tmp_path / "ladder.toml"
    path.write_text('device = ["cpu", "cpu"]\n')
    refused(
        capsys,
        ["run", "deployment", "--preset", "nvila-tiny", "--config", str(path), "--out", str(tmp_path / "o")],
        "a run measures on one device, got 2",
    )
    assert not no_measuring


@NO_GPU
def test_a_suite_files_cuda_device_is_used_not_replaced_by_the_cpu_default(tmp_path, capsys, no_measuring):
    path = tmp_path / "sweep.toml"
    path.write_text('device = ["cuda"]\n')
    refused(
        capsys,
        ["run", "prefill", "--preset", "nvila-tiny", "--config", str(path), "--out", str(tmp_path / "o")],
        "cuda, but torch sees no CUDA device here",
    )
    assert not no_measuring


def test_a_suite_files_attention_is_used_and_a_conflicting_option_refused(tmp_path, capsys, no_measuring):
    path = tmp_path / "sweep.toml"
    path.write_text('attn_implementation = ["eager"]\nprompt_tokens = [8]\n')
    base = ["run", "prefill", "--preset", "nvila-tiny", "--config", str(path), "--out", str(tmp_path / "o"), *FAST]
    assert main(base) == 0
    assert [(j.point.attn_implementation, j.point.prompt_tokens) for j in no_measuring] == [("eager", 8)]
    assert read_environment(tmp_path / "o")["attn_implementation"] == "eager"
    refused(
        capsys, [*base, "--attn", "sdpa"], f"--attn sdpa on the command line and attn_implementation = eager in {path}"
    )
    refused(capsys, [*base, "--prompt-tokens", "16"], "--prompt-tokens 16 on the command line and prompt_tokens = 8")
    assert main([*base, "--attn", "eager"]) == 0  # the same value in both places is no conflict


def read_environment(out) -> dict:
    return json.loads((out / "results.jsonl").read_text().splitlines()[-1])["environment"]


# ------------------------------------------------------------------------------------------ checkpoints vs presets
def test_a_checkpoint_of_another_model_than_the_preset_is_refused(tmp_path, capsys, no_measuring):
    pytest.importorskip("lmms_eval")  # without it, --checkpoint is refused for that first
    from nvila_bench.model import build_model, get_preset
    from nvila_bench.model.tokenizer import build_tokenizer
    from nvila_bench.suites.synthetic_train import save_trained

    cfg = get_preset("vila-tiny")
    save_trained(build_model(cfg), build_tokenizer(cfg), tmp_path / "vila")
    refused(
        capsys,
        [
            "run",
            "deployment",
            "--preset",
            "nvila-tiny",
            "--checkpoint",
            str(tmp_path / "vila"),
            "--media",
            "image",
            "--out",
            str(tmp_path / "o"),
        ],
        f"--checkpoint: {tmp_path / 'vila'} is not a nvila-tiny model (family vila1.5, not nvila;",
    )
    assert not no_measuring


# ------------------------------------------------------------------------------------- records of the wrong types
def _records() -> list[dict]:
    prefill = prefill_record(extra={"image_file": "/data/photo.jpg"}).to_dict()
    decode = decode_record().to_dict()
    decode["config"]["engine"] = "eager"
    decode["metrics"] |= {
        "output_ids": Metric.measured([5, 6, 7], "token ids").to_dict(),
        "last_step_logits": Metric.measured([0.5, None, -1.25], "logits").to_dict(),
        "setup_seconds": Metric.measured(0.2, "s", "lower").to_dict(),
    }
    ladder = decode_record().to_dict() | {"suite": "deployment"}
    ladder["config"] |= {"engine": "eager", "preprocess": "cpu", "extra": {"rung": "w4a16-llm", "media": "image"}}
    ladder["metrics"] |= {
        "quantize_seconds": Metric.measured(1.5, "s", "lower").to_dict(),
        "top1_agreement": Metric.measured(0.9, "fraction", "higher").to_dict(),
    }
    return [prefill, decode, ladder]


HOSTILE = [  # (record, path, value): the cases, each a traceback in report / gate / dashboard before
    (2, ("config", "extra", "rung"), ["w4a16-llm"]),
    (1, ("config", "engine"), ["eager"]),
    (0, ("config", "preprocess"), ["cpu"]),
    (1, ("metrics", "tpot"), {"value": "fast", "unit": "s"}),
    (1, ("metrics", "setup_seconds", "value"), "0.2"),
    (2, ("metrics", "quantize_seconds", "value"), "long"),
    (2, ("metrics", "top1_agreement", "value"), "high"),
    (1, ("metrics", "last_step_logits", "value"), [0.5, "x"]),
    (1, ("metrics", "output_ids", "value"), [{"id": 5}]),
    (0, ("config", "extra", "image_file"), 7),
]


@pytest.mark.parametrize("index, path, bad", HOSTILE, ids=[".".join(p) for _, p, _ in HOSTILE])
def test_a_record_of_the_wrong_types_is_one_line_naming_file_and_line(tmp_path, capsys, index, path, bad):
    records = _records()
    target = records[index]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = bad
    results_dir = tmp_path / "run"
    results_dir.mkdir()
    (results_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    where = f"{results_dir / 'results.jsonl'}:{index + 1}: invalid result record"
    refused(capsys, ["report", str(results_dir), "--out", str(tmp_path / "r.html")], where)
    refused(capsys, ["gate", "--baseline", str(results_dir), "--candidate", str(results_dir)], where)
    refused(capsys, ["dashboard", str(tmp_path), "--out", str(tmp_path / "site")], where)


def test_the_same_records_well_typed_make_a_report(tmp_path, capsys):
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records()))
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r.html")]) == 0


def test_every_committed_results_file_reads_under_the_typed_schema():
    from pathlib import Path

    files = sorted((Path(__file__).parents[1] / "results").rglob("*.jsonl"))
    assert files and all(result_files.read_results(f) for f in files)


@FIFO
def test_a_checkpoint_whose_weights_are_a_fifo_is_refused_not_read(tmp_path):
    from nvila_bench.model import build_model, get_preset
    from nvila_bench.model.checkpoint import load_checkpoint
    from nvila_bench.model.checkpoint_config import CheckpointError
    from nvila_bench.model.tokenizer import build_tokenizer
    from nvila_bench.suites.synthetic_train import save_trained

    cfg = get_preset("nvila-tiny")
    save_trained(build_model(cfg), build_tokenizer(cfg), tmp_path / "ckpt")
    for weights in (tmp_path / "ckpt" / "llm").glob("*.safetensors"):
        weights.unlink()
    os.mkfifo(tmp_path / "ckpt" / "llm" / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"llm: not regular files: model.safetensors"):
        load_checkpoint(tmp_path / "ckpt")


@pytest.mark.parametrize("args, cache", [([], None), (["--cache", "static"], "static")])
def test_profile_passes_a_cache_only_where_given(monkeypatch, tmp_path, args, cache):
    """--cache beside no eager point is refused for every suite: a profile on CUDA (compiled) must not send
    a default cache it was never given."""
    run = importlib.import_module("nvila_bench.cli.run")  # the module: `nvila_bench.cli.run` is the command group

    seen = []
    monkeypatch.setattr(run, "run_suite", lambda suite, common, options: seen.append(common["cache"]) or 0)
    monkeypatch.setattr(result_files, "read_results", lambda path: [Record("profile", {}, {}, "r", "error", "stop")])
    argv = ["profile", "--preset", "nvila-tiny", "--stage", "decode", *args, "--out", str(tmp_path)]
    assert main(argv) == 1 and seen == [cache]
