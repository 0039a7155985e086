"""Engines (model/engines/) and tensor preprocessing (model/preprocess_tensor.py) on CPU: every engine gives
the eager reference's ids, the compiled path included (torch.compile without CUDA graphs); the GPU
preprocessing path gives the PIL path's token geometry and pixels within the stated tolerance."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from nvila_bench.model import build_model, count_visual_tokens, get_preset
from nvila_bench.model.engines import ENGINES, CompiledEngine, make_engine
from nvila_bench.model.pipeline import embed, synthetic_request
from nvila_bench.model.preprocess import preprocess_media, synthetic_image, synthetic_video
from nvila_bench.model.preprocess_tensor import PIXEL_TOLERANCE, preprocess_media_tensor, to_uint8
from PIL import Image

from nvila_bench.cli import main
from nvila_bench.core.measuring.point import BenchPoint


@pytest.fixture(scope="module")
def contexts():
    """(model, inputs_embeds) for a Qwen2 (nvila-tiny) and a Llama (vila-tiny) stand-in, batch 2."""
    out = {}
    for preset in ("nvila-tiny", "vila-tiny"):
        cfg = get_preset(preset)
        model = build_model(cfg)
        with torch.inference_mode():
            out[preset] = (model, embed(model, synthetic_request(cfg, ((448, 448),), None, 16, batch=2)))
    return out


def last_step_logits(model, embeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The logits the last of `ids` was chosen from, by one forward of the whole sequence with no cache."""
    with torch.inference_mode():
        full = torch.cat([embeds, model.llm.get_input_embeddings()(ids[:, :-1])], dim=1)
        return model.llm(inputs_embeds=full).logits[:, -1]


@pytest.mark.parametrize("preset", ["nvila-tiny", "vila-tiny"])
def test_every_engine_gives_the_eager_ids_and_the_logits_of_its_last_step(contexts, preset):
    model, embeds = contexts[preset]
    reference = make_engine("eager", model, "dynamic").generate(embeds, 10)
    assert reference.shape == (2, 10)
    logits = last_step_logits(model, embeds, reference)
    for name in ENGINES:
        engine = make_engine(name, model)
        engine.setup(embeds, 10)
        ids = engine.generate(embeds, 10)
        assert engine.note is None, engine.note
        assert torch.equal(ids, reference), f"{name}: {ids.tolist()} != {reference.tolist()}"
        assert torch.equal(engine.generate(embeds, 10), reference), f"{name}: a second run differs"
        # transformers' generate hands its logits processors' output: min_new_tokens masks EOS with -inf
        kept = engine.last_logits.isfinite()
        assert kept.float().mean() > 0.99 and (name in ("hf-generate", "hf-static") or kept.all()), name
        torch.testing.assert_close(engine.last_logits.float()[kept], logits[kept], rtol=1e-4, atol=1e-4, msg=name)


@pytest.mark.parametrize("batch, context", [(64, 20), (1, 3000)])
def test_compiled_decode_at_batch_64_and_a_long_context_gives_the_eager_ids(batch, context):
    """The issue's range: batch sizes 1-64 and long contexts, captured (compiled here) without a fallback."""
    model = build_model(get_preset("nvila-tiny"))
    torch.manual_seed(batch)
    embeds = torch.randn(batch, context, model.llm.config.hidden_size) * 0.5
    engine = make_engine("compiled", model)
    engine.setup(embeds, 6)
    assert engine.note is None, engine.note
    assert torch.equal(engine.generate(embeds, 6), make_engine("eager", model, "dynamic").generate(embeds, 6))


def test_compiled_decode_of_fewer_tokens_than_its_warm_up_steps(contexts):
    model, embeds = contexts["nvila-tiny"]
    engine = make_engine("compiled", model)
    engine.setup(embeds, 2)  # the warm-up runs 3 steps: their ids must not overflow a 2-token buffer
    assert engine.note is None, engine.note
    assert torch.equal(engine.generate(embeds, 2), make_engine("eager", model).generate(embeds, 2))


def test_compiled_prefill_gives_the_eager_first_token(contexts):
    model, embeds = contexts["nvila-tiny"]
    eager = make_engine("eager", model).first_token(embeds)
    compiled = CompiledEngine(model, prefill_graph_tokens=embeds.numel())  # the graph path at any length
    compiled.setup_prefill(embeds)
    assert compiled.note is None, compiled.note
    assert torch.equal(compiled.first_token(embeds), eager)


def test_a_capture_that_fails_falls_back_to_eager_with_a_note(contexts, monkeypatch):
    model, embeds = contexts["nvila-tiny"]

    def broken(self, embeds, new_tokens, attention):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(CompiledEngine, "_prepare", broken)
    engine = make_engine("compiled", model)
    engine.setup(embeds, 6)
    assert engine.note.startswith("fell back to eager: RuntimeError: operation not permitted")
    assert engine.generate_prefill is None  # eager throughout: its decode records' prefill is its own
    assert torch.equal(engine.generate(embeds, 6), make_engine("eager", model).generate(embeds, 6))


def test_media_stages_that_fail_to_compile_run_eagerly_with_a_note(monkeypatch):
    """The vision tower and projector compile at their first call; one that fails there (inductor's CPU code for
    int8 activations did, 2026-11) must not lose the point: all media stages run plain, the note says why."""
    cfg = get_preset("nvila-tiny")
    model = build_model(cfg)
    request = synthetic_request(cfg, ((448, 448),), None, 16)
    with torch.inference_mode():
        reference = embed(model, request)

    def broken(fn, **kwargs):
        def call(*args, **kw):
            raise RuntimeError("CppCompileError: conflicting declaration")

        return call

    monkeypatch.setattr(torch, "compile", broken)
    earlier = make_engine("compiled", model)
    earlier.setup_media()  # installs the media stages to compile at their first call, which is not its point's
    engine = make_engine("compiled", model)
    engine.setup_media()
    with torch.inference_mode():
        assert torch.equal(embed(model, request), reference)
    assert engine.note.startswith(
        "vision tower and projector eager (FastVision failed to compile: RuntimeError: CppCompileError"
    )
    assert earlier.note is None  # the failure is told to the point that met it
    from nvila_bench.model.vision import vision_body

    assert model.vision_forward is None
    assert all(
        m._compiled_call_impl is None for m in (*vision_body(model.vision_tower).encoder.layers, model.mm_projector)
    )


def test_point_engine_defaults_and_the_cache_each_engine_runs_with():
    assert BenchPoint("nvila-tiny").engine == "eager"
    assert BenchPoint("nvila-tiny").preprocess == "cpu"
    cuda = BenchPoint("nvila-tiny", device="cuda")
    assert (cuda.engine, cuda.preprocess, cuda.cache) == ("compiled", "gpu", "static")
    assert BenchPoint("nvila-tiny", engine="hf-generate", cache="static").cache == "dynamic"
    assert BenchPoint("nvila-tiny", engine="eager", cache="static").cache == "static"
    with pytest.raises(ValueError, match="unknown engine 'fast'"):
        BenchPoint("nvila-tiny", engine="fast")
    with pytest.raises(ValueError, match="unknown preprocess 'tpu'"):
        BenchPoint("nvila-tiny", preprocess="tpu")


def test_decode_records_keep_the_engine_its_setup_time_and_the_ids(tmp_path, capsys):
    code = main(
        [
            "run",
            "decode",
            "--preset",
            "nvila-tiny",
            "--image",
            "448x448",
            "--new-tokens",
            "70",
            "--engine",
            "eager",
            "--engine",
            "hf-generate",
            "--engine",
            "compiled",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--min-seconds",
            "0",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0, capsys.readouterr().err
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["config"]["engine"] for r in records] == ["eager", "hf-generate", "compiled"]
    assert all(r["status"] == "ok" and "engine_note" not in r["metrics"] for r in records)  # compiled: no fallback
    ids = [r["metrics"]["output_ids"]["value"] for r in records]
    assert len(ids[0]) == 64 and ids[0] == ids[1] == ids[2]  # the first 64 of 70, the same for every engine
    # all 70 the same (digest), and the logits the last was chosen from at 256 of nvila-tiny's vocabulary ids; EOS,
    # which transformers' min_new_tokens masks with -inf, is None there and leaves the point ok
    assert len({r["metrics"]["output_ids_digest"]["value"] for r in records}) == 1
    eager, hf, compiled = (r["metrics"]["last_step_logits"]["value"] for r in records)
    assert len(eager) == 256 and None not in eager + compiled and hf.count(None) == 1
    assert [r["metrics"]["last_step_logits_nan"]["value"] for r in records] == [0, 0, 0]  # -inf is a mask, not NaN
    from nvila_bench.reports.engines import relative_difference

    assert relative_difference(compiled, eager) < 1e-5 and relative_difference(hf, eager) < 1e-5
    assert all(r["metrics"]["setup_seconds"]["value"] >= 0 for r in records)
    # CUDA graphs only on CUDA: no capture time on the CPU (tests/test_engines_cuda.py checks one there)
    assert all("graph_capture_seconds" not in r["metrics"] for r in records)
    # the compiled engine's decode prefills with its own compiled prefill: nothing to say about it
    assert all("prefill_engine" not in r["metrics"] for r in records)


def test_decode_points_embed_their_context_with_the_plain_media_stages_whatever_a_prefill_point_left():
    """A prefill point of the compiled engine leaves the media stages compiled on the session's model; every
    decode point must still prefill the same context, or the engines' ids would differ for that reason alone."""
    from nvila_bench.suites import decode, prefill

    from nvila_bench.core.measuring.session import Session
    from nvila_bench.core.measuring.timing import MeasureConfig

    session = Session(measure=MeasureConfig(warmup=0, repeats=1, min_seconds=0))
    point = BenchPoint("nvila-tiny", images=((448, 448),), prompt_tokens=16, new_tokens=4, engine="eager")
    plain = decode.measure_point(point, session)["output_ids"].value
    prefill.measure_point(replace(point, engine="compiled"), session)
    assert session.model(point).vision_forward is not None
    assert decode.measure_point(point, session)["output_ids"].value == plain
    assert session.model(point).vision_forward is None


def test_a_compiled_decode_whose_prefill_fails_to_compile_prefills_eagerly_and_says_so(contexts, monkeypatch):
    model, embeds = contexts["nvila-tiny"]

    def broken(*args, **kwargs):
        raise RuntimeError("inductor: no kernel")

    monkeypatch.setattr("nvila_bench.model.compiling.CapturedPrefill.build", broken)
    engine = make_engine("compiled", model)
    engine.setup(embeds, 6)
    assert engine.note == "the decode prefill fell back to eager: RuntimeError: inductor: no kernel"
    assert engine.generate_prefill == "eager, into the static cache"  # the decode record says whose prefill it timed
    assert torch.equal(engine.generate(embeds, 6), make_engine("eager", model).generate(embeds, 6))


def test_an_unknown_engine_is_refused_by_name(tmp_path, capsys):
    code = main(
        ["run", "decode", "--preset", "nvila-tiny", "--image", "448x448", "--engine", "turbo", "--out", str(tmp_path)]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "--engine" in err and "turbo" in err and len(err.strip().splitlines()) == 1


def _photo(width: int, height: int) -> Image.Image:
    """A smooth image (upscaled coarse noise): what photos look like to a resampling filter."""
    coarse = np.random.default_rng(1).integers(0, 256, (max(height // 16, 2), max(width // 16, 2), 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR)


@pytest.mark.parametrize("preset", ["nvila-8b", "nvila-lite-2b", "vila1.5-8b"])
@pytest.mark.parametrize("size", [(1920, 1080), (448, 448), (640, 360), (300, 900)])
def test_tensor_preprocessing_matches_pil(preset, size):
    cfg = get_preset(preset)
    for image in (_photo(*size), synthetic_image(*size)):
        pil = preprocess_media(cfg, [image])
        tensor = preprocess_media_tensor(cfg, [to_uint8(image)])
        assert pil.images[0].layout == tensor.images[0].layout
        a, b = pil.all_pixels(), tensor.all_pixels()
        assert a.shape == b.shape and b.dtype == torch.float32
        assert b.min() >= -1 and b.max() <= 1
        assert (a - b).abs().mean() < PIXEL_TOLERANCE


def test_tensor_preprocessing_of_a_video_matches_pil():
    cfg = get_preset("nvila-8b")
    frames = synthetic_video(4)
    pil = preprocess_media(cfg, [], frames).video.pixels
    tensor = preprocess_media_tensor(cfg, [], [to_uint8(f) for f in frames]).video.pixels
    assert pil.shape == tensor.shape == (4, 3, cfg.tile_size, cfg.tile_size)
    assert (pil - tensor).abs().mean() < PIXEL_TOLERANCE


def test_gpu_preprocessing_request_gives_the_same_token_count():
    cfg = get_preset("nvila-lite-tiny")
    model = build_model(cfg)
    counts = count_visual_tokens(cfg, ((1920, 1080),), None)
    with torch.inference_mode():
        for preprocess in ("cpu", "gpu"):
            embeds = embed(model, synthetic_request(cfg, ((1920, 1080),), None, 8, preprocess=preprocess))
            assert embeds.shape[1] == counts.total_tokens + 8


def test_a_sweep_compiles_every_shape_and_never_runs_uncompiled_unsaid():
    """dynamo's default recompile limit (8) would run a function uncompiled from the 9th shape on, silently."""
    from nvila_bench.model.compiling import RECOMPILE_LIMIT, compiled
    from torch._dynamo.utils import counters

    double = compiled(lambda x: x * 2 + 1)
    before = counters["stats"]["unique_graphs"]
    for n in range(1, 11):  # ten lengths, as a sweep of contexts would give
        torch.testing.assert_close(double(torch.ones(n)), torch.full((n,), 3.0))
    assert counters["stats"]["unique_graphs"] - before == 10  # each one compiled
    assert torch._dynamo.config.recompile_limit >= RECOMPILE_LIMIT
    minus = compiled(lambda x: x - 1)
    with torch._dynamo.config.patch(recompile_limit=1):
        minus(torch.ones(11))
        with pytest.raises(Exception, match="recompile_limit"):  # past the limit: an error, not eager figures
            minus(torch.ones(12))


def test_the_prefill_suites_fallback_note_survives_a_decode_prefill_that_compiled(contexts, monkeypatch):
    """The deployment suite sets up both prefills on one engine: one's success must not erase the other's note."""
    from nvila_bench.model.compiling import CapturedPrefill

    model, embeds = contexts["nvila-tiny"]
    real, calls = CapturedPrefill.build.__func__, []

    def first_fails(cls, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("no kernel")
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(CapturedPrefill, "build", classmethod(first_fails))
    engine = make_engine("compiled", model)
    engine.setup_prefill(embeds)
    engine.setup(embeds, 4)
    assert engine.note == "LLM prefill fell back to eager: RuntimeError: no kernel"
    assert (
        engine.prefill_attention() is None and engine.generate_prefill is None
    )  # generate's prefill: the compiled one
    assert torch.equal(engine.first_token(embeds), make_engine("eager", model).first_token(embeds))


def test_one_compiled_prefill_serves_the_prefill_suite_and_the_decode(contexts):
    """The cache stays out of the compiled function, so caches of two lengths share one compile."""
    from torch._dynamo.utils import counters

    model, embeds = contexts["vila-tiny"]
    engine = make_engine("compiled", model)
    before = counters["stats"]["unique_graphs"]
    engine.setup_prefill(embeds)
    after_prefill = counters["stats"]["unique_graphs"]
    engine.setup(embeds, 4)  # its cache is longer; only the decode step compiles
    assert (after_prefill - before, counters["stats"]["unique_graphs"] - after_prefill) == (1, 1)
    assert engine.note is None and torch.equal(
        engine.generate(embeds, 4), make_engine("eager", model).generate(embeds, 4)
    )


def test_running_out_of_memory_while_compiling_ends_the_point_rather_than_falling_back(contexts, monkeypatch):
    model, embeds = contexts["nvila-tiny"]

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr("nvila_bench.model.compiling.CapturedPrefill.build", oom)
    with pytest.raises(torch.OutOfMemoryError):
        make_engine("compiled", model).setup(embeds, 4)
    with pytest.raises(torch.OutOfMemoryError):
        make_engine("compiled", model).setup_prefill(embeds)
