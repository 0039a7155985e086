"""The compiled engine's LLM: the decode step (the forward for one new token) and the prefill (the prompt's
forward into the static cache), written for speed (gpt-fast's way) on the transformers model's own modules
and its StaticCache (docs/architecture.md#engines). The prefill's reasons are in `FastPrefill`'s docstring.

Why not transformers' forward for decoding: at batch 1 a decode step is a few hundred small kernels reading the weights
once (14 GB for NVILA-8B), and the H100 profile of transformers' path (benchmarks/NOTES.md) showed two
costs that are not reading weights:
- attention: with a mask (a static cache always has one) its SDPA path repeats K and V to every query
  head first, a copy of the whole cache per layer per token (0.5 ms of a 7.7 ms step), then attends over
  the copy (0.6 ms) where the cache's own bytes need 0.06 ms. Here the cache is read once per KV head:
  FlexAttention's split-KV decoding kernel, the query heads of a KV head as rows of one query, over the
  filled blocks only (`flex`, CUDA), or SDPA with `enable_gqa` (`sdpa`: 0.33 ms on the H100, cuDNN with few blocks).
- q/k/v and gate/up are three and two small matmuls; here one each: their weights (and biases) become row
  slices of one tensor (views, so no memory is added and every other path still sees the same modules).
Quantized q/k/v and gate/up run as one matmul where quantization made them slices of one weight
(model/quantize.py `Fusion`); other modules whose weights are not plain tensors run one by one.

Supported: the LLMs NVILA and VILA use, Qwen2 and Llama as transformers builds them (tests compare the
logits with transformers' own forward), and the peer VLMs' Qwen2 decoders (model/peer_model.py): LLaVA-OneVision's
as it is, Qwen2-VL's M-RoPE in the decode step only, as an offset (a text token's three positions are equal, so
its rotation is plain RoPE at the shifted position; tests/test_peer_model.py). Positions are one tensor `pos` on the
device, so the step can be
captured once as a CUDA graph and replayed with no host work.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

ATTENTIONS = ("flex", "sdpa")
KV_BLOCK = 128  # FlexAttention's KV block: the engine allocates the static cache in whole blocks


def cache_length(tokens: int) -> int:
    """Static cache positions for `tokens` (prompt + new): whole FlexAttention blocks (the rest is masked)."""
    return -(-tokens // KV_BLOCK) * KV_BLOCK


def default_attention(device: torch.device | str) -> str:
    return "flex" if torch.device(device).type == "cuda" else "sdpa"


def _plain(modules) -> bool:
    """Plain nn.Linear with plain weights of one dtype and device (no quantized tensor subclass, no LoRA)."""
    weights = [getattr(m, "weight", None) for m in modules]
    if any(type(m) is not nn.Linear or type(w) is not nn.Parameter for m, w in zip(modules, weights)):
        return False
    biases = {m.bias is None for m in modules}
    return len(biases) == 1 and len({(w.dtype, w.device, w.shape[1]) for w in weights}) == 1


def _joined(parts: list[torch.Tensor]) -> torch.Tensor | None:
    """The one tensor whose consecutive row slices `parts` already are (an earlier engine fused them)."""
    first = parts[0]
    offset = first.data_ptr()
    for p in parts:
        if (
            not p.is_contiguous()
            or p.data_ptr() != offset
            or p.untyped_storage().data_ptr() != first.untyped_storage().data_ptr()
        ):
            return None
        offset += p.numel() * p.element_size()
    rows = sum(p.shape[0] for p in parts)
    return first.new_empty(0).set_(first.untyped_storage(), first.storage_offset(), (rows, *first.shape[1:]))


def _join(modules, name: str) -> torch.Tensor:
    """One tensor of the modules' `name` parameters, stacked by rows; each module's parameter becomes its
    slice of it (no copy is kept: memory stays as it was)."""
    params = [getattr(m, name) for m in modules]
    # Normal tensors, also when found again under inference mode: the model may be trained later, and a
    # compiled function guards on the kind of tensor, so an inference-mode view would compile it once more.
    with torch.inference_mode(False), torch.no_grad():
        joined = _joined([p.detach() for p in params])
        if joined is not None:
            return joined
        joined = torch.cat([p.detach() for p in params])
        for m, p, part in zip(modules, params, joined.split([p.shape[0] for p in params])):
            setattr(m, name, nn.Parameter(part, requires_grad=p.requires_grad))
    return joined


def _slice_of(module: nn.Module, fusion) -> bool:
    """`module`'s weight is still a view of `fusion`'s (not moved or replaced since quantizing)."""
    if getattr(module, "fusion", None) is not fusion:
        return False
    data, whole = getattr(module.weight, "qdata", None), getattr(fusion.weight, "qdata", None)
    return (
        data is not None
        and whole is not None
        and data.untyped_storage().data_ptr() == whole.untyped_storage().data_ptr()
    )


@dataclass
class Fused:
    """Linear layers on one input as one matmul when their weights are plain, the modules one by one if not."""

    modules: tuple
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    sizes: tuple = ()

    @classmethod
    def of(cls, *modules: nn.Module) -> "Fused":
        sizes = tuple(m.out_features for m in modules)
        fusion = getattr(modules[0], "fusion", None)  # quantized as one weight (model/quantize.py `Fusion`)
        if fusion is not None and fusion.sizes == sizes and all(_slice_of(m, fusion) for m in modules):
            return cls(modules, fusion.weight, None if modules[0].bias is None else _join(modules, "bias"), sizes)
        if not _plain(modules):
            return cls(modules)
        bias = None if modules[0].bias is None else _join(modules, "bias")
        return cls(modules, _join(modules, "weight"), bias, sizes)

    def __call__(self, x: torch.Tensor) -> tuple:
        if self.weight is None:
            return tuple(m(x) for m in self.modules)
        return F.linear(x, self.weight, self.bias).split(self.sizes, dim=-1)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding as transformers applies it (rotate_half convention), cos/sin (B, T, D)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos.unsqueeze(1) + rotated * sin.unsqueeze(1)


def _sdpa(q, keys, values, pos, scale):
    """q (B, Hq, 1, D) over the cache (B, Hkv, L, D) up to `pos`; SDPA groups the heads (no K/V copy)."""
    mask = (torch.arange(keys.shape[2], device=q.device) <= pos).view(1, 1, 1, -1)
    return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=scale, enable_gqa=True)


def flex_block_mask(rows: int, length: int, pos: torch.Tensor):
    """A BlockMask for `rows` query rows over `length` cache positions, every block partial, so the mask
    function (position <= pos, read from the tensor at run time) decides within a block. Its block count is a
    tensor too: `filled_blocks` sets it from `pos` each step, so the kernel reads the cache's filled blocks
    only, not the whole static cache (at batch 64 or over a long generation the unfilled part can be most of
    it; torch 2.13's decoding kernel splits the blocks it is given across the GPU, so fewer blocks also mean
    shorter splits, not idle ones)."""
    from torch.nn.attention.flex_attention import BlockMask

    blocks = length // KV_BLOCK
    count = torch.full((1, 1, 1), blocks, dtype=torch.int32, device=pos.device)
    indices = torch.arange(blocks, dtype=torch.int32, device=pos.device).view(1, 1, 1, blocks)

    def visible(b, h, q_idx, kv_idx):
        return kv_idx <= pos

    return BlockMask.from_kv_blocks(count, indices, BLOCK_SIZE=KV_BLOCK, mask_mod=visible, seq_lengths=(rows, length))


def filled_blocks(mask, pos: torch.Tensor) -> None:
    """Set `mask`'s block count (flex_block_mask) to the blocks holding positions 0..pos, in place: a device op,
    so it runs inside the step's CUDA graph. No block is marked full, on purpose: with full blocks torch 2.13's
    decoding kernel splits the whole cache length across the GPU, filled or not (its flex_decode template)."""
    mask.kv_num_blocks.copy_(torch.div(pos, KV_BLOCK, rounding_mode="floor").add(1).view(1, 1, 1))


def _flex(q, keys, values, mask, scale):
    """q (B, Hq, 1, D) as (B, Hkv, Hq/Hkv, D): the query heads of one KV head become rows of one query, so
    FlexAttention runs its split-KV decoding kernel (its own GQA path needs a power-of-two group; Qwen2-7B's
    is 7) and reads each KV head once."""
    batch, heads, _, dim = q.shape
    rows = q.reshape(batch, keys.shape[1], -1, dim)
    from torch.nn.attention.flex_attention import flex_attention

    return flex_attention(rows, keys, values, block_mask=mask, scale=scale).reshape(batch, heads, 1, dim)


@dataclass
class _Layer:
    input_norm: nn.Module
    qkv: Fused
    o_proj: nn.Module
    post_norm: nn.Module
    gate_up: Fused
    down: nn.Module
    act: nn.Module
    keys: torch.Tensor  # this layer's slice of the static cache (B, Hkv, L, D)
    values: torch.Tensor

    @classmethod
    def of(cls, layer: nn.Module, cache_layer) -> "_Layer":
        attn, mlp = layer.self_attn, layer.mlp
        return cls(
            layer.input_layernorm,
            Fused.of(attn.q_proj, attn.k_proj, attn.v_proj),
            attn.o_proj,
            layer.post_attention_layernorm,
            Fused.of(mlp.gate_proj, mlp.up_proj),
            mlp.down_proj,
            mlp.act_fn,
            cache_layer.keys,
            cache_layer.values,
        )


class _FastLLM:
    """The LLM's modules as the fast paths use them: fused q/k/v and gate/up, each layer with its slice of
    the static cache (allocated already)."""

    def __init__(self, llm: nn.Module, cache):
        body = getattr(llm.model, "language_model", llm.model)  # a VLM's (Qwen2-VL) decoder, or the LLM's own
        self.embed, self.norm, self.rotary, self.lm_head = body.embed_tokens, body.norm, body.rotary_emb, llm.lm_head
        if any(getattr(layer, "keys", None) is None for layer in cache.layers):
            raise ValueError("the static cache is not allocated yet: prefill into it first, or allocate() it")
        self.layers = [_Layer.of(layer, c) for layer, c in zip(body.layers, cache.layers)]
        first = body.layers[0].self_attn
        self.head_dim, self.scale = first.head_dim, first.scaling
        self.group = first.config.num_attention_heads // first.config.num_key_value_heads

    def _qkv(self, layer: _Layer, x: torch.Tensor, cos, sin) -> tuple:
        """Normed x (B, T, C) -> q (B, Hq, T, D), k and v (B, Hkv, T, D), q and k rotated."""
        batch, length = x.shape[:2]
        q, k, v = (t.view(batch, length, -1, self.head_dim).transpose(1, 2) for t in layer.qkv(layer.input_norm(x)))
        return _rope(q, cos, sin), _rope(k, cos, sin), v

    def _rest(self, layer: _Layer, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """The layer after attention: o_proj and the residual, then the MLP and its residual."""
        batch, length = x.shape[:2]
        x = x + layer.o_proj(attended.transpose(1, 2).reshape(batch, length, -1))
        gate, up = layer.gate_up(layer.post_norm(x))
        return x + layer.down(layer.act(gate) * up)


def _head_dim(config) -> int:
    """A transformers LLM config's head dim (Llama configs state it; Qwen2's derive it)."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def allocate(cache, llm: nn.Module, batch: int, dtype: torch.dtype, device) -> None:
    """Allocate a transformers StaticCache's tensors now (it otherwise does so at its first update), so a fast
    prefill can write into them."""
    config = llm.config
    cache.early_initialization(batch, config.num_key_value_heads, _head_dim(config), dtype, torch.device(device))


class FastPrefill(_FastLLM):
    """`prefill(embeds (B, T, C))` -> (last-position logits (B, V), the prompt's K and V per layer, each
    (B, Hkv, T, D)), causal attention over the prompt itself; `write(kv)` puts the K/V into positions 0..T-1
    of the static cache. The cache stays out of the function, so one compiled prefill serves caches of any
    length (the prefill suite's and the decode's) and compiles once per (batch, length).

    Why not transformers' forward: the H100 profile of its NVILA-8B prefill (3,137 tokens) spent 23 ms of
    79 on element-wise kernels (RMSNorm in five fp32 passes, rope's cat and muls, SiLU then x up), which
    compiled become one pass each; q/k/v and gate/up are one matmul each. SDPA gets `is_causal` and no
    mask, so it keeps a fused kernel and groups the heads itself (`enable_gqa`, as transformers' prefill into
    a dynamic cache does on CUDA; into a static cache it passes a mask and repeats K and V)."""

    def __call__(self, embeds: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        batch, length = embeds.shape[:2]
        positions = torch.arange(length, device=embeds.device).view(1, length).expand(batch, length)
        cos, sin = self.rotary(embeds, positions)
        x, kv = embeds, []
        for layer in self.layers:
            q, k, v = self._qkv(layer, x, cos, sin)
            kv += [k, v]
            x = self._rest(
                layer,
                x,
                F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale, enable_gqa=self.group > 1),
            )
        return self.lm_head(self.norm(x[:, -1])), kv

    def write(self, kv: list[torch.Tensor]) -> None:
        """The prompt's K/V (from a call) into the static cache's positions 0..T-1."""
        length = kv[0].shape[2]
        for layer, k, v in zip(self.layers, kv[0::2], kv[1::2]):
            layer.keys[:, :, :length].copy_(k)
            layer.values[:, :, :length].copy_(v)


def prefill_attention_kernel(config, length: int, dtype: torch.dtype, device) -> str:
    """The SDPA backend FastPrefill's attention gets for a `length`-token prompt (batch 1) of an LLM with this
    transformers config, in `dtype` on `device`: q and v as its strided slices of the fused q/k/v output, k
    fresh from rope. E.g. "cudnn_attention", "flash_attention", or "math" (no fused kernel: far slower)."""
    from .attention import sdpa_backend

    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    dim = _head_dim(config)
    fused = torch.empty(1, length, (heads + 2 * kv_heads) * dim, dtype=dtype, device=device)
    q, _, v = (
        t.view(1, length, -1, dim).transpose(1, 2)
        for t in fused.split([heads * dim, kv_heads * dim, kv_heads * dim], -1)
    )
    k = torch.empty(1, kv_heads, length, dim, dtype=dtype, device=device)
    return sdpa_backend(q, k, v, is_causal=True, scale=dim**-0.5, enable_gqa=heads != kv_heads)


class FastDecoder(_FastLLM):
    """`decoder(token (B, 1))` -> next-token logits (B, V): writes the token's K/V at position `pos` (a 0-d
    tensor the caller advances) of the static cache, filled up to there by a prefill, and attends over
    positions 0..pos."""

    def __init__(
        self, llm: nn.Module, cache, pos: torch.Tensor, attention: str = "sdpa", rope_offset: torch.Tensor | None = None
    ):
        if attention not in ATTENTIONS:
            raise ValueError(f"unknown decode attention {attention!r}; known: {', '.join(ATTENTIONS)}")
        super().__init__(llm, cache)
        self.attention, self.pos = attention, pos
        # M-RoPE (Qwen2-VL): a text token's three positions are equal, its cache position + the media's offset (B, 1)
        self.rope_offset, self.mrope = rope_offset, hasattr(self.rotary, "mrope_section")
        length = self.layers[0].keys.shape[2]
        if attention == "flex" and length % KV_BLOCK:
            raise ValueError(f"flex decode attention needs a cache of whole {KV_BLOCK}-position blocks, got {length}")
        self._mask = flex_block_mask(self.group, length, pos) if attention == "flex" else None

    def _attend(self, q, layer: _Layer):
        if self.attention == "sdpa":
            return _sdpa(q, layer.keys, layer.values, self.pos, self.scale)
        return _flex(q, layer.keys, layer.values, self._mask, self.scale)

    def __call__(self, token: torch.Tensor) -> torch.Tensor:
        batch, pos = token.shape[0], self.pos
        if self._mask is not None:
            filled_blocks(self._mask, pos)
        x = self.embed(token)
        positions = pos.view(1, 1).expand(batch, 1)
        if self.rope_offset is not None:
            positions = positions + self.rope_offset
        cos, sin = self.rotary(x, positions[None].expand(3, -1, -1) if self.mrope else positions)
        where = pos.view(1)
        for layer in self.layers:
            q, k, v = self._qkv(layer, x, cos, sin)
            layer.keys.index_copy_(2, where, k)
            layer.values.index_copy_(2, where, v)
            x = self._rest(layer, x, self._attend(q, layer))
        return self.lm_head(self.norm(x[:, -1]))
