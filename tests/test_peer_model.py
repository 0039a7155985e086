"""Peer VLMs (model/peer_model.py) on CPU, tiny stand-ins with the real geometry: the media stages give
count_peer_tokens' blocks in the order preprocess, vision, projector; the pipeline's greedy ids and prefill logits
equal transformers' own generate / forward on the processor's outputs (so the placement and the M-RoPE positions
are transformers'); every engine agrees with eager; checkpoints round-trip and bad ones are refused."""

from __future__ import annotations

import contextlib
import functools
import json
import os

import pytest
import torch
import transformers
from nvila_bench.model.engines import CompiledEngine, make_engine
from nvila_bench.model.fast_llm import Fused
from nvila_bench.model.peer_checkpoint import load_peer_checkpoint, save_peer_checkpoint
from nvila_bench.model.peer_config import MODEL_TYPES, PEER_PRESETS
from nvila_bench.model.peer_model import HF_CLASSES, build_peer
from nvila_bench.model.peer_tokens import count_peer_tokens
from nvila_bench.model.pipeline import first_token, media_blocks, peer_request
from nvila_bench.model.stages import LLM_PREFILL, MEDIA_STAGES
from safetensors.torch import load_file, save_file
from transformers.utils import is_torchvision_available

PEERS = ["qwen2-vl-tiny", "qwen2.5-vl-tiny", "llava-onevision-tiny"]
CONFIGS = {p.name: p for p in PEER_PRESETS}
needs_torchvision = pytest.mark.skipif(
    not is_torchvision_available(), reason="transformers' video and tensor image processors need torchvision"
)


@functools.cache
def peer(name: str):
    return build_peer(CONFIGS[name])


def recording() -> tuple[list[str], object]:
    """A `section` that records the stage names in the order they end."""
    names = []

    @contextlib.contextmanager
    def section(name: str):
        yield
        names.append(name)

    return names, section


def transformers_inputs(model, request, modality: str) -> dict:
    """What transformers' processor hands its model: the processor's tensors (built here from transformers' classes
    and the published settings), the same prompt ids, and for Qwen the token types M-RoPE reads."""
    cfg, ids = model.config, request.input_ids
    names = HF_CLASSES[cfg.kind]
    if modality == "image":
        inputs = getattr(transformers, names[2])(**cfg.image_processor)(images=request.images, return_tensors="pt")
    else:
        inputs = getattr(transformers, names[4])(**cfg.video_processor)(videos=[request.video], return_tensors="pt")
    inputs = {k: v for k, v in inputs.items()} | {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if cfg.kind != "llava-onevision":
        inputs["mm_token_type_ids"] = (ids == cfg.image_token_id).int() + 2 * (ids == cfg.video_token_id).int()
    return inputs


def check_against_transformers(name: str, images=(), video_frames=None):
    model = peer(name)
    request = peer_request(model.config, images, video_frames, prompt_tokens=8)
    names, section = recording()
    with torch.inference_mode():
        blocks = media_blocks(model, request, section)
        embeds = model.embed(request.input_ids, blocks)
    assert names == list(MEDIA_STAGES)
    count = count_peer_tokens(model.config, images, video_frames)
    hidden = model.config.text_config["hidden_size"]
    expected = [im.visual_tokens for im in count.images] + ([count.video.visual_tokens] if count.video else [])
    assert [tuple(b.shape) for b in blocks] == [(n, hidden) for n in expected]
    assert embeds.shape == (1, count.total_tokens + 8, hidden)

    ids = make_engine("eager", model).generate(embeds, 6)
    inputs = transformers_inputs(model, request, "video" if video_frames else "image")
    with torch.inference_mode():
        reference = model.hf.generate(**inputs, do_sample=False, max_new_tokens=6, min_new_tokens=6, pad_token_id=0)
        logits = model.hf(**inputs).logits[:, -1]
    assert torch.equal(ids, reference[:, -6:]), f"{ids.tolist()} != {reference[:, -6:].tolist()}"
    torch.testing.assert_close(model.prefill(embeds).logits, logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", PEERS)
def test_an_image_gives_the_counted_blocks_and_transformers_own_ids(name):
    check_against_transformers(name, images=((448, 448),))


@needs_torchvision
@pytest.mark.parametrize("name", PEERS)
def test_a_video_gives_the_counted_blocks_and_transformers_own_ids(name):
    check_against_transformers(name, video_frames=4)


def test_the_pipeline_times_a_peers_stages_in_order_up_to_the_first_token():
    model = peer("qwen2-vl-tiny")
    names, section = recording()
    with torch.inference_mode():
        token, cache = first_token(model, peer_request(model.config, ((448, 224),), None, 8), section)
    assert names == [*MEDIA_STAGES, LLM_PREFILL]
    assert token.shape == (1, 1)
    assert cache.get_seq_length() == count_peer_tokens(model.config, ((448, 224),)).total_tokens + 8
    engine = make_engine("compiled", model)
    engine.setup_media()  # a peer's media stages are transformers' own, uncompiled: the record says so
    assert engine.note.startswith("vision tower and projector eager (a peer's") and engine.vision_attention() == "sdpa"


def last_step_logits(model, embeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The logits the last of `ids` was chosen from, from one cache-free forward (Qwen: the text continues the
    request's M-RoPE positions)."""
    extra = {}
    if model.mrope:
        positions, deltas = model._positions(embeds)
        steps = torch.arange(embeds.shape[1], embeds.shape[1] + ids.shape[1] - 1)
        text = (steps.view(1, -1) + deltas)[None].expand(3, -1, -1)
        extra["position_ids"] = torch.cat([positions, text], dim=2)
    with torch.inference_mode():
        full = torch.cat([embeds, model.hf.get_input_embeddings()(ids[:, :-1])], dim=1)
        return model.llm(inputs_embeds=full, **extra).logits[:, -1]


@pytest.mark.parametrize("name", PEERS)
def test_every_engine_gives_the_eager_ids_on_a_peers_context(name):
    model = peer(name)
    size = (448, 448) if model.mrope else (384, 384)  # LLaVA-OV: its smallest anyres context, 1,485 positions
    request = peer_request(model.config, (size,), None, 8, batch=2)
    with torch.inference_mode():
        embeds = model.embed(request.input_ids, media_blocks(model, request))
    reference = make_engine("eager", model).generate(embeds, 5)
    logits = last_step_logits(model, embeds, reference)
    engines = [make_engine(n, model) for n in ("eager", "hf-generate", "hf-static", "compiled")]
    engines.append(make_engine("eager", model, "static"))
    if model.mrope:  # the compiled engine's transformers step, uncompiled: its M-RoPE positions are given too
        engines.append(CompiledEngine(model, attention="transformers", compile_mode="none"))
    for engine in engines:
        engine.setup(embeds, 5)
        ids = engine.generate(embeds, 5)
        assert torch.equal(ids, reference), f"{engine.name}: {ids.tolist()} != {reference.tolist()}"
        kept = engine.last_logits.isfinite()  # hf: min_new_tokens masks EOS with -inf
        torch.testing.assert_close(engine.last_logits[kept], logits[kept], rtol=1e-4, atol=1e-4, msg=engine.name)
        if engine.name == "compiled" and model.mrope and engine.attention == "auto":
            assert "prefill has no M-RoPE" in engine.note and engine.generate_prefill == "eager, into the static cache"
        else:
            assert engine.note is None, engine.note


@pytest.mark.parametrize("name", PEERS)
def test_a_checkpoint_round_trips_in_transformers_layout(name, tmp_path):
    model = build_peer(CONFIGS[name], seed=1)
    attn = model.hf.model.language_model.layers[0].self_attn
    Fused.of(attn.q_proj, attn.k_proj, attn.v_proj)  # as the compiled engine leaves them: slices of one tensor
    save_peer_checkpoint(model, tmp_path)
    assert MODEL_TYPES[json.loads((tmp_path / "config.json").read_text())["model_type"]] == model.config.kind
    loaded = load_peer_checkpoint(tmp_path, torch.float32)
    assert loaded.config.llm == model.config.llm and loaded.config.image_processor == model.config.image_processor
    request = peer_request(model.config, ((224, 224),), None, 8)  # every weight: vision, projector, LLM
    logits = [m.forward_logits(m.embed(request.input_ids, media_blocks(m, request))) for m in (model, loaded)]
    assert torch.equal(*logits)


def test_checkpoints_that_are_not_a_peers_are_refused_in_one_line(tmp_path):
    model = peer("qwen2-vl-tiny")
    save_peer_checkpoint(model, tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    key = next(k for k in weights if k.endswith("mlp.up_proj.weight"))
    save_file(weights | {key: weights[key][:-1]}, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"weights do not match its config.json: mis-shaped 1 \(.*up_proj") as e:
        load_peer_checkpoint(tmp_path, torch.float32)
    assert "\n" not in str(e.value)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | {"model_type": "qwen2"}))
    with pytest.raises(ValueError, match="model_type 'qwen2' is not a peer VLM"):
        load_peer_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").rename(tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="only pickle weights"):
        load_peer_checkpoint(tmp_path)


@pytest.mark.skipif(is_torchvision_available(), reason="torchvision is installed here")
def test_gpu_preprocessing_and_video_without_torchvision_are_refused_before_measuring():
    cfg = CONFIGS["qwen2-vl-tiny"]
    with pytest.raises(ValueError, match=r"^--preprocess gpu on a peer needs torchvision"):
        peer_request(cfg, ((448, 448),), preprocess="gpu")
    with pytest.raises(ValueError, match=r"^a peer's video needs torchvision"):
        peer_request(CONFIGS["llava-onevision-tiny"], (), 4)


@needs_torchvision
@pytest.mark.parametrize("name", PEERS)
def test_gpu_preprocessing_gives_the_cpu_paths_blocks(name):
    """transformers' torchvision processors (here on the CPU) against its PIL ones: the same geometry, close pixels."""
    model = peer(name)
    with torch.inference_mode():
        cpu, gpu = (
            media_blocks(model, peer_request(model.config, ((640, 360),), None, 8, preprocess=p))
            for p in ("cpu", "gpu")
        )
    assert [b.shape for b in cpu] == [b.shape for b in gpu]
    assert (cpu[0] - gpu[0]).abs().mean() < 0.01 * cpu[0].abs().mean()  # 0.1-0.2 % measured; another image: 110-140 %


def test_a_peer_request_of_images_and_a_video_is_refused():
    with pytest.raises(ValueError, match="images or a video, not both"):
        peer_request(CONFIGS["qwen2-vl-tiny"], ((448, 448),), 4)


@pytest.mark.skipif(
    not os.environ.get("NVILA_BENCH_TORCHVISION"), reason="make test-oldest sets NVILA_BENCH_TORCHVISION"
)
def test_the_oldest_leg_runs_the_torchvision_paths():
    """make test-oldest installs the GPU image's torchvision: the peer video, tensor-preprocessing and lmms-eval
    adapter tests must run there, not skip."""
    assert is_torchvision_available()
    import qwen_vl_utils  # noqa: F401  (lmms-eval's Qwen adapters)
