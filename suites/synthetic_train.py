"""Train a tiny preset on the synthetic tasks' train split and save it as a checkpoint in the official
layout (with its tokenizer), so the accuracy suite can show that it measures something real: the trained
model scores far above chance on the held-out split, the untrained one near chance.

The loop is the training suite's (AdamW, every part learns); the loss covers the answer and the closing
<|im_end|> only. Media are preprocessed once up front (the model's tiling and normalisation).
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from nvila_bench.model import build_model, get_preset, preprocess_media
from nvila_bench.model.checkpoint import save_checkpoint
from nvila_bench.model.pipeline import Request
from nvila_bench.model.tokenizer import build_tokenizer, chat_prompt, encode_with_media
from nvila_bench.model.training import Recipe, apply_recipe, build_optimizer

from nvila_bench.core.measuring.synthetic_tasks import generate, load_split, open_media


def example_ids(cfg, tokenizer, row: dict) -> tuple[list[int], int]:
    """(prompt + answer ids, answer length) of one row: the chat prompt with its media placeholder, then the
    answer and the closing EOS (what the loss covers)."""
    video = row["kind"] == "video"
    prompt = encode_with_media(tokenizer, cfg, chat_prompt(tokenizer, row["question"], 0 if video else 1, video))
    answer = tokenizer(row["answer"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return prompt + answer, len(answer)


def example(cfg, tokenizer, data_dir, row: dict):
    """(media, prompt + answer ids, answer length) of one row, media preprocessed."""
    frames = open_media(data_dir, row)
    video = row["kind"] == "video"
    media = preprocess_media(cfg, [] if video else frames, frames if video else None)
    return media, *example_ids(cfg, tokenizer, row)


def example_request(cfg, tokenizer, data_dir, row: dict):
    """(the row as a request of the pipeline, model/pipeline.py: its image or video and its prompt + answer ids,
    the answer teacher-forced; the answer's length)."""
    frames = open_media(data_dir, row)
    video = row["kind"] == "video"
    ids, answer = example_ids(cfg, tokenizer, row)
    return Request([] if video else frames, frames if video else None, torch.tensor([ids])), answer


def examples(cfg, tokenizer, data_dir, task: str, split: str, limit: int | None = None):
    """`example` of every row of a split."""
    return [example(cfg, tokenizer, data_dir, row) for row in load_split(data_dir, task, split)[:limit]]


def train_synthetic(
    preset: str,
    data_dir: str | Path,
    tasks: list[str],
    steps: int = 200,
    batch: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
    temporal_pool: bool = True,
    log=None,
):
    """Train a fresh random-weight `preset` on the tasks' train splits; returns (model, tokenizer, losses)."""
    cfg = get_preset(preset)
    torch.manual_seed(seed)
    if not (Path(data_dir) / "manifest.json").is_file():
        generate(data_dir)
    tokenizer = build_tokenizer(cfg)
    model = apply_recipe(build_model(cfg, seed=seed).train(), Recipe.parse("full"))
    optimizer = build_optimizer(model, Recipe.parse("full"), lr=lr)
    # Rows, preprocessed when drawn: an NVILA preset's Dynamic-S2 tiles of every training image at once took
    # over 20 GB (nvila-tiny), where a step needs a batch's worth.
    pools = {task: load_split(data_dir, task, "train") for task in tasks}
    rng = random.Random(seed)
    losses = []
    for step in range(steps):
        task = tasks[step % len(tasks)]  # one task per step: rows of a task share their length
        rows = [example(cfg, tokenizer, data_dir, row) for row in rng.sample(pools[task], batch)]
        media = [m for m, _, _ in rows]
        ids = torch.tensor([r for _, r, _ in rows])
        loss = model.training_loss(media, ids, temporal_pool, answer_len=rows[0][2])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if log and (step % 25 == 0 or step == steps - 1):
            log(f"step {step:4d} {task}: loss {losses[-1]:.3f}")
    return model.eval(), tokenizer, losses


def save_trained(model, tokenizer, out_dir: str | Path) -> Path:
    """Official layout (config.json, llm/, vision_tower/, mm_projector/) plus the tokenizer in llm/."""
    out = Path(out_dir)
    save_checkpoint(model, out)
    tokenizer.save_pretrained(out / "llm")
    return out
