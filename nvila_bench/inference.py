"""Scoring and generation for the accuracy path, on top of the model's stage API: the log-likelihood of a
continuation (multiple-choice tasks) and greedy generation that stops at EOS (free-form tasks)."""

from __future__ import annotations

import torch

from nvila_bench.model import preprocess_media


@torch.inference_mode()
def media_blocks(model, images, video, temporal_pool: bool = True):
    media = preprocess_media(model.config, list(images), video)
    return model.project(model.encode_media(media), media, temporal_pool)


@torch.inference_mode()
def loglikelihood(model, blocks, context_ids: list[int], continuation_ids: list[int]) -> tuple[float, bool]:
    """(sum of log p(continuation | media, context), whether greedy decoding would produce it)."""
    if not continuation_ids:
        raise ValueError("empty continuation")
    ids = torch.tensor([context_ids + continuation_ids])
    logits = model.forward_logits(model.embed(ids, blocks))[0].float()
    n = len(continuation_ids)
    # Positions after media expansion: the continuation is the last n positions; position i predicts i + 1.
    preds = logits[-n - 1 : -1].log_softmax(-1)
    target = torch.tensor(continuation_ids, device=preds.device)
    logp = preds.gather(1, target[:, None]).sum().item()
    greedy = bool((preds.argmax(-1) == target).all())
    return logp, greedy


@torch.inference_mode()
def generate_ids(model, blocks, context_ids: list[int], max_new_tokens: int, eos_id: int | None) -> list[int]:
    """Greedy tokens after the context, stopping at EOS (not included) or after max_new_tokens."""
    embeds = model.embed(torch.tensor([context_ids]), blocks)
    pre = model.prefill(embeds)
    token = pre.logits.argmax(-1, keepdim=True)
    out = []
    for _ in range(max_new_tokens):
        t = int(token)
        if eos_id is not None and t == eos_id:
            break
        out.append(t)
        token = model.decode_step(token, pre.cache).argmax(-1, keepdim=True)
    return out
