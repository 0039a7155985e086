"""A peer VLM's checkpoint scored through lmms-eval's own adapter for its family (suites/lmms_peers.py): the tiny
checkpoint's tokenizer and processor files, the adapters' arguments, the refusals, and, where the adapters can run
(a torchvision that imports, decord, qwen-vl-utils for Qwen), `run accuracy --checkpoint DIR` end to end."""

import inspect
import json
import sys

import pytest

lmms_eval = pytest.importorskip("lmms_eval", reason="lmms-eval not installed (make test installs it)")

from nvila_bench.model.peer_checkpoint import save_peer_checkpoint  # noqa: E402
from nvila_bench.model.peer_checkpoint_config import peer_config_from_checkpoint  # noqa: E402
from nvila_bench.model.peer_config import PEER_PRESETS  # noqa: E402
from nvila_bench.model.peer_model import HF_CLASSES, build_peer  # noqa: E402
from nvila_bench.model.peer_tokenizer import build_peer_tokenizer, special_tokens  # noqa: E402
from nvila_bench.suites import lmms_peers  # noqa: E402

from nvila_bench.cli import main  # noqa: E402
from nvila_bench.core.measuring.synthetic_tasks import generate  # noqa: E402

CONFIGS = {cfg.name: cfg for cfg in PEER_PRESETS}
TINY = ["qwen2-vl-tiny", "qwen2.5-vl-tiny", "llava-onevision-tiny"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Each tiny peer saved as transformers saves it, with its tokenizer and chat template."""
    root = tmp_path_factory.mktemp("peers")
    out = {}
    for name in TINY:
        cfg = CONFIGS[name]
        out[name] = save_peer_checkpoint(build_peer(cfg), root / name, tokenizer=build_peer_tokenizer(cfg))
    return out


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synthetic"), splits={"train": 4, "validation": 2, "test": 8})


def records(path) -> list[dict]:
    return [json.loads(line) for line in (path / "results.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", TINY)
def test_the_saved_tokenizer_puts_the_peers_tokens_at_its_config_ids(name, checkpoints):
    from transformers import AutoTokenizer, Qwen2Tokenizer

    cfg = CONFIGS[name]
    tokenizer = AutoTokenizer.from_pretrained(checkpoints[name])
    assert isinstance(tokenizer, Qwen2Tokenizer)  # the class the published peers declare
    qwen = ["<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
    expected = qwen if cfg.kind != "llava-onevision" else ["<|im_end|>", "<image>", "<video>"]
    assert sorted(special_tokens(cfg).values()) == sorted(expected)
    for token_id, token in special_tokens(cfg).items():
        assert tokenizer.convert_tokens_to_ids(token) == token_id
        assert tokenizer(token, add_special_tokens=False)["input_ids"] == [token_id]  # one token, never split
    image = "<|image_pad|>" if cfg.kind != "llava-onevision" else "<image>"
    assert tokenizer.convert_tokens_to_ids(image) == cfg.image_token_id
    assert tokenizer.eos_token_id == cfg.llm.eos_token_id
    text = "What colour is the largest object? Answer with one word.\n"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text and max(ids) < cfg.llm.vocab_size


def test_the_chat_templates_place_the_media_as_the_adapters_prompt_them(checkpoints):
    """qwen2_vl / qwen2_5_vl render a content list (image, then text) through the processor's template; llava_hf puts
    "<image>" in a string content and renders it through the tokenizer's."""
    from transformers import AutoTokenizer

    qwen = AutoTokenizer.from_pretrained(checkpoints["qwen2-vl-tiny"])
    user = [{"type": "image", "image": "x"}, {"type": "text", "text": "Which?"}]
    messages = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": user}]
    assert qwen.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>Which?<|im_end|>\n<|im_start|>assistant\n"
    )
    llava = AutoTokenizer.from_pretrained(checkpoints["llava-onevision-tiny"])
    messages = [{"role": "user", "content": "<image>\nWhich?"}]
    prompt = llava.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\n<image>\nWhich?<|im_end|>\n<|im_start|>assistant\n"


def test_the_checkpoint_holds_the_processor_settings_it_was_built_with(checkpoints):
    for name in TINY:
        cfg, read = CONFIGS[name], peer_config_from_checkpoint(checkpoints[name])
        assert read.kind == cfg.kind and read.image_processor == cfg.image_processor
    processor = json.loads((checkpoints["llava-onevision-tiny"] / "processor_config.json").read_text())
    assert processor["num_image_tokens"] == 729 and processor["vision_feature_select_strategy"] == "full"


@pytest.mark.parametrize("kind", list(lmms_peers.FAMILIES))
def test_the_model_args_are_the_adapters_own_parameters(kind, tmp_path):
    """lmms-eval's simple adapters assert they got no other keyword."""
    pytest.importorskip("decord", reason="lmms-eval's adapters import decord (make test installs it)")
    from lmms_eval.models import get_model

    family = lmms_peers.FAMILIES[kind]
    adapter = get_model(family.model, force_simple=True)
    assert adapter.is_simple and adapter.__module__ == f"lmms_eval.models.simple.{family.model}"
    params = inspect.signature(adapter.__init__).parameters
    args = lmms_peers.model_args(kind, str(tmp_path), "cpu", "float32")
    assert set(args) <= set(params) and args["pretrained"] == str(tmp_path) and args["device_map"] == "cpu"
    assert ("dtype" in args) == (family.dtype is None)  # only llava_hf takes a dtype
    assert HF_CLASSES[kind][1] in inspect.getsource(inspect.getmodule(adapter))  # the family's transformers class


REFUSED = [
    ("--preset qwen2-vl-tiny --tasks synthetic", "a peer VLM is scored from a checkpoint"),
    ("--checkpoint {qwen2-vl-tiny} --tasks synthetic_colour", "qwen2_vl adapter cannot score synthetic_colour"),
    ("--checkpoint {llava-onevision-tiny} --tasks synthetic_count", "llava_hf adapter cannot score synthetic_count"),
    ("--checkpoint {qwen2.5-vl-tiny} --tasks synthetic_colour_gen --dtype float32", "in bfloat16 always"),
    ("--checkpoint {qwen2-vl-tiny} --tasks synthetic_colour_gen --dtype bfloat16", "own dtype (float32)"),
    ("--checkpoint {llava-onevision-tiny} --tasks synthetic --no-temporal-pool", "no temporal pooling"),
    ("--checkpoint {no-tokenizer} --tasks synthetic", "no tokenizer"),
]


@pytest.mark.parametrize("args,message", REFUSED)
def test_what_a_peers_adapter_cannot_do_is_refused_in_one_line(args, message, checkpoints, tmp_path, capsys):
    bare = save_peer_checkpoint(build_peer(CONFIGS["qwen2-vl-tiny"]), tmp_path / "bare")
    paths = {f"{{{name}}}": str(path) for name, path in checkpoints.items()} | {"{no-tokenizer}": str(bare)}
    args = [paths.get(a, a) for a in args.split()]
    capsys.readouterr()  # the progress bar of the bare checkpoint's save
    assert main(["run", "accuracy", *args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nvila-bench: error:") and message in err[0], err
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_a_machine_without_the_adapters_packages_is_refused_in_one_line(checkpoints, monkeypatch, tmp_path, capsys):
    """Here torchvision is not installed (or cannot import); elsewhere it is hidden: either way one line, exit 2."""
    monkeypatch.setitem(sys.modules, "torchvision", None)  # `import torchvision` raises ImportError
    for name in TINY:
        reason = lmms_peers.harness_missing(CONFIGS[name].kind)
        assert reason.startswith("torchvision does not import") and "video processor" in reason
        args = ["--checkpoint", str(checkpoints[name]), "--tasks", "synthetic_colour_gen", "--out", str(tmp_path)]
        code = main(["run", "accuracy", *args])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "cannot run here: torchvision does not import" in err[0], err


@pytest.mark.parametrize("name", TINY)
def test_a_peer_checkpoint_is_scored_by_lmms_evals_own_adapter(name, checkpoints, data_dir, tmp_path, monkeypatch):
    """`run accuracy --checkpoint DIR`: lmms-eval's adapter of the family loads the directory (AutoProcessor,
    AutoTokenizer, from_pretrained) and generates; each prompt carries the image's tokens the record counts."""
    cfg = CONFIGS[name]
    missing = lmms_peers.harness_missing(cfg.kind)
    if missing:
        pytest.skip(f"lmms-eval's {lmms_peers.FAMILIES[cfg.kind].model} adapter cannot run here: {missing}")
    import transformers

    hf_class = getattr(transformers, HF_CLASSES[cfg.kind][1])
    prompts = []
    original = hf_class.generate

    def spy(self, *args, **kwargs):  # what the adapter hands transformers' generate
        prompts.append(kwargs["input_ids"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(hf_class, "generate", spy)
    out = tmp_path / "out"
    args = ["--checkpoint", str(checkpoints[name]), "--tasks", "synthetic", "--limit", "4", "--data-dir", str(data_dir)]
    code = main(["run", "accuracy", *args, "--out", str(out), "--quiet"])
    assert code in (0, None)
    (record,) = records(out)  # "synthetic" for a peer: the tasks its adapter can score
    metrics, config = record["metrics"], record["config"]
    assert record["status"] == "ok" and config["task"] == "synthetic_colour_gen"
    assert 0 <= metrics["score"]["value"] <= 1 and metrics["n"]["value"] == 4
    assert metrics["metric"]["value"] == "exact_match"
    assert config["extra"]["lmms_model"] == lmms_peers.FAMILIES[cfg.kind].model and config["family"] == "peer"
    assert config["dtype"] == ("bfloat16" if cfg.kind == "qwen2.5-vl" else "float32")
    assert len(prompts) == 4
    placed = [int((ids == cfg.image_token_id).sum()) for ids in prompts]
    # The 96 x 96 image: LLaVA-OV's one 384-px crop (729 + 27 newlines) and base view (729); Qwen at lmms-eval's
    # min / max pixels, not the checkpoint's: 84 x 84 for qwen2_vl (3 x 3 merged patches), 448 x 448 for qwen2_5_vl.
    visual = {"llava-onevision": 1485, "qwen2-vl": 9, "qwen2.5-vl": 256}[cfg.kind]
    assert placed == [visual] * 4
    assert metrics["media_tokens"]["value"] == visual + (0 if cfg.kind == "llava-onevision" else 2)  # vision_start/end
