"""`run deployment` refuses a setting it would otherwise ignore or fail on after quantizing: one line, exit 2,
nothing written. A preset without a scaled-only variant runs the rest of its ladder."""

from __future__ import annotations

import pytest
from nvila_bench.suites.deployment import expand

from nvila_bench.cli import main

REFUSED = [
    (["--batch-size", "2"], "deployment runs with batch_size 1 (the paper's deployment), got 2"),
    (["--dtype", "fp32"], "deployment runs with dtype bfloat16 (the paper's deployment), got float32"),
    (["--no-temporal-pool"], "deployment runs with temporal_pool True (the paper's deployment), got False"),
    (["--image", "448x448", "--image", "896x896"], "deployment's image request has one image, got 2"),
    (
        ["--video-frames", "8", "--video-frames", "16"],
        "deployment takes one value of video_frames (a ladder is one request), got 2",
    ),
    (["--new-tokens", "1"], "deployment needs --new-tokens >= 2 (the first token comes from the prefill), got 1"),
    (["--quality-prompts", "0"], "--quality-prompts must be >= 1, got 0"),
    (["--accuracy-limit", "0"], "--accuracy-limit must be >= 1, got 0"),
    (["--rung", "scaled-only bf16", "--preset", "nvila-lite-2b"], None),  # more than one preset: the preset message
    (
        ["--checkpoint", ".", "--media", "video"],
        "--checkpoint: accuracy per rung is measured with the image request's rows, not --media video",
    ),
    (
        ["--checkpoint", ".", "--rung", "baseline bf16"],
        "--checkpoint: accuracy per rung is of NVILA's rungs; --rung lists none",
    ),
]


@pytest.mark.parametrize("args, message", REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_a_setting_the_ladder_cannot_honour_is_one_line_before_measuring(tmp_path, capsys, args, message):
    code = main(["run", "deployment", "--preset", "nvila-tiny", *args, "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("nvila-bench: error: "), err
    if message:
        assert err == f"nvila-bench: error: {message}\n"
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_that_is_not_one_is_refused_before_any_rung(tmp_path, capsys):
    pytest.importorskip("lmms_eval")  # without it, that is the refusal (the next test)
    (tmp_path / "ckpt").mkdir()
    code = main(
        [
            "run",
            "deployment",
            "--preset",
            "nvila-tiny",
            "--checkpoint",
            str(tmp_path / "ckpt"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    _, err = capsys.readouterr()
    assert code == 2
    assert (
        err == f"nvila-bench: error: --checkpoint: {tmp_path / 'ckpt'} has no config.json: "
        "not an NVILA / VILA checkpoint directory\n"
    )
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_without_lmms_eval_is_refused_before_any_rung(tmp_path, monkeypatch):
    from nvila_bench.suites import deployment_ladder
    from nvila_bench.suites.registry import SuiteError

    monkeypatch.setattr(deployment_ladder.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SuiteError, match=r"needs lmms-eval \(pip install 'nvila-bench\[eval\]'\)"):
        expand({"preset": ["nvila-tiny"]}, {"checkpoint": str(tmp_path)})


def test_a_preset_without_a_scaled_only_variant_runs_the_rest_of_its_ladder():
    rungs = [(j.point.extra["rung"], j.point.preset) for j in expand({"preset": ["nvila-lite-2b"]}, {"media": "image"})]
    assert rungs[:2] == [("bf16", "nvila-lite-2b"), ("w4a16-llm", "nvila-lite-2b")]
    assert "scaled-only bf16" not in dict(rungs) and ("baseline bf16", "vila1.5-3b") in rungs
    with pytest.raises(Exception, match="--rung scaled-only bf16: nvila-lite-2b has no scaled-only variant"):
        expand({"preset": ["nvila-lite-2b"]}, {"media": "image", "rung": ("scaled-only bf16",)})


def test_tasks_need_a_checkpoint_and_known_names(tmp_path, capsys):
    pytest.importorskip("lmms_eval")
    from nvila_bench.model import build_model, get_preset
    from nvila_bench.model.tokenizer import build_tokenizer
    from nvila_bench.suites.synthetic_train import save_trained

    cfg = get_preset("nvila-tiny")
    save_trained(build_model(cfg), build_tokenizer(cfg), tmp_path / "ckpt")
    for args, message in (
        (["--tasks", "synthetic"], "--tasks scores each rung of a checkpoint: give --checkpoint DIR"),
        (
            ["--checkpoint", str(tmp_path / "ckpt"), "--tasks", "no_such_task"],
            "--tasks: unknown lmms-eval task(s): no_such_task",
        ),
    ):
        code = main(["run", "deployment", "--preset", "nvila-tiny", *args, "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith(f"nvila-bench: error: {message}") and err.count("\n") == 1, err
    jobs = expand(
        {"preset": ["nvila-tiny"]}, {"checkpoint": str(tmp_path / "ckpt"), "tasks": "synthetic,ai2d", "media": "image"}
    )
    scored = {j.point.extra["rung"]: j.point.extra.get("tasks") for j in jobs}
    assert scored["w4a16-llm"] == [
        "synthetic_colour",
        "synthetic_count",
        "synthetic_frame",
        "ai2d",
    ]  # the group, then ai2d
    assert scored["baseline bf16"] is None  # the VILA1.5 baseline is not the checkpoint
