"""The compiled engine's decode step and prefill (model/fast_llm.py) on CPU: their logits (and the prefill's
K/V) are transformers' own for Qwen2 (NVILA) and Llama (VILA1.5), the decode step's with either attention;
fusing q/k/v and gate/up adds no memory and leaves the model's modules, parameters and checkpoints as they
were; modules that are not plain linears run one by one (quantized fusion: tests/test_quantize_fused.py);
the engine tries the next step when one cannot be captured and says so."""

from __future__ import annotations

import pytest
import torch
from nvila_bench.model import build_model, get_preset
from nvila_bench.model.checkpoint import load_checkpoint, save_checkpoint
from nvila_bench.model.compiling import compiled
from nvila_bench.model.engines import CompiledEngine, make_engine
from nvila_bench.model.fast_llm import (
    KV_BLOCK,
    FastDecoder,
    FastPrefill,
    Fused,
    allocate,
    cache_length,
    prefill_attention_kernel,
)
from nvila_bench.model.pipeline import embed, synthetic_request
from torch import nn


def _llm_context(preset: str, batch: int = 2, tokens: int = 37):
    torch.manual_seed(0)
    model = build_model(get_preset(preset))
    embeds = torch.randn(batch, tokens, model.llm.config.hidden_size) * 0.1
    return model, embeds


@pytest.mark.parametrize("preset", ["nvila-tiny", "vila-tiny"])
@pytest.mark.parametrize("attention", ["sdpa", "flex"])
def test_the_decode_step_gives_transformers_logits_for_several_steps(preset, attention):
    model, embeds = _llm_context(preset)
    context = embeds.shape[1]
    with torch.inference_mode():
        ours, theirs = (model.new_cache("static", cache_length(context + 4)) for _ in range(2))
        token = model.prefill(embeds, theirs).logits.argmax(-1, keepdim=True)
        model.prefill(embeds, ours)
        pos = torch.tensor(context)
        step = FastDecoder(model.llm, ours, pos, attention)
        for _ in range(3):  # positions context..context+2: the cache grows and the mask moves with pos
            expected = model.decode_step(token, theirs)
            got = step(token)
            assert got.shape == expected.shape == (2, model.llm.config.vocab_size)
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
            token = expected.argmax(-1, keepdim=True)
            pos.add_(1)


def test_fusing_adds_no_memory_and_keeps_modules_parameters_and_checkpoints(tmp_path):
    model, embeds = _llm_context("nvila-tiny")
    before = {k: v.clone() for k, v in model.llm.state_dict().items()}
    count = sum(p.numel() for p in model.parameters())
    attn = model.llm.model.layers[0].self_attn
    qkv = Fused.of(attn.q_proj, attn.k_proj, attn.v_proj)
    assert qkv.weight is not None and qkv.sizes == (
        attn.q_proj.out_features,
        attn.k_proj.out_features,
        attn.v_proj.out_features,
    )
    # q/k/v are now row slices of the fused tensor: the same storage, nothing copied
    assert (
        attn.k_proj.weight.data_ptr() == qkv.weight.data_ptr() + attn.q_proj.weight.numel() * qkv.weight.element_size()
    )
    assert attn.q_proj.bias.untyped_storage().data_ptr() == qkv.bias.untyped_storage().data_ptr()
    assert (
        Fused.of(attn.q_proj, attn.k_proj, attn.v_proj).weight.data_ptr() == qkv.weight.data_ptr()
    )  # found, not re-fused
    assert sum(p.numel() for p in model.parameters()) == count
    after = model.llm.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    x = torch.randn(3, attn.q_proj.in_features)
    for module, part in zip((attn.q_proj, attn.k_proj, attn.v_proj), qkv(x)):
        torch.testing.assert_close(part, module(x))
    # a checkpoint of a fused model saves (safetensors refuses shared storage) and loads back equal
    reloaded = load_checkpoint(save_checkpoint(model, tmp_path / "ckpt"), dtype=torch.float32, device="cpu")
    assert all(torch.equal(before[k], v) for k, v in reloaded.llm.state_dict().items() if k in before)


def test_modules_that_are_not_plain_linears_run_one_by_one():
    class Scaled(nn.Linear):  # e.g. a LoRA-wrapped or quantized layer: its own forward must run
        def forward(self, x):
            return 2 * super().forward(x)

    a, b = nn.Linear(8, 4), Scaled(8, 4)
    fused = Fused.of(a, b)
    assert fused.weight is None
    x = torch.randn(2, 8)
    torch.testing.assert_close(fused(x)[1], b(x))
    assert Fused.of(nn.Linear(8, 4), nn.Linear(8, 4, bias=False)).weight is None  # bias on one only
    assert Fused.of(nn.Linear(8, 4), nn.Linear(6, 4)).weight is None  # different inputs


def test_flex_needs_whole_blocks_and_the_cache_allocated():
    model, embeds = _llm_context("nvila-tiny")
    assert cache_length(1) == KV_BLOCK and cache_length(KV_BLOCK + 1) == 2 * KV_BLOCK
    with torch.inference_mode():
        cache = model.new_cache("static", 50)
        with pytest.raises(ValueError, match="not allocated yet"):
            FastDecoder(model.llm, cache, torch.tensor(0), "flex")
        model.prefill(embeds, cache)
        with pytest.raises(ValueError, match="whole 128-position blocks"):
            FastDecoder(model.llm, cache, torch.tensor(37), "flex")
        with pytest.raises(ValueError, match="unknown decode attention 'paged'"):
            FastDecoder(model.llm, cache, torch.tensor(37), "paged")


def test_the_compiled_flex_step_reads_only_the_filled_blocks(monkeypatch):
    """The block count follows pos: the cache past the filled blocks is poisoned with NaN, and the compiled
    step (as the engine runs it; eager flex_attention ignores the count) still gives transformers' logits
    while its steps cross a block boundary (counts 1, 1, 2, 2 of 3). Reading the whole cache gives NaN."""
    model, embeds = _llm_context("nvila-tiny", batch=1, tokens=KV_BLOCK - 2)
    context = embeds.shape[1]
    with torch.inference_mode():
        ours, theirs = (model.new_cache("static", cache_length(context + 4 + KV_BLOCK)) for _ in range(2))
        token = model.prefill(embeds, theirs).logits.argmax(-1, keepdim=True)
        model.prefill(embeds, ours)
        assert ours.layers[0].keys.shape[2] == 3 * KV_BLOCK
        for layer in ours.layers:
            layer.keys[:, :, 2 * KV_BLOCK :] = float("nan")
            layer.values[:, :, 2 * KV_BLOCK :] = float("nan")
        pos = torch.tensor(context)
        decoder = FastDecoder(model.llm, ours, pos, "flex")
        step = compiled(decoder.__call__)
        for blocks in (1, 1, 2, 2):
            expected = model.decode_step(token, theirs)
            got = step(token)
            assert decoder._mask.kv_num_blocks.item() == blocks
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
            token = expected.argmax(-1, keepdim=True)
            pos.add_(1)
        monkeypatch.setattr("nvila_bench.model.fast_llm.filled_blocks", lambda mask, pos: None)  # (recompiles)
        decoder._mask.kv_num_blocks.fill_(3)  # what every step read before: the whole cache
        assert step(token).isnan().all()


@pytest.mark.parametrize("attention", ["flex", "transformers"])
def test_every_decode_step_of_the_compiled_engine_gives_the_eager_ids(attention):
    model, embeds = _llm_context("vila-tiny")
    reference = make_engine("eager", model).generate(embeds, 8)
    engine = CompiledEngine(model, attention=attention)
    engine.setup(embeds, 8)
    assert engine.note is None, engine.note
    assert torch.equal(engine.generate(embeds, 8), reference)


def test_a_step_that_cannot_be_captured_gives_way_to_the_next_with_a_note(monkeypatch):
    model, embeds = _llm_context("nvila-tiny")
    reference = make_engine("eager", model).generate(embeds, 6)
    real = CompiledEngine._prepare

    def flaky(self, embeds, new_tokens, attention):
        if attention == "flex":
            raise RuntimeError("flex_attention: no kernel for this shape")
        return real(self, embeds, new_tokens, attention)

    monkeypatch.setattr(CompiledEngine, "_prepare", flaky)
    monkeypatch.setattr("nvila_bench.model.engines.compiled.default_attention", lambda device: "flex")  # as on CUDA
    engine = CompiledEngine(model)
    assert engine.attentions(embeds.device) == ("flex", "sdpa")
    engine.setup(embeds, 6)
    assert engine.note == "decode attention sdpa: flex failed: RuntimeError: flex_attention: no kernel for this shape"
    assert torch.equal(engine.generate(embeds, 6), reference)


def test_a_long_prefill_runs_compiled_without_a_graph():
    cfg = get_preset("nvila-tiny")
    model = build_model(cfg)
    with torch.inference_mode():
        embeds = embed(model, synthetic_request(cfg, ((448, 448),), None, 16))
    eager = make_engine("eager", model).first_token(embeds)
    engine = CompiledEngine(model, prefill_graph_tokens=embeds.shape[1] - 1)
    engine.setup_prefill(embeds)
    assert engine.note is None and engine._first is not None and engine._first.graph is None
    assert torch.equal(engine.first_token(embeds), eager)


@pytest.mark.parametrize("preset", ["nvila-tiny", "vila-tiny"])
def test_the_prefill_gives_transformers_logits_and_cache_and_decoding_goes_on_from_it(preset):
    model, embeds = _llm_context(preset)
    context = embeds.shape[1]
    with torch.inference_mode():
        ours, theirs = (model.new_cache("static", cache_length(context + 3)) for _ in range(2))
        with pytest.raises(ValueError, match="not allocated yet"):
            FastPrefill(model.llm, ours)
        allocate(ours, model.llm, embeds.shape[0], embeds.dtype, embeds.device)
        fast = FastPrefill(model.llm, ours)
        (got, kv), expected = fast(embeds), model.prefill(embeds, theirs).logits
        assert len(kv) == 2 * len(ours.layers) and kv[0].shape == ours.layers[0].keys[:, :, :context].shape
        fast.write(kv)
        assert got.shape == expected.shape == (2, model.llm.config.vocab_size)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
        for mine, reference in zip(ours.layers, theirs.layers):  # every layer's K/V at the prompt's positions
            torch.testing.assert_close(mine.keys[:, :, :context], reference.keys[:, :, :context])
            torch.testing.assert_close(mine.values[:, :, :context], reference.values[:, :, :context])
        token = expected.argmax(-1, keepdim=True)
        step = FastDecoder(model.llm, ours, torch.tensor(context), "sdpa")  # decoding from the prefill's cache
        torch.testing.assert_close(step(token), model.decode_step(token, theirs), rtol=1e-4, atol=1e-5)


def test_the_prefill_attention_kernel_is_named():
    model, _ = _llm_context("nvila-tiny")
    kernel = prefill_attention_kernel(model.llm.config, 37, torch.float32, "cpu")
    assert kernel in ("flash_attention", "math")  # CPU's two SDPA backends
    engine = CompiledEngine(model)
    assert engine.prefill_attention() is None  # nothing set up yet
    engine.setup_prefill(torch.randn(1, 37, model.llm.config.hidden_size))
    assert engine.prefill_attention() == kernel
