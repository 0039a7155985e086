"""Synthetic prompts for random-weight models (no tokenizer needed).

Media placeholders sit at the start of the user turn, followed by the question text
(docs/reference.md#prompt-and-token-assembly). Text ids are
random but reproducible; benchmark cost depends on the prompt's length, not its content.
"""

from __future__ import annotations

import torch

from .config import NVILAConfig

# Ids below this are ordinary text in every supported vocabulary (Qwen2 specials start at 151643).
FIRST_SPECIAL = 151643


def synthetic_prompt(
    cfg: NVILAConfig, num_images: int = 0, video: bool = False, text_tokens: int = 64, seed: int = 0
) -> torch.Tensor:
    """1-D prompt ids: one placeholder per image, one for the video, then `text_tokens` text ids."""
    if text_tokens < 0 or num_images < 0:
        raise ValueError("text_tokens and num_images must be >= 0")
    media = [cfg.media.image_token_id] * num_images + [cfg.media.video_token_id] * int(video)
    high = min(cfg.llm.vocab_size, FIRST_SPECIAL)
    text = torch.randint(0, high, (text_tokens,), generator=torch.Generator().manual_seed(seed))
    return torch.cat([torch.tensor(media, dtype=torch.long), text])
