"""The lmms-eval model adapter for the reference model: official weights from a checkpoint directory
(`pretrained=DIR`, tokenizer from DIR/llm) or a random-weight preset (`preset=NAME`, the project's
offline tokenizer).

Requests follow lmms-eval's "simple" model layout. `doc_to_visual` may return PIL images (one image each,
a multi-image request when several), a list of PIL frames nested in the list (a video: `[[f1, f2, ...]]`),
or video file paths (read with PyAV when installed). The prompt is the model's chat template with the media
first, as NVILA's conversation template puts them.

- generate_until: greedy decoding that stops at EOS, `max_new_tokens` (gen_kwargs, else the adapter's) or
  any `until` string.
- loglikelihood: the negative log-likelihood of the continuation (lmms-eval 0.7's multiple_choice takes
  the argmin of what models return), wrapped so the evaluator keeps the (nll, is_greedy) pair.
"""

from __future__ import annotations

import sys

import torch
from lmms_eval.api.instance import GenerationResult
from lmms_eval.api.model import lmms
from nvila_bench.model import build_model, get_preset, load_checkpoint
from nvila_bench.model.pipeline import Request, generate, loglikelihood, media_blocks
from nvila_bench.model.tokenizer import chat_prompt, encode_with_media, load_tokenizer
from PIL import Image
from tqdm import tqdm

from nvila_bench.core.measuring.point import canonical_dtype


class NVILABench(lmms):
    is_simple = True

    def __init__(
        self,
        pretrained: str | None = None,
        preset: str | None = None,
        device: str = "cpu",
        dtype: str | None = None,
        temporal_pool: bool | str = True,
        max_new_tokens: int = 32,
        attn: str = "sdpa",
        **kwargs,
    ):
        super().__init__()
        if bool(pretrained) == bool(preset):
            raise ValueError("nvila_bench needs exactly one of pretrained=CHECKPOINT_DIR or preset=NAME")
        device = "cuda" if str(device).startswith("cuda") and torch.cuda.is_available() else "cpu"
        torch_dtype = getattr(torch, canonical_dtype(dtype or ("bfloat16" if device == "cuda" else "float32")))
        if pretrained:
            model = load_checkpoint(pretrained, dtype=torch_dtype, device=device, attn_implementation=attn)
        else:
            model = build_model(get_preset(preset), torch_dtype, device, attn)
        # Held in a dict, not as an nn.Module attribute: lmms-eval's clean() deletes those after each
        # simple_evaluate, and the accuracy suite evaluates task by task with one model.
        self._held = {"model": model.eval()}
        self.tokenizer = load_tokenizer(pretrained, self.vlm.config)
        self.temporal_pool = str(temporal_pool).lower() not in ("false", "0", "no")
        self.max_new_tokens = int(max_new_tokens)
        self.name = pretrained or preset

    @property
    def vlm(self):
        return self._held["model"]

    # ---- helpers ------------------------------------------------------------------------------------------
    def _media(self, visuals) -> tuple[list[Image.Image], list[Image.Image] | None]:
        images, video = [], None
        for v in visuals or []:
            if isinstance(v, Image.Image):
                images.append(v.convert("RGB"))
            elif isinstance(v, (list, tuple)):
                video = [f.convert("RGB") for f in v]
            elif isinstance(v, str):
                video = _read_video(v, self.vlm.config.media.num_video_frames)
            else:
                raise ValueError(f"nvila_bench: unsupported visual {type(v).__name__}")
        return images, video

    def _context(self, request) -> tuple[list, list[int]]:
        context, _, doc_to_visual, doc_id, task, split = request.args
        images, video = self._media(doc_to_visual(self.task_dict[task][split][doc_id]))
        text = chat_prompt(self.tokenizer, context, len(images), video is not None)
        ids = encode_with_media(self.tokenizer, self.vlm.config, text)
        with torch.inference_mode():
            blocks = (
                media_blocks(self.vlm, Request(images, video, torch.tensor([ids]), self.temporal_pool))
                if images or video
                else []
            )
        return blocks, ids

    # ---- lmms-eval API -----------------------------------------------------------------------------------
    def generate_until(self, requests) -> list[str]:
        out = []
        for request in tqdm(
            requests, desc="nvila_bench generate", disable=len(requests) < 2 or not sys.stderr.isatty()
        ):
            gen_kwargs = dict(request.args[1] or {})
            blocks, ids = self._context(request)
            eos = self.tokenizer.eos_token_id
            embeds = self.vlm.embed(torch.tensor([ids]), blocks)
            new = generate(self.vlm, embeds, int(gen_kwargs.get("max_new_tokens") or self.max_new_tokens), eos=eos)[
                0
            ].tolist()
            new = new[: new.index(eos)] if eos in new else new  # the text ends before EOS
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            until = gen_kwargs.get("until") or []
            for stop in [until] if isinstance(until, str) else until:
                if stop:
                    text = text.split(stop)[0]
            out.append(text.strip())
        return out

    def loglikelihood(self, requests) -> list:
        out = []
        cache: dict = {}
        for request in tqdm(
            requests, desc="nvila_bench loglikelihood", disable=len(requests) < 2 or not sys.stderr.isatty()
        ):
            _, continuation, _, doc_id, task, split = request.args
            key = (task, split, doc_id, request.args[0])
            if key not in cache:  # the choices of one question share its media and context
                cache.clear()
                cache[key] = self._context(request)
            blocks, ids = cache[key]
            cont = self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
            logp, greedy = loglikelihood(self.vlm, blocks, ids, cont)
            out.append(GenerationResult(text=(-logp, greedy)))
        return out

    def generate_until_multi_round(self, requests):
        raise NotImplementedError("nvila_bench: multi-round generation is not supported")


def _read_video(path: str, frames: int) -> list[Image.Image]:
    """`frames` evenly spaced frames of a video file (PyAV), as upstream samples them."""
    try:
        import av
    except ImportError:
        raise ValueError(f"reading video {path} needs PyAV: pip install av") from None
    with av.open(path) as container:
        decoded = [f.to_image() for f in container.decode(video=0)]
    if not decoded:
        raise ValueError(f"{path}: no video frames")
    step = len(decoded) / frames
    return [decoded[min(int(i * step), len(decoded) - 1)] for i in range(frames)]
