"""The CLI's fixed interfaces and its error paths (one line on stderr, exit code 2)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PEERS, REAL, TINY, tiny_model
from nvila_bench.model import save_checkpoint

from nvila_bench.cli import main


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *args):
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_presets_json_lists_every_preset(capsys):
    names = [p["name"] for p in run_json(capsys, "presets")]
    assert names == REAL + TINY + ["nvila-8b-scaled-only", "nvila-tiny-scaled-only"] + PEERS


def test_info_reports_exact_params(capsys):
    data = run_json(capsys, "info", "--preset", "nvila-8b")
    assert data["preset"] == "nvila-8b"
    assert data["params"] == {
        "vision": 413_327_088,
        "projector": 62_425_088,
        "llm": 7_612_634_624,
        "total": 8_088_386_800,
    }


def test_info_from_checkpoint_directory(capsys, tmp_path):
    save_checkpoint(tiny_model("nvila-lite-tiny"), tmp_path / "ckpt")
    data = run_json(capsys, "info", "--checkpoint", str(tmp_path / "ckpt"))
    assert data["family"] == "nvila-lite"
    assert data["params"]["total"] == sum(p.numel() for p in tiny_model("nvila-lite-tiny").parameters())


def test_tokens_single_image_schema(capsys):
    data = run_json(capsys, "tokens", "--preset", "nvila-8b", "--image", "1920x1080")
    assert data["preset"] == "nvila-8b" and data["video"] is None and data["total_tokens"] == 3073
    (image,) = data["images"]
    assert {k: image[k] for k in ("width", "height", "grid", "vit_tiles", "tokens")} == {
        "width": 1920,
        "height": 1080,
        "grid": [4, 3],
        "vit_tiles": 17,
        "tokens": 3073,
    }


def test_tokens_multi_image_and_video(capsys):
    data = run_json(
        capsys,
        "tokens",
        "--preset",
        "nvila-lite-8b",
        "--image",
        "1920x1080",
        "--image",
        "640x480",
        "--video-frames",
        "8",
    )
    assert [im["tokens"] for im in data["images"]] == [122, 122]
    assert data["video"] == {"frames": 8, "pooled": False, "visual_tokens": 968, "tokens": 976}
    assert data["total_tokens"] == 122 * 2 + 976


def test_scaled_only_variant_keeps_every_patch(capsys):
    data = run_json(capsys, "tokens", "--preset", "nvila-8b-scaled-only", "--image", "1920x1080")
    assert data["images"][0]["visual_tokens"] == 12 * 1024 and data["total_tokens"] == 12289


def test_tokens_temporal_pool_switch(capsys):
    pooled = run_json(capsys, "tokens", "--preset", "nvila-8b-video", "--video-frames", "256")
    raw = run_json(capsys, "tokens", "--preset", "nvila-8b-video", "--video-frames", "256", "--no-temporal-pool")
    assert (pooled["video"]["pooled"], pooled["total_tokens"]) == (True, 8224)
    assert (raw["video"]["pooled"], raw["total_tokens"]) == (False, 65792)


def test_text_output(capsys):
    code, out, _ = run(capsys, "tokens", "--preset", "nvila-8b", "--image", "640x480")
    assert code == 0 and "3073 LLM positions" in out and "4x3" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["tokens", "--preset", "nvila-99b", "--image", "448x448"], "unknown preset 'nvila-99b'; known: nvila-8b"),
        (["tokens", "--preset", "nvila-8b", "--image", "0x10"], "'0x10' is not an image size"),
        (["tokens", "--preset", "nvila-8b", "--image", "abc"], "'abc' is not an image size"),
        (["tokens", "--preset", "nvila-8b", "--video-frames", "-3"], "--video-frames: must be a positive integer"),
        (["tokens", "--preset", "nvila-8b", "--video-frames", "x"], "'x' is not a valid integer"),
        (["tokens", "--preset", "nvila-8b-video", "--video-frames", "12"], "not a multiple of 8"),
        (["tokens", "--preset", "nvila-8b"], "give at least one --image"),
        (["info"], "give exactly one of --preset or --checkpoint"),
        (["info", "--checkpoint", "/nonexistent/ckpt"], "does not exist"),
        (["info", "--preset", "vila-9b"], "unknown preset"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_bad_input_one_line_exit_2(capsys, args, message):
    code, out, err = run(capsys, *args)
    assert code == 2
    assert out == ""
    assert err.startswith("nvila-bench: error: ") and err.count("\n") == 1
    assert message in err


def test_installed_entry_point_exit_code():
    script = Path(sys.executable).parent / "nvila-bench"  # the console script pip installed
    proc = subprocess.run([str(script), "tokens", "--preset", "nope", "--image", "1x1"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("nvila-bench: error: ") and "unknown preset 'nope'" in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stdout == ""


def test_cost_json_per_stage_with_time_floor(capsys):
    from nvila_bench.model import get_preset

    from nvila_bench.core.analysis import costmodel
    from nvila_bench.core.analysis.hardware import get_hardware

    data = run_json(capsys, "cost", "--preset", "nvila-8b", "--image", "1920x1080", "--hardware", "h100-sxm")
    costs = costmodel.request_costs(get_preset("nvila-8b"), [(1920, 1080)], prompt_tokens=64)
    h100 = get_hardware("h100-sxm")
    for stage in ("vision", "projector", "llm_prefill", "decode_step"):
        assert {k: data[stage][k] for k in ("flops", "executed_flops", "bytes")} == costs[stage].to_dict()
        floor = costmodel.time_floor(costs[stage], h100.peak_flops("bfloat16"), h100.bandwidth)
        assert data[stage]["time_floor_s"] == pytest.approx(floor)
    assert data["provenance"] == "analytic" and data["hardware"] == "h100-sxm"
    context = run_json(capsys, "cost", "--preset", "nvila-8b", "--image", "448x448", "--context", "8000")
    assert context["decode_step"] == costmodel.decode_step_cost(get_preset("nvila-8b"), 8000).to_dict()
    assert main(["cost", "--preset", "nvila-tiny", "--image", "1920x1080"]) == 0  # the text form
    tiny = costmodel.request_costs(get_preset("nvila-tiny"), [(1920, 1080)], prompt_tokens=64)["decode_step"]
    assert 1e6 < tiny.flops < 5e6 and f"{tiny.flops / 1e9:.2g} GFLOP" in capsys.readouterr().out  # not "0.00 GFLOP"


@pytest.mark.parametrize(
    "args, message",
    [
        (["cost", "--preset", "nvila-8b", "--image", "448x448", "--hardware", "tpu-v9"], "tpu-v9"),
        (["cost", "--preset", "nvila-8b", "--video-frames", "0"], "--video-frames: must be a positive integer"),
        (["cost", "--preset", "nvila-8b"], "give at least one --image"),
        (["cost", "--preset", "nvila-8b", "--image", "448x448", "--dtype", "int3"], "unknown dtype 'int3'"),
        (["cost", "--preset", "nvila-8b", "--image", "448x448", "--batch-size", "0"], "--batch-size"),
    ],
)
def test_cost_bad_input(capsys, args, message):
    code, out, err = run(capsys, *args)
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err


def test_ceilings_writes_json(capsys, tmp_path):
    data = run_json(
        capsys, "ceilings", "--size", "128", "--seconds", "0.05", "--dtype", "float32", "--out", str(tmp_path)
    )
    assert data["gemm_tflops"] > 0 and data["copy_gbs"] > 0 and data["device"] == "cpu"
    assert json.loads((tmp_path / "ceilings.json").read_text()) == data


def test_no_arguments_prints_help(capsys):
    code, out, err = run(capsys)
    assert code == 0 and "Usage: nvila-bench" in out and err == ""
