"""The peer VLMs on the command line: presets, info (a preset or a transformers-saved checkpoint), tokens, summary's
tables, and the commands that serve NVILA only refusing a peer in one line (exit 2)."""

import json

import pytest
from conftest import PEERS
from nvila_bench.model.peer_checkpoint_config import peer_config_from_checkpoint
from nvila_bench.model.peer_config import PEER_PRESETS
from nvila_bench.model.peer_params import peer_param_counts
from nvila_bench.model.presets import get_preset
from nvila_bench.model.tokens import count_visual_tokens, temporal_pool_size

from nvila_bench.cli import main

# transformers' Qwen2VLForConditionalGeneration on the meta device (tests/test_peer_params.py holds them equal).
QWEN2_VL_7B = {"vision": 631_183_360, "projector": 44_575_744, "llm": 7_615_616_512, "total": 8_291_375_616}


def run_json(capsys, *args):
    code = main([*args, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def one_line_error(capsys, *args) -> str:
    assert main(list(args)) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("nvila-bench: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_presets_list_the_peers(capsys):
    rows = {r["name"]: r for r in run_json(capsys, "presets")}
    assert [n for n, r in rows.items() if r["family"] == "peer"] == PEERS
    qwen, llava = rows["qwen2-vl-7b"], rows["llava-onevision-7b"]
    assert (qwen["llm"], qwen["vision"], qwen["image_mode"]) == (
        "qwen2 3584x28",
        "ViT 1280x32, native resolution",
        "smart_resize",
    )
    assert qwen["tokens_rule"] == "1 per 28x28 px after smart resize to 3,136..12,845,056 px"
    assert (llava["vision"], llava["tokens_per_tile"], llava["image_mode"]) == (
        "SigLIP 1152x26, 384 px",
        729,
        "anyres_max_9",
    )
    assert rows["qwen2-vl-tiny"]["tiny"] and not qwen["tiny"]
    assert rows["nvila-8b"]["tokens_rule"] == "256 per 448-px tile"
    code = main(["presets"])
    assert code == 0 and "llava-onevision-tiny" in capsys.readouterr().out


def test_info_gives_transformers_exact_counts(capsys):
    data = run_json(capsys, "info", "--preset", "qwen2-vl-7b")
    assert data["params"] == QWEN2_VL_7B
    assert (data["family"], data["kind"], data["stands_in_for"]) == ("peer", "qwen2-vl", None)
    assert data["config"]["hf_config"]["vision_config"]["depth"] == 32
    assert main(["info", "--preset", "llava-onevision-tiny"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("llava-onevision-tiny (peer)") and "729 per 384-px view" in out


def test_tokens_of_an_image_and_a_video(capsys):
    data = run_json(capsys, "tokens", "--preset", "qwen2-vl-7b", "--image", "1920x1080")
    assert (data["visual_tokens"], data["total_tokens"], data["images"][0]["grid"]) == (2691, 2693, [138, 78])
    video = run_json(capsys, "tokens", "--preset", "qwen2-vl-7b", "--video-frames", "8")["video"]
    assert video == {
        "frames": 8,
        "pooled": False,
        "visual_tokens": 1196,
        "tokens": 1198,
        "frame_size": "640x360",
        "frame_resized": "644x364",
        "sampling": "every frame",
    }
    video = run_json(capsys, "tokens", "--preset", "llava-onevision-7b", "--video-frames", "8")["video"]
    assert (video["visual_tokens"], video["frame_resized"]) == (8 * 196 + 1, "384x384")
    assert main(["tokens", "--preset", "llava-onevision-7b", "--image", "1920x1080", "--video-frames", "4"]) == 0
    out = capsys.readouterr().out
    assert "grid: 384-px crops" in out and "640x360 px resized to 384x384, every frame, 785 visual tokens" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["tokens", "--preset", "qwen2-vl-7b", "--video-frames", "8", "--no-temporal-pool"],
            "qwen2-vl-7b has no temporal pooling (TSP)",
        ),
        (["tokens", "--preset", "qwen2-vl-7b", "--image", "6000x20"], "aspect ratio over 200"),
        (
            ["run", "prefill", "--preset", "qwen2-vl-tiny", "--no-temporal-pool", "--out", "{tmp}"],
            "qwen2-vl-tiny has no temporal pooling (TSP)",
        ),
        (
            ["run", "finetune-memory", "--preset", "nvila-tiny", "--preset", "qwen2.5-vl-tiny", "--out", "{tmp}"],
            (
                "finetune-memory (NVILA's fine-tuning recipes and their memory model) covers NVILA and VILA1.5 "
                "presets only; qwen2.5-vl-tiny is a peer VLM (family peer); `nvila-bench run train --preset"
            ),
        ),
        (
            ["run", "train", "--preset", "llava-onevision-tiny", "--fp8", "--out", "{tmp}"],
            "llava-onevision-tiny is a peer VLM",
        ),
        (
            ["run", "deployment", "--preset", "qwen2-vl-7b", "--rung", "w8a8-vit-int8", "--out", "{tmp}"],
            "--rung w8a8-vit-int8: a rung of NVILA's ladder only; qwen2-vl-7b is a peer VLM",
        ),
        (
            ["run", "accuracy", "--preset", "qwen2-vl-tiny", "--tasks", "synthetic", "--out", "{tmp}"],
            "a peer VLM is scored from a checkpoint",  # lmms-eval's adapters load a peer from its directory
        ),
        (["profile", "--preset", "qwen2.5-vl-tiny", "--stage", "prefill", "--out", "{tmp}"], "the profile suite"),
        (
            ["train-synthetic", "--preset", "qwen2-vl-tiny", "--out", "{tmp}"],
            "train-synthetic covers NVILA and VILA1.5",
        ),
    ],
)
def test_what_serves_nvila_only_refuses_a_peer_in_one_line(capsys, tmp_path, args, message):
    err = one_line_error(capsys, *[a.replace("{tmp}", str(tmp_path / "out")) for a in args])
    assert message in err
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_peers_have_no_tsp():
    assert temporal_pool_size(get_preset("qwen2.5-vl-7b"), 7, True) is None
    with pytest.raises(ValueError, match="no temporal pooling"):
        temporal_pool_size(get_preset("qwen2.5-vl-7b"), 8, False)


def test_reports_never_count_a_peer_as_nvila():
    from nvila_bench.reports.records import baseline_of, is_nvila, is_tiny

    from nvila_bench.core.measuring.results import Record

    assert not is_nvila("qwen2-vl-7b") and is_tiny("qwen2-vl-tiny") and baseline_of("qwen2-vl-7b") is None
    unregistered = Record("prefill", {"preset": "my-qwen-ckpt", "family": "peer"}, {}, "run")
    assert not is_nvila(unregistered) and is_nvila("my-nvila-ckpt")


def test_summary_tables_list_the_peers():
    from nvila_bench.cli.summary import params_table, tokens_table

    params = params_table(["qwen2-vl-7b", "llava-onevision-7b"]).set_index("preset")
    assert params.loc["qwen2-vl-7b", "total"] == "8,291.4M"
    tokens = tokens_table(["qwen2-vl-7b", "llava-onevision-7b"]).set_index("preset")
    assert (tokens.loc["qwen2-vl-7b", "1920x1080"], tokens.loc["llava-onevision-7b", "1920x1080"]) == (2693, 7269)
    assert tokens.loc["qwen2-vl-7b", "8 frames"] == 1198


# ---- info --checkpoint on transformers-saved peers ------------------------------------------------------
def save_peer(cfg, root):
    """config.json as transformers' `save_pretrained` writes it (LLM settings nested), and the image processor's."""
    import transformers

    config_class = {
        "qwen2-vl": "Qwen2VLConfig",
        "qwen2.5-vl": "Qwen2_5_VLConfig",
        "llava-onevision": "LlavaOnevisionConfig",
    }[cfg.kind]
    getattr(transformers, config_class)(**cfg.hf_config).save_pretrained(root)
    p = cfg.image_processor
    if cfg.kind == "llava-onevision":
        from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
            LlavaOnevisionImageProcessorPil as Processor,
        )

        Processor(size=p["size"], image_grid_pinpoints=p["image_grid_pinpoints"]).save_pretrained(root)
    else:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil as Processor

        size = {"shortest_edge": p["min_pixels"], "longest_edge": p["max_pixels"]}
        Processor(size=size, patch_size=14, temporal_patch_size=2, merge_size=2).save_pretrained(root)
    return root


@pytest.mark.parametrize("cfg", PEER_PRESETS, ids=lambda c: c.name)
def test_info_describes_a_saved_peer_checkpoint(capsys, tmp_path, cfg):
    root = save_peer(cfg, tmp_path / "ckpt")
    data = run_json(capsys, "info", "--checkpoint", str(root))
    assert (data["preset"], data["family"], data["kind"]) == ("ckpt", "peer", cfg.kind)
    assert data["params"] == peer_param_counts(cfg)
    assert data["config"]["image_processor"] == cfg.image_processor
    assert "preprocessor_config.json" in data["description"]
    preset = run_json(capsys, "tokens", "--preset", cfg.name, "--image", "1920x1080")
    assert count_visual_tokens(peer_config_from_checkpoint(root), [(1920, 1080)]).to_dict() == preset | {
        "preset": "ckpt"
    }


def test_a_published_layout_without_processor_files_takes_the_published_settings(capsys, tmp_path):
    cfg = get_preset("qwen2.5-vl-7b")
    (tmp_path / "config.json").write_text(json.dumps(cfg.hf_config))  # the hub's layout: LLM keys at the top
    data = run_json(capsys, "info", "--checkpoint", str(tmp_path))
    assert data["params"] == peer_param_counts(cfg) and data["config"]["image_processor"] == cfg.image_processor
    assert "processor files: none, else qwen2.5-vl-7b's" in data["description"]


def _set(path, value):
    def edit(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return data

    return edit


V, T = "vision_config", "text_config"
BAD = [  # (preset, file, the edit, the error's words)
    ("qwen2-vl-tiny", "config.json", _set([V, "depth"], "2"), "vision_config depth must be an integer"),
    ("qwen2-vl-tiny", "config.json", _set([V, "mlp_ratio"], None), "mlp_ratio must be a number"),
    ("qwen2-vl-tiny", "config.json", _set([T, "hidden_size"], -64), "LLM hidden_size must be an integer"),
    ("qwen2-vl-tiny", "config.json", _set([T, "num_hidden_layers"], 10**9), "num_layers must be an integer"),
    ("qwen2.5-vl-tiny", "config.json", _set([V, "out_hidden_size"], 128), "outputs width 128"),
    ("qwen2.5-vl-tiny", "config.json", _set([V, "patch_size"], 16), "patch and merge sizes differ"),
    ("qwen2.5-vl-tiny", "preprocessor_config.json", _set(["size", "shortest_edge"], 10**8), "exceeds max_pixels"),
    ("qwen2.5-vl-tiny", "preprocessor_config.json", _set(["merge_size"], 2.0), "merge_size must be an integer"),
    ("llava-onevision-tiny", "preprocessor_config.json", _set(["image_grid_pinpoints"], [[384, "768"]]), "pairs"),
    ("llava-onevision-tiny", "preprocessor_config.json", _set(["image_grid_pinpoints"], [[384, 500]]), "384-px crop"),
    ("llava-onevision-tiny", "config.json", _set(["vision_aspect_ratio"], "anyres_max_x"), "anyres_max_N"),
    ("llava-onevision-tiny", "config.json", _set([V], [1]), "vision_config must be a JSON object"),
    ("llava-onevision-tiny", "config.json", _set(["image_token_index"], -1), "image_token_index must be an integer"),
]


@pytest.mark.parametrize("name, file, edit, message", BAD)
def test_bad_peer_checkpoint_values_are_one_line_errors(capsys, tmp_path, name, file, edit, message):
    root = save_peer(get_preset(name), tmp_path)
    path = root / file
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    assert message in one_line_error(capsys, "info", "--checkpoint", str(root))


def test_unreadable_peer_configs_are_one_line_errors(capsys, tmp_path):
    save_peer(get_preset("qwen2-vl-tiny"), tmp_path)
    (tmp_path / "preprocessor_config.json").write_text("{not json")
    assert "cannot read" in one_line_error(capsys, "info", "--checkpoint", str(tmp_path))
    (tmp_path / "preprocessor_config.json").unlink()
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2_vl"}))
    assert "the LLM's settings lack 'hidden_size'" in one_line_error(capsys, "info", "--checkpoint", str(tmp_path))


def test_cost_of_a_peer_states_its_stages(capsys):
    """The analytic cost model covers the peers too (core/analysis/peer_costs.py): Qwen2-VL-7B at 1920x1080 runs 10,764
    patches through 32 blocks, more vision FLOPs than NVILA-8B's 17 tiles of 448 px."""
    assert main(["cost", "--preset", "qwen2-vl-7b", "--image", "1920x1080", "--json"]) == 0
    qwen = json.loads(capsys.readouterr().out)
    assert main(["cost", "--preset", "nvila-8b", "--image", "1920x1080", "--json"]) == 0
    nvila = json.loads(capsys.readouterr().out)
    assert qwen["vision"]["flops"] > 2 * nvila["vision"]["flops"]
    assert qwen["decode_step"]["bytes"] < nvila["decode_step"]["bytes"] * 1.01
