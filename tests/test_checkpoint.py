"""Checkpoints in the official layout: round trip to identical outputs, strict errors, no pickle."""

import json
from dataclasses import replace

import pytest
import torch
from conftest import TINY, tiny_model
from nvila_bench.model import CheckpointError, load_checkpoint, save_checkpoint, synthetic_image, synthetic_prompt
from nvila_bench.model.checkpoint_config import config_from_checkpoint
from nvila_bench.model.preprocess import preprocess_media
from safetensors.torch import load_file, save_file


def outputs(model):
    cfg = model.config
    media = preprocess_media(cfg, [synthetic_image(1000, 700)])
    with torch.inference_mode():
        blocks = model.project(model.encode_media(media), media)
        embeds = model.embed(synthetic_prompt(cfg, 1, text_tokens=8)[None], blocks)
        return model.prefill(embeds, all_logits=True).logits


@pytest.mark.parametrize("name", TINY)
def test_round_trip_gives_identical_config_and_outputs(name, tmp_path):
    model = tiny_model(name)
    save_checkpoint(model, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "llm", "vision_tower", "mm_projector"}
    cfg = config_from_checkpoint(tmp_path)
    # A checkpoint holds the architecture; the preset's roles (baseline, stand-in of ...) are the registry's.
    roles = {k: getattr(model.config, k) for k in ("baseline", "scaled_only", "video_model", "stands_in_for")}
    assert replace(cfg, name=model.config.name, description=model.config.description, **roles) == model.config
    loaded = load_checkpoint(tmp_path, dtype=torch.float32, attn_implementation="eager")
    torch.testing.assert_close(outputs(loaded), outputs(model), rtol=0, atol=0)


def test_official_key_names(tmp_path):
    save_checkpoint(tiny_model("nvila-tiny"), tmp_path)
    vit = load_file(tmp_path / "vision_tower" / "model.safetensors")
    assert "vision_model.embeddings.patch_embedding.weight" in vit
    assert "vision_model.encoder.layers.1.mlp.fc2.bias" in vit
    assert "model.layers.0.self_attn.q_proj.bias" in load_file(tmp_path / "llm" / "model.safetensors")
    assert set(load_file(tmp_path / "mm_projector" / "model.safetensors")) == {
        f"layers.{i}.{p}" for i in (1, 2, 4) for p in ("weight", "bias")
    }
    top = json.loads((tmp_path / "config.json").read_text())
    assert top["image_aspect_ratio"] == "dynamic_s2" and top["s2_scales"] == "448,896,1344"


def test_tied_llm_stores_no_lm_head(tmp_path):
    from nvila_bench.model import build_model, get_preset

    cfg = get_preset("nvila-tiny")
    cfg = replace(cfg, llm=replace(cfg.llm, tie_word_embeddings=True))
    model = build_model(cfg)
    save_checkpoint(model, tmp_path)
    assert "lm_head.weight" not in load_file(tmp_path / "llm" / "model.safetensors")
    loaded = load_checkpoint(tmp_path, dtype=torch.float32)
    assert loaded.llm.lm_head.weight.data_ptr() == loaded.llm.get_input_embeddings().weight.data_ptr()
    torch.testing.assert_close(outputs(loaded), outputs(model))


def test_sharded_llm_with_index(tmp_path):
    model = tiny_model("vila-tiny")
    save_checkpoint(model, tmp_path)
    llm = tmp_path / "llm"
    state = load_file(llm / "model.safetensors")
    (llm / "model.safetensors").unlink()
    keys = sorted(state)
    halves = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for file, names in halves.items():
        save_file({k: state[k] for k in names}, str(llm / file))
    index = {"weight_map": {k: f for f, names in halves.items() for k in names}}
    (llm / "model.safetensors.index.json").write_text(json.dumps(index))
    torch.testing.assert_close(
        outputs(load_checkpoint(tmp_path, dtype=torch.float32, attn_implementation="eager")),
        outputs(model),
        rtol=0,
        atol=0,
    )


def _edit(path, fn):
    state = load_file(path)
    fn(state)
    save_file(state, str(path))


def test_missing_unexpected_and_misshaped_tensors_are_named(tmp_path):
    save_checkpoint(tiny_model("nvila-tiny"), tmp_path)
    _edit(tmp_path / "llm" / "model.safetensors", lambda s: s.pop("model.norm.weight"))
    _edit(tmp_path / "mm_projector" / "model.safetensors", lambda s: s.update({"layers.9.weight": torch.zeros(2)}))
    _edit(
        tmp_path / "vision_tower" / "model.safetensors",
        lambda s: s.update({"vision_model.post_layernorm.weight": torch.zeros(3)}),
    )
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path)
    message = str(err.value)
    assert "llm: missing 1 (model.norm.weight)" in message
    assert "mm_projector: unexpected 1 (layers.9.weight)" in message
    assert "vision_tower: mis-shaped 1 (vision_model.post_layernorm.weight (3,) != (64,))" in message
    assert "\n" not in message


def test_pickle_weights_are_refused(tmp_path):
    save_checkpoint(tiny_model("nvila-tiny"), tmp_path)
    (tmp_path / "mm_projector" / "model.safetensors").unlink()
    (tmp_path / "mm_projector" / "pytorch_model.bin").write_bytes(b"not opened")
    with pytest.raises(CheckpointError, match="only pickle weights.*safetensors only"):
        load_checkpoint(tmp_path)


def test_not_a_checkpoint_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no config.json"):
        load_checkpoint(tmp_path)


def test_vila15_checkpoint_gets_column_order_and_no_separator(tmp_path):
    save_checkpoint(tiny_model("vila-tiny"), tmp_path)
    cfg = config_from_checkpoint(tmp_path)
    assert (cfg.family, cfg.projector.token_order, cfg.media.separator) == ("vila1.5", "column", False)


def test_video_checkpoint_keeps_tsp(tmp_path):
    save_checkpoint(tiny_model("nvila-video-tiny"), tmp_path)
    assert config_from_checkpoint(tmp_path).media.temporal_pool == (8, 1, 1)


def test_missing_config_key_is_a_checkpoint_error(tmp_path):
    save_checkpoint(tiny_model("nvila-tiny"), tmp_path)
    cfg = json.loads((tmp_path / "llm" / "config.json").read_text())
    del cfg["hidden_size"]
    (tmp_path / "llm" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="lacks the required key 'hidden_size'"):
        config_from_checkpoint(tmp_path)


def test_llama3_vocabulary_gets_its_newline_id(tmp_path):
    from nvila_bench.model import build_model, get_preset

    cfg = get_preset("vila-tiny")
    cfg = replace(cfg, llm=replace(cfg.llm, vocab_size=128256, newline_token_id=198))
    save_checkpoint(build_model(cfg), tmp_path)
    assert config_from_checkpoint(tmp_path).llm.newline_token_id == 198
