"""Hostile input to `run`, `ceilings` and suite files: refused up front (one line, exit 2, nothing written), and
what cannot run here recorded as `skipped` with its reason, never as an error."""

import json

import pytest
import torch
from conftest import read_dicts
from nvila_bench.model import training
from nvila_bench.model.training import Recipe
from nvila_bench.suites.registry import get_suite, jobs_of

from nvila_bench.cli import main
from nvila_bench.cli.run import summary_line
from nvila_bench.core.measuring.results import Record

FAST = ["--warmup", "0", "--repeats", "1", "--min-seconds", "0"]
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusal")


def refused(capsys, args: list[str], message: str, out_dir) -> str:
    code = main([*args, "--out", str(out_dir)])
    out, err = capsys.readouterr()
    assert code == 2 and out == "", err
    assert err.startswith("nvila-bench: error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert not out_dir.exists(), "refused input must not create the output folder"
    return err


# ---------------------------------------------------------------------------------------- cannot run here: skipped
def test_fp8_on_cpu_is_one_skipped_record_and_one_line(capsys, tmp_path):
    assert main(["run", "train", "--preset", "nvila-tiny", "--fp8", "--out", str(tmp_path), *FAST]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 record(s) (1 skipped: FP8 training needs a CUDA GPU" in err
    (record,) = read_dicts(tmp_path)
    assert record["status"] == "skipped" and record["error"].startswith("FP8 training needs a CUDA GPU")


def test_qlora_on_cpu_is_a_skipped_record(capsys, tmp_path):
    args = ["run", "finetune-memory", "--preset", "nvila-tiny", "--recipe", "lora-qlora", "--recipe", "ln-qlora"]
    assert main([*args, "--out", str(tmp_path), *FAST]) == 0
    assert "2 record(s) (2 skipped: QLoRA needs a CUDA GPU" in capsys.readouterr().err
    records = read_dicts(tmp_path)
    assert [(r["status"], r["config"]["extra"]["recipe"]) for r in records] == [
        ("skipped", "lora-qlora"),
        ("skipped", "ln-qlora"),
    ]
    assert all(r["error"] == "QLoRA needs a CUDA GPU (bitsandbytes 4-bit kernels)" for r in records)


def test_paper_table_is_one_point_per_recipe_each_with_text_to_predict():
    suite = get_suite("finetune-memory")
    options = {"recipe": (), "paper_table": True, "lr": 2e-5, "lora_rank": 64, "lora_alpha": 16.0, "lora_dropout": 0.05}
    jobs = jobs_of(suite, {"preset": ["nvila-tiny"], "device": ["cpu"]}, options)
    assert [j.point.extra["recipe"] for j in jobs] == [
        "lora-lora",
        "nvila",
        "full-lora",
        "lora-qlora",
        "ln-qlora",
        "full-full",
    ]
    assert all(j.point.prompt_tokens >= 1 for j in jobs)  # 448 px media exceed the 300 context: no text is a NaN loss


@pytest.mark.parametrize(
    "recipe, device, fp8, missing, reason",
    [
        ("lora-qlora", "cpu", False, None, "QLoRA needs a CUDA GPU"),
        ("nvila", "cpu", False, "peft", "LoRA recipes need peft"),
        ("full", "cpu", True, None, "FP8 training needs a CUDA GPU"),
        ("full-full", "cpu", False, "peft", None),
        ("full", "cpu", False, None, None),
    ],
)
def test_unavailable_recipes_say_why(monkeypatch, recipe, device, fp8, missing, reason):
    monkeypatch.setattr(training, "_installed", lambda package: package != missing)
    got = training.unavailable(Recipe.parse(recipe), device, fp8)
    assert got is None if reason is None else got.startswith(reason)


# --------------------------------------------------------------------------------------------- run: refused up front
@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["run", "prefill", "--preset", "nvila-video-tiny", "--video-frames", "6"],
            "--video-frames 6 is not a multiple of 8",
        ),
        (
            ["run", "train", "--preset", "nvila-video-tiny", "--video-frames", "12"],
            "--video-frames 12 is not a multiple of 8",
        ),
        (
            ["run", "finetune-memory", "--preset", "nvila-video-tiny", "--video-frames", "6", "--paper-table"],
            "not a multiple of 8",
        ),
        (["run", "scale-then-compress", "--video-frames", "6"], "--video-frames 6 is not a multiple of"),
        (["run", "train", "--preset", "nvila-tiny", "--lr", "-1"], "--lr must be a positive finite number, got -1.0"),
        (["run", "train", "--preset", "nvila-tiny", "--lr", "0"], "--lr must be a positive finite number, got 0.0"),
        (
            ["run", "finetune-memory", "--preset", "nvila-tiny", "--lr", "-2e-5"],
            "--lr must be a positive finite number",
        ),
        (
            ["run", "train", "--preset", "nvila-tiny", "--lr", "nan"],
            "Invalid value for '--lr': 'nan' is not a finite number",
        ),
        (["run", "finetune-memory", "--preset", "nvila-tiny", "--lr", "inf"], "'inf' is not a finite number"),
        (
            ["run", "finetune-memory", "--preset", "nvila-tiny", "--lora-dropout", "1"],
            "0 <= dropout < 1; got 64, 16.0, 1.0",
        ),
        (["run", "finetune-memory", "--preset", "nvila-tiny", "--lora-dropout", "-0.1"], "0 <= dropout < 1"),
        (["run", "finetune-memory", "--preset", "nvila-tiny", "--lora-alpha", "nan"], "'nan' is not a finite number"),
        (["run", "train", "--preset", "nvila-tiny", "--prompt-tokens", "0"], "training needs --prompt-tokens >= 1"),
        (
            ["run", "prefill", "--preset", "nvila-tiny", "--min-seconds", "nan"],
            "'--min-seconds': 'nan' seconds: must be finite",
        ),
        (["run", "prefill", "--preset", "nvila-tiny", "--min-seconds", "-1"], "'--min-seconds': '-1' seconds"),
        (
            ["run", "prefill", "--preset", "nvila-tiny", "--warmup-seconds", "inf"],
            "'--warmup-seconds': 'inf' seconds: must be finite",
        ),
        (
            ["run", "prefill", "--preset", "nvila-tiny", "--warmup", "-1"],
            "'--warmup': -1 is not in the range 0<=x<=1000000",
        ),
        (
            ["run", "accuracy", "--preset", "nvila-tiny", "--tasks", "synthetic", "--device", "foo"],
            "unknown device 'foo'; use cpu or cuda[:N]",
        ),
        (["run", "prefill", "--preset", "nvila-tiny", "--device", "cuda:x"], "unknown device 'cuda:x'"),
        (["profile", "--preset", "nvila-tiny", "--stage", "prefill", "--device", "gpu"], "unknown device 'gpu'"),
        # settings that would be dropped without a word
        (
            ["profile", "--preset", "nvila-tiny", "--preset", "vila-tiny", "--stage", "prefill"],
            "Invalid value for --preset: a profile is of one preset, got 2: nvila-tiny, vila-tiny",
        ),
        (
            ["run", "decode", "--preset", "nvila-tiny", "--engine", "hf-generate", "--cache", "static"],
            "--cache sets the eager engine's KV cache, and no point runs eager",
        ),
    ],
)
def test_run_refuses_up_front(capsys, tmp_path, args, message):
    refused(capsys, args, message, tmp_path / "out")


@NO_GPU
@pytest.mark.parametrize("suite", [["accuracy", "--tasks", "synthetic"], ["prefill"], ["train"]])
def test_cuda_without_a_gpu_is_refused(capsys, tmp_path, suite):
    refused(
        capsys,
        ["run", *suite, "--preset", "nvila-tiny", "--device", "cuda"],
        "cuda, but torch sees no CUDA device here",
        tmp_path / "out",
    )


# ----------------------------------------------------------------------------------------------------------- ceilings
@pytest.mark.parametrize(
    "args, message",
    [
        (["--device", "foo"], "unknown device 'foo'"),
        (["--size", "-5"], "--size -5: must be in 16..16384"),
        (["--size", "0"], "--size 0: must be in 16..16384"),
        (["--size", "1000000"], "--size 1000000: must be in 16..16384"),
        (["--seconds", "0"], "'--seconds': '0' seconds: must be finite, > 0"),
        (["--seconds", "nan"], "'--seconds': 'nan' seconds"),
        (["--seconds", "inf"], "'--seconds': 'inf' seconds"),
        (["--dtype", "int8"], "unsupported GEMM dtype 'int8'"),
    ],
)
def test_ceilings_refuses_up_front(capsys, tmp_path, args, message):
    refused(capsys, ["ceilings", *args], message, tmp_path / "out")


@NO_GPU
def test_ceilings_on_cuda_without_a_gpu(capsys, tmp_path):
    refused(capsys, ["ceilings", "--device", "cuda"], "torch sees no CUDA device", tmp_path / "out")


@pytest.mark.parametrize(
    "content, message",
    [
        ("[1, 2]", "not a ceilings file: expected a JSON object"),
        ("not json", "not a ceilings file: Expecting value"),
        (
            '{"gemm_tflops": "fast", "copy_gbs": 10, "device": "cpu", "dtype": "float32"}',
            "gemm_tflops must be a positive finite number, got 'fast'",
        ),
        (
            '{"gemm_tflops": 1, "copy_gbs": NaN, "device": "cpu", "dtype": "float32"}',
            "copy_gbs must be a positive finite number, got nan",
        ),
        ('{"gemm_tflops": 1, "copy_gbs": 10, "device": 3, "dtype": "float32"}', "device must be a string, got 3"),
        # another device's ceilings (e.g. a GPU run's committed ones) would be ignored without a word on this CPU run
        (
            '{"gemm_tflops": 683, "copy_gbs": 3016, "device": "cuda", "dtype": "bfloat16"}',
            "was measured on cuda, and this run measures on cpu: measure this device's with `nvila-bench ceilings "
            "--device cpu`",
        ),
    ],
)
def test_wrong_ceilings_file_is_refused_naming_it(capsys, tmp_path, content, message):
    path = tmp_path / "mine.json"
    path.write_text(content)
    err = refused(
        capsys, ["run", "prefill", "--preset", "nvila-tiny", "--ceilings", str(path)], message, tmp_path / "out"
    )
    assert str(path) in err


def test_missing_ceilings_file_is_refused(capsys, tmp_path):
    refused(
        capsys,
        ["run", "prefill", "--preset", "nvila-tiny", "--ceilings", str(tmp_path / "nope.json")],
        f"--ceilings: {tmp_path / 'nope.json'}: no such file",
        tmp_path / "out",
    )


@pytest.mark.parametrize("peak", [0, -3.5])
def test_zero_or_negative_ceilings_in_the_out_folder_are_refused(capsys, tmp_path, peak):
    out = tmp_path / "out"
    out.mkdir()
    (out / "ceilings.json").write_text(
        json.dumps({"gemm_tflops": peak, "copy_gbs": 10.0, "device": "cpu", "dtype": "float32"})
    )
    code = main(["run", "prefill", "--preset", "nvila-tiny", "--out", str(out), *FAST])
    err = capsys.readouterr().err
    assert (
        code == 2
        and err.count("\n") == 1
        and f"{out / 'ceilings.json'}: gemm_tflops must be a positive finite number" in err
    )
    assert not (out / "results.jsonl").exists()


# -------------------------------------------------------------------------------------------------------- suite files
@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad.yaml", "preset: [nvila-tiny\n  x: : :", "invalid YAML"),
        ("bad.toml", "preset = [", "invalid TOML"),
        ("list.yaml", "- nvila-tiny\n", "expected a mapping of settings"),
        ("scalar.yaml", "nvila-tiny\n", "expected a mapping of settings"),
        ("int.yaml", "preset: 5\n", "preset: each value must be a string, got an integer 5"),
        ("table.toml", '[preset]\nname = "nvila-tiny"\n', "preset: each value must be a string, got a table"),
        ("empty.toml", "preset = []\n", "preset: empty list"),
        (
            "f80.toml",
            'preset = ["nvila-tiny"]\nvideo_frames = [8.0]\n',
            "video_frames: each value must be an integer, got a number 8.0",
        ),
        (
            "f85.yaml",
            "preset: [nvila-tiny]\nvideo_frames: 8.5\n",
            "video_frames: each value must be an integer, got a number 8.5",
        ),
        (
            "bool.toml",
            'preset = ["nvila-tiny"]\nbatch_size = true\n',
            "batch_size: each value must be an integer, got a boolean",
        ),
        ("pool.toml", 'preset = ["nvila-tiny"]\ntemporal_pool = "no"\n', "temporal_pool: each value must be a boolean"),
        ("images.yaml", "preset: [nvila-tiny]\nimages: {a: 1}\n", "images: expected a list of WxH"),
        (
            "request.toml",
            'preset = ["nvila-tiny"]\nimages = [["448x448"], []]\n',
            "images: every request must be a non-empty list",
        ),
        ("size.toml", 'preset = ["nvila-tiny"]\nimages = [448]\n', "images: 448 is not an image size"),
        ("key.toml", 'preset = ["nvila-tiny"]\nframes = 8\n', "unknown key(s) frames"),
        ("suite.toml", "suite = 3\n", "suite: expected a suite name, got an integer"),
    ],
)
def test_bad_suite_file_is_one_line_naming_file_and_key(capsys, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    err = refused(capsys, ["run", "prefill", "--config", str(path)], message, tmp_path / "out")
    assert f"{path}: " in err


def test_suite_file_types_cover_every_sweep_field():
    """Each sweep field declares the type of its values, which a suite file's values are checked against."""
    from nvila_bench.core.measuring.point import SETTINGS, SWEEP_FIELDS
    from nvila_bench.core.measuring.settings import REQUEST

    assert set(SETTINGS) == set(SWEEP_FIELDS)
    assert all(s.setting.kind in (str, int, bool, REQUEST) for s in SETTINGS.values())


# ------------------------------------------------------------------------------------------------------ summary line
def test_scale_then_compress_counts_every_record(capsys, tmp_path):
    assert (
        main(["run", "scale-then-compress", "--out", str(tmp_path)]) == 0
    )  # CPU, real presets: the 6 analytic records
    assert "scale-then-compress: 6 record(s) (6 ok) -> " in capsys.readouterr().err


def test_summary_line_counts_each_status_and_says_why_points_were_skipped():
    def record(status, error=None):
        return Record("finetune-memory", {}, {}, "r", status, error)

    records = [
        record("nonfinite", "loss_first (nan)"),
        record("ok"),
        record("skipped", "QLoRA needs a CUDA GPU"),
        record("ok"),
        record("skipped", "QLoRA needs a CUDA GPU"),
        record("error", "boom"),
    ]
    line = summary_line("finetune-memory", records, "out/results.jsonl")
    assert line == (
        "finetune-memory: 6 record(s) (2 ok, 1 error, 2 skipped: QLoRA needs a CUDA GPU, 1 nonfinite) "
        "-> out/results.jsonl"
    )
