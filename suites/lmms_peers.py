"""A peer VLM's checkpoint scored through lmms-eval's own model adapter for its family, so that NVILA's and the peers'
scores come from one harness, on the same tasks and task functions.

| kind | lmms-eval model | model class | weights' dtype |
|---|---|---|---|
| qwen2-vl | `qwen2_vl` | Qwen2VLForConditionalGeneration | the checkpoint's (torch_dtype="auto") |
| qwen2.5-vl | `qwen2_5_vl` | Qwen2_5_VLForConditionalGeneration | bfloat16, always |
| llava-onevision | `llava_hf` | LlavaOnevisionForConditionalGeneration | the run's (dtype=) |

Each is lmms-eval's "simple" adapter (doc_to_visual + doc_to_text, as `nvila_bench`'s), built once per checkpoint from
the directory (`pretrained=DIR`: AutoProcessor, AutoTokenizer, from_pretrained); no adapter takes a built model, so a
random-weight preset, which has no tokenizer, cannot be scored.

They score generate_until tasks only: multiple-choice tasks need the adapter's loglikelihood, which the Qwen adapters
do not implement, and llava_hf's runs the processor on the prompt without its image to find where the answer starts:
transformers 5.25 refuses that ("<image> tokens in the text but no images"), and where it is allowed the prompt is
not expanded to the image's tokens, so the masked part is too short and the loss counts prompt tokens.

What the adapters need beyond lmms-eval's evaluator: decord (each imports it at the top), a torchvision that imports
(transformers' Qwen2VLProcessor and LlavaOnevisionProcessor each hold a video processor, and every video processor in
transformers runs on torchvision), and for Qwen qwen-vl-utils (`process_vision_info`, which imports torchvision).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path


@dataclass(frozen=True)
class Family:
    model: str  # lmms-eval's model name
    processor: str  # transformers' processor class AutoProcessor loads
    choices: str  # why the adapter cannot score a multiple-choice task
    dtype: str | None  # the dtype the adapter always loads; None: the run's ("checkpoint": config.json's)
    needs: tuple[str, ...] = ("torchvision", "decord")


QWEN_NEEDS = ("torchvision", "decord", "qwen_vl_utils")
NO_LOGLIKELIHOOD = "multiple choice needs loglikelihood, which the adapter does not implement"
PROMPT_WITHOUT_IMAGE = "multiple choice: the adapter's loglikelihood runs the processor on the prompt without its image"
FAMILIES = {
    "qwen2-vl": Family("qwen2_vl", "Qwen2VLProcessor", NO_LOGLIKELIHOOD, "checkpoint", QWEN_NEEDS),
    "qwen2.5-vl": Family("qwen2_5_vl", "Qwen2_5_VLProcessor", NO_LOGLIKELIHOOD, "bfloat16", QWEN_NEEDS),
    "llava-onevision": Family("llava_hf", "LlavaOnevisionProcessor", PROMPT_WITHOUT_IMAGE, None),
}
WHY = {
    "torchvision": "transformers' {processor} holds a video processor, and transformers' video processors run on "
    "torchvision: install the torchvision built for this torch",
    "decord": "lmms-eval's {model} adapter imports decord: pip install decord",
    "qwen_vl_utils": "lmms-eval's {model} adapter prepares images with qwen-vl-utils' process_vision_info: "
    "pip install qwen-vl-utils (it imports torchvision)",
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json")


def harness_missing(kind: str) -> str | None:
    """Why lmms-eval's adapter for `kind` cannot run on this machine (the first module that does not import, the error
    and what to install), or None."""
    family = FAMILIES[kind]
    for module in family.needs:
        try:
            import_module(module)
        except Exception as e:  # a torchvision built for another torch raises RuntimeError, not ImportError
            error = str(e).strip().splitlines()[0] if str(e).strip() else ""
            why = WHY[module].format(processor=family.processor, model=family.model)
            return f"{module} does not import ({type(e).__name__}: {error[:120]}); {why}"
    return None


def checkpoint_dtype(checkpoint: str | Path) -> str:
    """The dtype transformers' torch_dtype="auto" loads: config.json's dtype (torch_dtype before transformers 5)."""
    config = json.loads((Path(checkpoint) / "config.json").read_text())
    dtype = config.get("dtype") or config.get("torch_dtype") or "float32"
    return str(dtype).removeprefix("torch.")


def adapter_dtype(kind: str, checkpoint: str | Path, asked: str | None, device: str) -> str:
    """The dtype the family's adapter loads the weights in; ValueError where the run asks another it cannot take."""
    rule = FAMILIES[kind].dtype
    if rule is None:
        return asked or ("bfloat16" if device.startswith("cuda") else "float32")
    fixed = checkpoint_dtype(checkpoint) if rule == "checkpoint" else rule
    if asked is not None and asked != fixed:
        how = f"in the checkpoint's own dtype ({fixed})" if rule == "checkpoint" else f"in {rule} always"
        model = FAMILIES[kind].model
        raise ValueError(f"lmms-eval's {model} adapter loads weights {how}: drop --dtype {asked}")
    return fixed


def model_args(kind: str, checkpoint: str, device: str, dtype: str) -> dict:
    """The keyword arguments of the family's lmms-eval adapter (its `--model_args`): the directory, the run's device,
    one process (no device_map="auto"), and the dtype where the adapter takes one."""
    args = {"pretrained": str(checkpoint), "device": device, "device_map": device}  # llava_hf's default "" fails
    return args | ({"dtype": dtype} if kind == "llava-onevision" else {})


def has_tokenizer(checkpoint: str | Path) -> bool:
    return any((Path(checkpoint) / name).is_file() for name in TOKENIZER_FILES)


def build_adapter(kind: str, checkpoint: str, device: str, dtype: str):
    """lmms-eval's simple adapter for `kind`, built as its CLI builds it from --model_args."""
    from lmms_eval.models import get_model

    return get_model(FAMILIES[kind].model, force_simple=True)(**model_args(kind, checkpoint, device, dtype))


def held_modules(adapter) -> dict:
    """The adapter's nn.Module attributes. lmms-eval's `clean()` deletes them after each simple_evaluate; the accuracy
    suite evaluates task by task with one adapter, so it puts them back before each task."""
    import torch

    return {k: v for k, v in vars(adapter).items() if isinstance(v, torch.nn.Module)}


def token_config(kind: str, checkpoint: str, adapter):
    """The checkpoint's PeerConfig as the adapter preprocesses: the Qwen adapters pass their own min / max pixels
    (lmms-eval's defaults) to the processor, over the checkpoint's."""
    from dataclasses import replace

    from nvila_bench.model.peer_checkpoint_config import peer_config_from_checkpoint

    cfg = peer_config_from_checkpoint(checkpoint)
    if kind == "llava-onevision":
        return cfg
    pixels = {"min_pixels": int(adapter.min_pixels), "max_pixels": int(adapter.max_pixels)}
    return replace(cfg, image_processor=cfg.image_processor | pixels)
