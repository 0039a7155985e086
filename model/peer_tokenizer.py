"""A tokenizer for a random-weight peer checkpoint, built offline: transformers' own `Qwen2Tokenizer` (the class all
three peers publish) over a byte-level vocabulary, every id below the config's vocabulary size.

The published tokenizers are Qwen2's 151k-entry BPE; a tiny stand-in's vocabulary has 512 entries, so this one keeps
the 256 byte tokens (no merges: one token per byte) and puts the peer's special tokens at its config's ids:

    Qwen2-VL, Qwen2.5-VL   <|im_end|> (EOS), <|vision_start|>, <|vision_end|>, <|vision_pad|>, <|image_pad|>,
                           <|video_pad|>: config.json's eos_token_id, vision_*_token_id, image_token_id, video_token_id
    LLaVA-OneVision        <|im_end|> (EOS), <image>, <video>: image_token_index, video_token_index

The chat templates are the published processors' (Qwen/Qwen2-VL-7B-Instruct's chat_template.json; for LLaVA-OV
llava-hf/llava-onevision-qwen2-7b-ov-hf's, with a string content rendered as its tokenizer's Qwen2 template does),
so lmms-eval's adapters prompt a saved stand-in as they prompt the real checkpoint.
"""

from __future__ import annotations

from .peer_config import PeerConfig

PAD, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
QWEN_TOKENS = {  # config.json key -> the published token
    "vision_start_token_id": "<|vision_start|>",
    "vision_end_token_id": "<|vision_end|>",
    "vision_token_id": "<|vision_pad|>",
    "image_token_id": "<|image_pad|>",
    "video_token_id": "<|video_pad|>",
}
LLAVA_OV_TOKENS = {"image_token_index": "<image>", "video_token_index": "<video>"}

QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAVA_OV_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['content'] is string %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% else %}"
    "{{ '<|im_start|>' + message['role'] + ' ' }}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\n' + content['text'] }}"
    "{% endfor %}{{ '<|im_end|>' }}{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def special_tokens(cfg: PeerConfig) -> dict[int, str]:
    """id -> token for EOS and the media tokens, at the ids the config gives them."""
    hf = cfg.hf_config
    names = QWEN_TOKENS if cfg.kind != "llava-onevision" else LLAVA_OV_TOKENS
    out = {cfg.llm.eos_token_id: IM_END}
    for key, token in names.items():
        if hf.get(key) is not None:
            out[int(hf[key])] = token
    if len(out) != 1 + sum(hf.get(k) is not None for k in names):
        raise ValueError(f"{cfg.name}: two special tokens share an id in config.json")
    return out


def build_peer_tokenizer(cfg: PeerConfig):
    """transformers' Qwen2Tokenizer for `cfg`: byte-level, the special tokens at the config's ids, the family's chat
    template. ValueError where the vocabulary cannot hold them."""
    from tokenizers import pre_tokenizers
    from transformers import Qwen2Tokenizer

    fixed = special_tokens(cfg)
    size = cfg.llm.vocab_size
    vocab = {token: i for i, token in fixed.items()}
    free = (i for i in range(size) if i not in fixed)
    for token in [PAD, IM_START, *sorted(pre_tokenizers.ByteLevel.alphabet())]:
        vocab[token] = next(free, size)
    if max(vocab.values()) >= size or max(fixed) >= size:
        raise ValueError(f"{cfg.name}: a vocabulary of {size} cannot hold 256 byte tokens and the special tokens")
    extra = [IM_START, *(t for t in fixed.values() if t != IM_END)]
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        unk_token=None,
        eos_token=IM_END,
        pad_token=PAD,
        extra_special_tokens=extra,
        model_max_length=cfg.llm.max_position_embeddings,
    )
    tokenizer.chat_template = LLAVA_OV_CHAT_TEMPLATE if cfg.kind == "llava-onevision" else QWEN_CHAT_TEMPLATE
    return tokenizer
