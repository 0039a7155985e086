"""Hostile inputs: broken checkpoints, absurd image sizes, colliding run names; and the report, paper data,
README and Makefile details a review found wrong. Each error is one line, exit 2, no traceback."""

import json
import re
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_model
from fake_records import declared, prefill_record
from nvila_bench.model import CheckpointError, get_preset, load_checkpoint, save_checkpoint
from nvila_bench.model.tiling import closest_grid
from nvila_bench.reports.charts import stacked_stages_figure
from nvila_bench.reports.dashboard import build_site, page_names
from safetensors.torch import load_file, save_file

from nvila_bench.cli import main
from nvila_bench.core.analysis import paper
from nvila_bench.core.measuring.result_files import ResultWriter

ROOT = Path(__file__).parent.parent
HUGE = 99999999999999999999999


@pytest.fixture
def ckpt(tmp_path):
    save_checkpoint(tiny_model("nvila-tiny"), tmp_path / "ckpt")
    return tmp_path / "ckpt"


def one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("nvila-bench: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def edit_json(path, fn):
    data = json.loads(path.read_text())
    path.write_text(json.dumps(fn(data)))


# ---- 1. checkpoints ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_broken_safetensors_is_a_checkpoint_error(ckpt, damage):
    file = ckpt / "mm_projector" / "model.safetensors"
    data = file.read_bytes()
    file.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "garbage": b"\x07" * 300}[damage])
    with pytest.raises(CheckpointError, match=re.escape(str(file)) + ": not a readable safetensors file"):
        load_checkpoint(ckpt)


def shard(ckpt, weight_map):
    """Split the LLM's weights into one shard named in an index with this weight map."""
    llm = ckpt / "llm"
    (llm / "model.safetensors").rename(llm / "model-00001-of-00001.safetensors")
    (llm / "model.safetensors.index.json").write_text(
        weight_map if isinstance(weight_map, str) else json.dumps(weight_map)
    )
    return llm / "model.safetensors.index.json"


@pytest.mark.parametrize(
    "weight_map, message",
    [
        ("{not json", "cannot read .*index.json: JSONDecodeError"),
        ([1, 2], "index.json: expected a JSON object, got list"),
        ({"weight_map": ["model-00001-of-00001.safetensors"]}, "weight_map must map tensor names to shard file names"),
        ({"weight_map": {"model.norm.weight": 7}}, "weight_map must map tensor names to shard file names"),
    ],
)
def test_garbage_shard_index_is_a_checkpoint_error(ckpt, weight_map, message):
    shard(ckpt, weight_map)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("where", ["parent", "absolute"])
def test_shards_outside_the_checkpoint_are_refused(ckpt, tmp_path, where):
    outside = tmp_path / "outside.safetensors"
    save_file(load_file(ckpt / "llm" / "model.safetensors"), str(outside))
    name = {"parent": "../../outside.safetensors", "absolute": str(outside)}[where]
    index = shard(ckpt, {"weight_map": {"model.norm.weight": name}})
    with pytest.raises(CheckpointError, match=f"{re.escape(str(index))}: weight file .* lies outside"):
        load_checkpoint(ckpt)


def test_weights_linked_from_elsewhere_load_like_the_hugging_face_cache(ckpt, tmp_path):
    """A snapshot folder of the HF cache holds links into ../../blobs: the folder's own links are followed."""
    weights = ckpt / "mm_projector" / "model.safetensors"
    before = load_checkpoint(ckpt).state_dict()
    weights.rename(tmp_path / "blob")
    weights.symlink_to(tmp_path / "blob")
    after = load_checkpoint(ckpt).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("file", ["config.json", "llm/config.json"])
@pytest.mark.parametrize("content", ["[1, 2]", "null", "\xff\xfe garbage", "[" * 100000])
def test_config_that_is_not_an_object_exits_2(ckpt, capsys, file, content):
    (ckpt / file).write_text(content, errors="surrogateescape")
    err = one_line_error(capsys, ["info", "--checkpoint", str(ckpt)])
    assert str(ckpt / file) in err


@pytest.mark.parametrize(
    "key, value",
    [
        ("hidden_size", "64"),
        ("hidden_size", 64.0),
        ("hidden_size", True),
        ("num_hidden_layers", -1),
        ("num_hidden_layers", 0),
        ("vocab_size", None),
        ("num_attention_heads", [4]),
        ("rope_parameters", {"rope_theta": "big"}),
    ],
)
def test_wrong_typed_or_non_positive_dimension_exits_2(ckpt, capsys, key, value):
    edit_json(ckpt / "llm" / "config.json", lambda c: c | {key: value})
    err = one_line_error(capsys, ["info", "--checkpoint", str(ckpt)])
    assert str(ckpt / "llm" / "config.json") in err and "must be" in err


@pytest.mark.parametrize(
    "folder, key, value",
    [
        ("llm", "num_hidden_layers", 10**9),
        ("llm", "hidden_size", 2**20),
        ("llm", "vocab_size", 10**12),
        ("vision_tower", "num_hidden_layers", 10**9),
        ("vision_tower", "image_size", "448"),
        (".", "max_tiles", 10**6),
        (".", "s2_scales", "448,896,448000"),
        (".", "s2_scales", "a,b"),
        (".", "video_encoder", "{not json"),
    ],
)
def test_absurd_dimensions_are_refused_at_once(ckpt, capsys, folder, key, value):
    edit_json(ckpt / folder / "config.json", lambda c: c | {key: value})
    start = time.perf_counter()
    err = one_line_error(capsys, ["info", "--checkpoint", str(ckpt)])
    assert time.perf_counter() - start < 5 and str((ckpt / folder / "config.json")).replace("/./", "/") in err
    with pytest.raises(CheckpointError):
        load_checkpoint(ckpt)


def test_info_counts_without_building(ckpt, capsys, monkeypatch):
    import nvila_bench.model.nvila as nvila

    monkeypatch.setattr(nvila.NVILAModel, "__init__", lambda *a, **k: pytest.fail("info built a model"))
    assert main(["info", "--checkpoint", str(ckpt), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == tiny_model("nvila-tiny").param_counts()


def test_load_checks_shapes_before_allocating(ckpt, monkeypatch):
    import nvila_bench.model.checkpoint as checkpoint

    edit_json(ckpt / "llm" / "config.json", lambda c: c | {"num_hidden_layers": 1024})  # allowed, but not stored
    monkeypatch.setattr(checkpoint, "no_init_weights", lambda: pytest.fail("allocated before checking the headers"))
    with pytest.raises(CheckpointError, match=r"llm: missing 12264 \(model.layers.10."):
        load_checkpoint(ckpt, dtype=torch.float32)


# ---- 2. token grids: exact, huge sizes refused ----------------------------------------------------------------
def test_grid_search_is_exact_for_huge_aspects():
    for lo, hi in ((9, 12), (1, 12)):
        assert closest_grid(HUGE, 2, lo, hi, 448) == (12, 1)
        assert closest_grid(2, HUGE, lo, hi, 448) == (1, 12)


@pytest.mark.parametrize("preset", ["nvila-8b", "nvila-lite-8b"])
def test_wide_and_tall_images_give_wide_and_tall_grids(capsys, preset):
    for size, grid in (("1000000x2", [12, 1]), ("2x1000000", [1, 12])):
        assert main(["tokens", "--preset", preset, "--image", size, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["images"][0]["grid"] == grid


def test_image_sides_over_a_million_pixels_are_refused(capsys):
    err = one_line_error(capsys, ["tokens", "--preset", "nvila-8b", "--image", f"{HUGE}x2"])
    assert "too large: each side must be at most 1,000,000 px" in err


# ---- 3. dashboard page names --------------------------------------------------------------------------------
def test_page_names_are_unique_and_stable():
    assert page_names(["2026-11-01/results", "a-b"]) == ["2026-11-01_results", "a-b"]  # no collision: unchanged
    names = page_names(["a b", "a_b", "a+b", "A_B", "x/y", "x_y"])
    assert len({n.casefold() for n in names}) == 6 and all(re.fullmatch(r"[A-Za-z0-9._-]+", n) for n in names)
    assert len(page_names(["r" * 300])[0]) < 100


def test_dashboard_files_differing_in_punctuation_get_two_pages(tmp_path):
    history = tmp_path / "history"
    for filename, preset in (("a b.jsonl", "nvila-tiny"), ("a_b.jsonl", "vila-tiny")):
        ResultWriter(history, filename).write(prefill_record(preset))
    build_site(history, tmp_path / "site", 0.05, declared())
    pages = sorted((tmp_path / "site" / "runs").glob("*.html"))
    assert len(pages) == 2
    a, b = (p.read_text() for p in pages)
    assert a != b and {("a b.jsonl" in a), ("a b.jsonl" in b)} == {True, False}


# ---- 4. the stage chart's legend ---------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 3, 8])
def test_stage_chart_legend_covers_no_axis_text(n):
    stages = ("preprocess", "vision", "projector", "llm_prefill", "decode")
    fig = stacked_stages_figure([{"label": f"p{i}", **{s: 0.01 for s in stages}} for i in range(n)], stages)
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    legend = fig.legends[0].get_window_extent(renderer)
    ax = fig.axes[0]
    for text in [ax.xaxis.label] + [t for t in ax.get_xticklabels() if t.get_text()]:
        assert not legend.overlaps(text.get_window_extent(renderer)), text.get_text()


# ---- 5. paper.toml keys -------------------------------------------------------------------------------------
def test_accuracy_table_keys_are_flat_preset_names():
    assert paper.accuracy_table("image")["ai2d"]["vila1.5-8b"] == 76.6
    for kind in ("image", "video"):
        for entry in paper.accuracy_table(kind).values():
            for preset, score in paper.scores(entry).items():
                assert isinstance(score, float) and get_preset(preset).name == preset


def test_a_nested_accuracy_key_is_refused(monkeypatch):
    monkeypatch.setattr(
        paper, "paper_data", lambda: {"accuracy": {"image": {"t": {"name": "T", "vila1": {"5-8b": 1.0}}}}}
    )
    with pytest.raises(ValueError, match="quote dotted preset names"):
        paper.accuracy_table("image")


# ---- 6. docs/accuracy.md: lmms-eval's CLI on the synthetic tasks ------------------------------------------------
def test_the_docs_lmms_eval_command_matches_the_task_files(tmp_path):
    from nvila_bench.core.measuring.synthetic_tasks import TASKS, generate, write_lmms_tasks

    page = (ROOT / "docs" / "accuracy.md").read_text()
    assert "nvila-bench synthetic-data --out DIR" in page
    line = next(x for x in page.splitlines() if x.startswith("lmms-eval") and "--include_path" in x)
    tasks = re.search(r"--tasks (\S+)", line)[1].split(",")
    assert set(tasks) <= set(TASKS) and "--include_path DIR/lmms_tasks" in line and "--model nvila_bench" in line
    include = write_lmms_tasks(generate(tmp_path, 0, {"test": 2}))
    assert include == (tmp_path / "lmms_tasks").resolve() and all((include / f"{t}.yaml").is_file() for t in tasks)


# ---- 7. Makefile: no dependency-resolver noise, pip check still the gate ---------------------------------------
def test_makefile_installs_do_not_print_lmms_eval_conflicts():
    recipe = (ROOT / "Makefile").read_text().split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    installs = [
        x for x in recipe.splitlines() if "pip install" in x and "--upgrade pip" not in x and "-q $(TORCH)" not in x
    ]
    for line in installs:  # --no-deps installs run no conflict check; the others must not print one
        assert "--no-deps" in line or "--no-warn-conflicts" in line, line
    assert "pip check" in recipe and "! grep -v -e '^lmms-eval '" in recipe


def test_accuracy_on_a_broken_checkpoint_is_refused_up_front(ckpt, capsys, tmp_path):
    (ckpt / "config.json").write_text("[1, 2]")
    err = one_line_error(
        capsys, ["run", "accuracy", "--checkpoint", str(ckpt), "--tasks", "synthetic", "--out", str(tmp_path / "o")]
    )
    assert str(ckpt / "config.json") in err
    assert not (tmp_path / "o" / "results.jsonl").exists()
