"""Tokenizers for the accuracy path. A checkpoint directory brings its own (`llm/` in the official layout);
random-weight and tiny presets get one the project builds here, offline: a word-level tokenizer
(HF `tokenizers`, wrapped as a transformers PreTrainedTokenizerFast) whose vocabulary fits the preset's,
with the preset's EOS and newline ids where the model expects them, and a Qwen2-style chat template.
"""

from __future__ import annotations

from pathlib import Path

from nvila_bench.model.config import NVILAConfig

IM_START, IM_END, PAD = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
WORDS = (
    "system user assistant you are a helpful . , ? : ! ' the what which how many is are there of in on colour color "
    "largest object shape shapes frame frames contains square answer with one word number image video red green blue "
    "yellow circle triangle 0 1 2 3 4 5 6 7 8 9 10 yes no and or not it this that to describe picture"
).split()
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SYSTEM = "You are a helpful assistant."


def build_tokenizer(cfg: NVILAConfig):
    """A tokenizer for a random-weight preset: every id below the preset's vocabulary size."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    llm = cfg.llm
    fixed = {llm.eos_token_id: IM_END, llm.newline_token_id: "\n"}
    if llm.bos_token_id is not None:
        fixed[llm.bos_token_id] = "<s>"
    names = [PAD, IM_START, "[UNK]", *WORDS]
    vocab = {tok: i for i, tok in fixed.items()}
    free = (i for i in range(llm.vocab_size) if i not in fixed)
    for name in names:
        if name not in vocab:
            vocab[name] = next(free)
    if len(vocab) > llm.vocab_size or max(vocab.values()) >= llm.vocab_size:
        raise ValueError(f"{cfg.name}: vocabulary of {llm.vocab_size} is too small for the built-in tokenizer")
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\n"), behavior="isolated"),
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Punctuation(),
        ]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins words with spaces
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=PAD,
        unk_token="[UNK]",
        additional_special_tokens=[IM_START],
        model_max_length=1 << 20,
    )
    fast.add_tokens(["\n"])  # matched before pre-tokenization, so it survives WhitespaceSplit
    fast.chat_template = CHAT_TEMPLATE
    return fast


def load_tokenizer(checkpoint: str | Path | None, cfg: NVILAConfig):
    """The checkpoint's tokenizer (official layout: `llm/`, else the directory itself), or the built one."""
    if checkpoint is None:
        return build_tokenizer(cfg)
    import json

    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    root = Path(checkpoint)
    for folder in (root / "llm", root):
        if (folder / "tokenizer_config.json").is_file() or (folder / "tokenizer.json").is_file():
            config = folder / "tokenizer_config.json"
            saved = json.loads(config.read_text()).get("tokenizer_class") if config.is_file() else None
            if saved in ("TokenizersBackend", "PreTrainedTokenizerFast"):
                # The project's own word-level tokenizer (a trained tiny checkpoint): AutoTokenizer would pick
                # the LLM's class from config.json (Qwen2Tokenizer) and rebuild a BPE without our words.
                return PreTrainedTokenizerFast.from_pretrained(folder, local_files_only=True)
            return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    raise ValueError(f"{root}: no tokenizer (tokenizer.json / tokenizer_config.json in llm/ or the directory itself)")


IMAGE_MARK, VIDEO_MARK = "<image>", "<video>"


def chat_prompt(tokenizer, question: str, n_images: int = 0, video: bool = False) -> str:
    """The user turn with one <image> mark per image (and <video>) before the question, as NVILA's
    conversation template puts media first, rendered with the tokenizer's chat template."""
    media = IMAGE_MARK * n_images + (VIDEO_MARK if video else "")
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"{media}\n{question}" if media else question},
    ]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_with_media(tokenizer, cfg: NVILAConfig, text: str) -> list[int]:
    """Token ids of `text` with each <image> / <video> mark replaced by the model's placeholder id."""
    import re

    ids: list[int] = []
    for piece in re.split(f"({re.escape(IMAGE_MARK)}|{re.escape(VIDEO_MARK)})", text):
        if piece == IMAGE_MARK:
            ids.append(cfg.media.image_token_id)
        elif piece == VIDEO_MARK:
            ids.append(cfg.media.video_token_id)
        elif piece:
            ids.extend(tokenizer(piece, add_special_tokens=False)["input_ids"])
    return ids
