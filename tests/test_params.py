"""Parameter counts: closed form == the modules transformers builds == the reference's figures
(docs/reference.md#model-family, docs/reference.md#vision-encoder)."""

import dataclasses

import pytest
from nvila_bench.model import build_model, get_preset, preset_names
from nvila_bench.model.params import param_counts, vision_params


# Peer VLMs: tests/test_peer_params.py.
@pytest.mark.parametrize("name", [n for n in preset_names() if get_preset(n).family != "peer"])
def test_closed_form_equals_built_modules(name):
    cfg = get_preset(name)
    assert build_model(cfg, device="meta", seed=None).param_counts() == param_counts(cfg)


def test_nvila_8b_matches_reference_figures():
    assert param_counts(get_preset("nvila-8b")) == {
        "vision": 413_327_088,
        "projector": 62_425_088,
        "llm": 7_612_634_624,
        "total": 8_088_386_800,
    }


def test_vision_tower_at_384_and_with_pooling_head():
    vila = get_preset("vila1.5-3b").vision
    assert vision_params(vila) == 412_987_248
    with_head = dataclasses.replace(vila, use_head=True)
    assert vision_params(with_head) - vision_params(vila) == 15_238_352
    assert build_model(dataclasses.replace(get_preset("vila1.5-3b"), vision=with_head), device="meta").param_counts()[
        "vision"
    ] == vision_params(with_head)


def test_tied_embeddings_counted_once():
    lite = get_preset("nvila-lite-2b")
    untied = dataclasses.replace(lite, llm=dataclasses.replace(lite.llm, tie_word_embeddings=False))
    diff = param_counts(untied)["llm"] - param_counts(lite)["llm"]
    assert diff == lite.llm.vocab_size * lite.llm.hidden_size
    assert build_model(untied, device="meta").param_counts()["llm"] == param_counts(untied)["llm"]


def test_meta_build_allocates_nothing():
    model = build_model(get_preset("vila1.5-8b"), device="meta")
    assert all(p.is_meta for p in model.parameters())
