"""Accuracy suite through lmms-eval: the adapter is discovered as a plugin, the synthetic tasks run offline,
a trained tiny model scores far above chance where the untrained one does not, failures become errors."""

import json
import os
from pathlib import Path

import pytest

lmms_eval = pytest.importorskip("lmms_eval", reason="lmms-eval not installed (make test installs it)")

from nvila_bench.suites import lmms_tasks  # noqa: E402
from nvila_bench.suites.synthetic_train import save_trained, train_synthetic  # noqa: E402

from nvila_bench.cli import main  # noqa: E402
from nvila_bench.core.measuring.synthetic_tasks import CHANCE, generate  # noqa: E402


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synthetic"), splits={"train": 240, "validation": 8, "test": 40})


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / "results.jsonl").read_text().splitlines()]


def test_adapter_is_discovered_through_the_entry_point():
    from lmms_eval.models import get_model
    from nvila_bench.suites.lmms_adapter import NVILABench

    assert get_model("nvila_bench") is NVILABench


def test_generation_is_reproducible(tmp_path, data_dir):
    again = generate(tmp_path / "again", splits={"train": 240, "validation": 8, "test": 40})
    for task in ("synthetic_colour", "synthetic_frame"):
        assert (again / task / "test.jsonl").read_text() == (data_dir / task / "test.jsonl").read_text()
        first = json.loads((data_dir / task / "test.jsonl").read_text().splitlines()[0])
        assert (again / first["media"][0]).read_bytes() == (data_dir / first["media"][0]).read_bytes()


def test_trained_model_scores_far_above_chance_untrained_near_it(tmp_path, data_dir):
    """The pipeline measures something real: vila-tiny trained 60 steps on the colour task's train split,
    saved in the official layout and loaded back by lmms-eval's adapter, against the same preset untrained,
    on the held-out test split (40 samples, chance 25%)."""
    model, tokenizer, losses = train_synthetic("vila-tiny", data_dir, ["synthetic_colour"], steps=60, batch=8, seed=0)
    assert losses[-1] < losses[0] / 3
    checkpoint = save_trained(model, tokenizer, tmp_path / "ckpt")
    common = ["--tasks", "synthetic_colour,synthetic_colour_gen", "--data-dir", str(data_dir), "--quiet"]
    assert main(["run", "accuracy", "--checkpoint", str(checkpoint), *common, "--out", str(tmp_path / "trained")]) in (
        0,
        None,
    )
    assert main(["run", "accuracy", "--preset", "vila-tiny", *common, "--out", str(tmp_path / "untrained")]) in (
        0,
        None,
    )
    trained = {r["config"]["task"]: r for r in records(tmp_path / "trained")}
    untrained = {r["config"]["task"]: r for r in records(tmp_path / "untrained")}
    mc, gen = trained["synthetic_colour"]["metrics"], trained["synthetic_colour_gen"]["metrics"]
    assert mc["chance"]["value"] == CHANCE["synthetic_colour"] == gen["chance"]["value"] == 0.25
    assert mc["n"]["value"] == 40 and mc["metric"]["value"] == "acc"
    assert mc["score"]["value"] >= 0.8  # multiple choice through loglikelihood
    assert gen["score"]["value"] >= 0.8  # free-form answer through generate_until
    assert untrained["synthetic_colour"]["metrics"]["score"]["value"] <= 0.5
    assert untrained["synthetic_colour_gen"]["metrics"]["score"]["value"] <= 0.25
    assert trained["synthetic_colour"]["config"]["extra"]["weights"] == "checkpoint"
    assert "stderr" in mc and 0 <= mc["stderr"]["value"] < 0.1


def test_a_failing_task_is_an_error_not_a_score(tmp_path, data_dir, capsys):
    """A missing image makes lmms-eval raise inside the colour task: that task is an error record, the count
    task still scores, and the command exits 1."""
    broken = generate(tmp_path / "broken", splits={"train": 8, "validation": 2, "test": 4})
    row = json.loads((broken / "synthetic_colour" / "test.jsonl").read_text().splitlines()[0])
    (broken / row["media"][0]).unlink()
    code = main(
        [
            "run",
            "accuracy",
            "--preset",
            "vila-tiny",
            "--tasks",
            "synthetic_colour,synthetic_count",
            "--data-dir",
            str(broken),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 1
    by_task = {r["config"]["task"]: r for r in records(tmp_path / "out")}
    assert by_task["synthetic_colour"]["status"] == "error" and "score" not in by_task["synthetic_colour"]["metrics"]
    assert (
        "FileNotFoundError" in by_task["synthetic_colour"]["error"]
        or "No such file" in by_task["synthetic_colour"]["error"]
    )
    assert by_task["synthetic_count"]["status"] == "ok"
    assert "synthetic_colour: error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "result",
    [
        None,
        {"results": {}},
        {"results": {"t": {"alias": "t"}}},
        {"results": {"t": {"acc,none": "N/A"}}},
        {"results": {"t": {"acc,none": float("nan")}}},
    ],
)
def test_no_numeric_score_is_a_failure(result):
    with pytest.raises(ValueError, match="no results|no metric|non-numeric"):
        lmms_tasks.score(result, "t")


@pytest.mark.parametrize(
    "args,message",
    [
        (["--preset", "vila-tiny", "--tasks", "no_such_task_xyz"], "unknown lmms-eval task(s): no_such_task_xyz"),
        (["--preset", "vila-tiny", "--tasks", "paper-image"], "need official weights"),
        (["--checkpoint", "/nonexistent/ckpt", "--tasks", "synthetic"], "no such directory"),
        (["--preset", "vila-tiny"], "accuracy needs --tasks"),
        (["--preset", "vila-tiny", "--preset", "nvila-tiny", "--tasks", "synthetic"], "one --preset"),
    ],
)
def test_bad_accuracy_input_exits_2(args, message, tmp_path, capsys, data_dir):
    assert main(["run", "accuracy", *args, "--data-dir", str(data_dir), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[-1].startswith("nvila-bench: error:") and message in err[-1], (
        err
    )  # lmms-eval's chatter kept off


def test_lmms_eval_cli_finds_the_model(tmp_path, data_dir):
    """`lmms-eval --model nvila_bench` (the harness's own CLI) runs our adapter on a synthetic task."""
    import subprocess
    import sys

    from nvila_bench.core.measuring.synthetic_tasks import write_lmms_tasks

    include = write_lmms_tasks(data_dir)
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lmms_eval",
            "--model",
            "nvila_bench",
            "--model_args",
            "preset=vila-tiny",
            "--tasks",
            "synthetic_count",
            "--include_path",
            str(include),
            "--limit",
            "4",
            "--output_path",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "synthetic_count" in proc.stdout and "acc" in proc.stdout
    assert list((tmp_path / "o").rglob("*results.json"))


@pytest.mark.parametrize("preset", ["nvila-tiny", "vila-tiny"])
def test_a_saved_checkpoint_reloads_the_word_level_tokenizer(tmp_path, preset):
    """AutoTokenizer picks the LLM's class from config.json (Qwen2Tokenizer for NVILA) and rebuilt a BPE
    without the synthetic tasks' words: every colour choice tokenized to nothing ("empty continuation")."""
    from nvila_bench.model import build_model, get_preset
    from nvila_bench.model.tokenizer import WORDS, build_tokenizer, load_tokenizer
    from nvila_bench.suites.synthetic_train import save_trained

    cfg = get_preset(preset)
    built = build_tokenizer(cfg)
    save_trained(build_model(cfg), built, tmp_path / "ckpt")
    loaded = load_tokenizer(tmp_path / "ckpt", cfg)
    text = " ".join(WORDS) + "\n"
    assert loaded(text, add_special_tokens=False)["input_ids"] == built(text, add_special_tokens=False)["input_ids"]
    assert loaded(" yellow", add_special_tokens=False)["input_ids"] != []
