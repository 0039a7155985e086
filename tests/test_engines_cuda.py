"""The engines and GPU preprocessing (issue 15) on a GPU only: the compiled decode step is captured as a CUDA
graph and gives eager's ids, the prefill graph gives eager's first token, splicing the media into the prompt
never syncs, the fast vision tower runs its GELU in the GEMM and attends with a fused kernel, `--image-file`
decodes a JPEG with nvJPEG on the device to PIL's pixels (within a level or two: two IDCTs), and the prefill
suite runs on it.
Skipped without CUDA (CI); the GPU scripts' `check` part runs it (`pytest tests/test_engines_cuda.py`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from nvila_bench.model import build_model, get_preset
from nvila_bench.model.engines import CompiledEngine, make_engine
from nvila_bench.model.pipeline import embed, synthetic_request
from nvila_bench.model.preprocess_tensor import decode_image
from PIL import Image

from nvila_bench.cli import main

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs, nvJPEG")


@pytest.fixture(scope="module")
def fp32_context():
    """nvila-tiny in float32 on the GPU (bf16 argmax ties of a random tiny model would make id checks flaky;
    TF32 off while this module runs, as a float32 reference needs)."""
    tf32, torch.backends.cuda.matmul.allow_tf32 = torch.backends.cuda.matmul.allow_tf32, False
    cfg = get_preset("nvila-tiny")
    model = build_model(cfg, torch.float32, "cuda")
    with torch.inference_mode():
        embeds = embed(model, synthetic_request(cfg, ((448, 448),), None, 16, batch=2, preprocess="gpu"))
    yield model, embeds
    torch.backends.cuda.matmul.allow_tf32 = tf32


@pytest.mark.parametrize("attention", ["flex", "sdpa"])  # each on its own: a flex failure must not hide sdpa's result
def test_the_compiled_decode_is_one_captured_graph_with_eager_ids(fp32_context, attention):
    model, embeds = fp32_context
    engine = CompiledEngine(model, attention=attention)
    engine.setup(embeds, 12)
    assert engine.note is None and engine._graph is not None, engine.note  # captured, not fallen back
    eager = make_engine("eager", model, "dynamic")
    reference = eager.generate(embeds, 12)
    assert torch.equal(engine.generate(embeds, 12), reference)
    assert torch.equal(engine.generate(embeds, 12), reference)  # a replay after a replay: the cache rewound
    assert engine._fill.graph is not None  # generate's prefill: the captured fast prefill too
    # the graph's logits buffer holds the last replay's: the logits the last id was chosen from
    torch.testing.assert_close(engine.last_logits, eager.last_logits, rtol=1e-4, atol=1e-4)


def test_the_captured_flex_step_reads_only_the_filled_blocks(fp32_context):
    """On CUDA's flex_decode kernel, inside a CUDA graph: the block count follows pos across a block boundary,
    and NaN planted past the filled blocks stays out of the logits, which equal transformers' (CPU: the same
    test on inductor's CPU template, tests/test_fast_llm.py)."""
    from nvila_bench.model.compiling import capture, compiled
    from nvila_bench.model.fast_llm import KV_BLOCK, FastDecoder, cache_length

    model, _ = fp32_context
    torch.manual_seed(0)
    embeds = torch.randn(2, KV_BLOCK - 2, model.llm.config.hidden_size, device="cuda") * 0.1
    context = embeds.shape[1]
    with torch.inference_mode():
        ours, theirs = (model.new_cache("static", cache_length(context + 4 + KV_BLOCK)) for _ in range(2))
        token = model.prefill(embeds, theirs).logits.argmax(-1, keepdim=True)
        model.prefill(embeds, ours)
        for layer in ours.layers:
            layer.keys[:, :, 2 * KV_BLOCK :] = float("nan")
            layer.values[:, :, 2 * KV_BLOCK :] = float("nan")
        pos, current = torch.tensor(context, device="cuda"), token.clone()
        decoder = FastDecoder(model.llm, ours, pos, "flex")
        step = compiled(decoder.__call__)
        out = torch.empty(2, model.llm.config.vocab_size, device="cuda")
        graph, _ = capture(lambda: out.copy_(step(current)), warmups=1)  # the warm-up writes at pos: rewritten below
        for blocks in (1, 1, 2, 2):
            expected = model.decode_step(token, theirs)
            current.copy_(token)
            graph.replay()
            assert decoder._mask.kv_num_blocks.item() == blocks
            torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
            token = expected.argmax(-1, keepdim=True)
            pos.add_(1)


def test_the_prefill_graph_gives_the_eager_first_token(fp32_context):
    model, embeds = fp32_context
    engine = CompiledEngine(model)
    engine.setup_prefill(embeds)
    assert engine.note is None and engine._first.graph is not None, engine.note
    assert torch.equal(engine.first_token(embeds), make_engine("eager", model).first_token(embeds))


def test_splicing_the_media_into_the_prompt_never_waits_for_the_gpu(fp32_context):
    """The checks and cuts of model.embed read the ids on the host: the host keeps launching (the prefill)
    while the media stages run, instead of idling the GPU at a sync (CUDA's sync debug mode raises on one)."""
    from nvila_bench.model.pipeline import media_blocks

    model, embeds = fp32_context
    request = synthetic_request(get_preset("nvila-tiny"), ((448, 448),), None, 16, batch=2, preprocess="gpu")
    with torch.inference_mode():
        blocks = media_blocks(model, request)
        torch.cuda.set_sync_debug_mode("error")
        try:
            spliced = model.embed(request.input_ids, blocks)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.testing.assert_close(spliced, embeds)


def test_in_bf16_the_compiled_prefill_attends_with_a_fused_kernel():
    """The ids tests run in fp32, where SDPA with grouped heads has only the math backend; bf16 is the product's."""
    from nvila_bench.model.fast_llm import prefill_attention_kernel
    from nvila_bench.model.nvila import llm_hf_config

    for preset in (
        "nvila-tiny",
        "nvila-lite-2b",
        "nvila-8b",
        "vila1.5-8b",
    ):  # head dims 16 and 128, 2, 6, 7 and 4 query heads per KV head
        kernel = prefill_attention_kernel(llm_hf_config(get_preset(preset).llm), 3137, torch.bfloat16, "cuda")
        assert kernel not in ("math", "unknown"), (preset, kernel)


def test_the_fast_vision_tower_runs_gelu_in_the_gemm_and_gives_the_towers_features():
    """bf16, the product's dtype: fc1's GELU in cuBLASLt's epilogue (the tanh GELU SigLIP uses) and a fused
    attention kernel for SigLIP's head dim (72 for the 400M tower); features as transformers' tower computes
    them, within bf16 rounding (the epilogue rounds once, after the GELU)."""
    from nvila_bench.model.compiling import compiled
    from nvila_bench.model.fast_vision import FastVision, fast_vision_attention_kernel
    from nvila_bench.model.vision import vision_features

    cfg = get_preset("nvila-tiny")
    model = build_model(cfg, torch.bfloat16, "cuda")
    pixels = torch.randn(3, 3, cfg.vision.image_size, cfg.vision.image_size, device="cuda", dtype=torch.bfloat16)
    from torch._inductor.utils import run_and_get_code

    with torch.inference_mode():
        expected = vision_features(model.vision_tower, pixels, cfg.vision.layers_used).float()
        fast = FastVision(model.vision_tower, cfg.vision.layers_used)
        assert all(layer.epilogue for layer in fast.layers)
        got, code = run_and_get_code(compiled(fast.__call__), pixels)
        assert "\n".join(code).count("torch.ops.aten._addmm_activation.default(") == len(fast.layers)  # one kernel each
        for features in (fast(pixels), got):
            assert (features.float() - expected).norm() / expected.norm() < 3e-2
        # in fp32 (no TF32) the epilogue's GELU is seen to be the tanh one, not the exact one (CPU's)
        tf32, torch.backends.cuda.matmul.allow_tf32 = torch.backends.cuda.matmul.allow_tf32, False
        b, x, w = (torch.randn(*shape, device="cuda") for shape in ((256,), (512, 128), (256, 128)))
        epilogue = torch._addmm_activation(b, x, w.t(), use_gelu=True)
        linear = torch.nn.functional.linear(x, w, b)
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.testing.assert_close(epilogue, torch.nn.functional.gelu(linear, approximate="tanh"), rtol=1e-4, atol=1e-4)
        assert (epilogue - torch.nn.functional.gelu(linear)).abs().max() > 1e-4
    big = build_model(get_preset("nvila-8b"), torch.bfloat16, "meta", seed=None)
    assert big.vision_tower.config.hidden_size // big.vision_tower.config.num_attention_heads == 72
    big.vision_tower.to_empty(device="cuda")
    assert fast_vision_attention_kernel(big.vision_tower) not in ("math", "unknown")


@pytest.fixture(scope="module")
def jpeg(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "street.jpg"
    coarse = np.random.default_rng(0).integers(0, 256, (45, 80, 3), dtype=np.uint8)
    Image.fromarray(coarse).resize((1280, 720), Image.BICUBIC).save(path, quality=92)
    return path


def test_nvjpeg_decodes_a_jpeg_on_the_device_to_pils_pixels(jpeg):
    pytest.importorskip("torchvision")
    pixels = decode_image(str(jpeg), "cuda")
    assert pixels.device.type == "cuda" and pixels.dtype == torch.uint8 and pixels.shape == (720, 1280, 3)
    pil = torch.from_numpy(np.array(Image.open(jpeg).convert("RGB"))).cuda()
    assert (pixels.float() - pil.float()).abs().mean().item() < 2.0  # two IDCTs and upsamplers, not one


def test_prefill_of_an_image_file_on_the_gpu(jpeg, tmp_path, capsys):
    code = main(
        [
            "run",
            "prefill",
            "--preset",
            "nvila-tiny",
            "--device",
            "cuda",
            "--image-file",
            str(jpeg),
            "--repeats",
            "2",
            "--warmup",
            "1",
            "--min-seconds",
            "0",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0, capsys.readouterr().err
    (record,) = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert (
        record["status"] == "ok"
        and record["config"]["preprocess"] == "gpu"
        and record["config"]["images"] == ["1280x720"]
    )
    # the compiled engine's prefill graph: its capture timed apart, a part of the compile + capture setup
    capture, setup = (record["metrics"][k]["value"] for k in ("graph_capture_seconds", "setup_seconds"))
    assert 0 < capture < setup
