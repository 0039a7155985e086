"""A peer VLM's optimizer step (model/peer_training.py): transformers' own forward with labels on a batch of tiny-peer
samples, against the peer's inference pipeline, FlopCounterMode and the train suite's record and refusals."""

import json
from dataclasses import replace

import pytest
import torch
from nvila_bench.model import build_model, get_preset
from nvila_bench.model.peer_params import peer_param_counts
from nvila_bench.model.peer_training import IGNORE_INDEX, peer_batch, peer_labels, peer_parts
from nvila_bench.model.pipeline import peer_request
from nvila_bench.model.recipes import flop_modes
from nvila_bench.model.stages import TRAIN_STAGES
from nvila_bench.model.training import (
    Recipe,
    apply_recipe,
    build_optimizer,
    loss_of,
    synthetic_batch,
    train_step,
    trainable_counts,
)
from nvila_bench.suites.train import prepare, settings
from torch.utils.flop_counter import FlopCounterMode

from nvila_bench.cli import main
from nvila_bench.core.analysis import costmodel
from nvila_bench.core.measuring.point import BenchPoint

TINY_PEERS = ["qwen2-vl-tiny", "qwen2.5-vl-tiny", "llava-onevision-tiny"]
FAST = ["--warmup", "0", "--repeats", "1", "--min-seconds", "0", "--quiet"]


def peer(name: str, stage: str = "full", attn: str = "sdpa"):
    return apply_recipe(build_model(get_preset(name), attn_implementation=attn).train(), Recipe.parse(stage))


class Laps:
    """A `section` that records the order the stages end in."""

    def __init__(self):
        self.names = []

    def __call__(self, name):
        import contextlib

        @contextlib.contextmanager
        def section():
            yield
            self.names.append(name)

        return section()


@pytest.mark.parametrize("name", TINY_PEERS)
def test_one_step_learns_every_part_in_stage_order(name):
    """Batch 2 of 448x448 images: a finite loss, a gradient for every parameter that learns (and only those), the
    weights moved by AdamW, and the laps vision, projector, llm_forward, backward, optimizer in that order."""
    model = peer(name)
    point = BenchPoint(preset=name, images=((448, 448),), prompt_tokens=4, batch_size=2)
    batch = synthetic_batch(point)
    assert batch.rows == 2 and not torch.equal(batch.inputs["input_ids"][0], batch.inputs["input_ids"][1])
    optimizer = build_optimizer(model, Recipe.parse("full"))
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    laps, grads = Laps(), {}
    learning = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    hooks = [
        p.register_post_accumulate_grad_hook(lambda p, n=n: grads.__setitem__(n, float(p.grad.abs().sum())))
        for n, p in learning
    ]
    loss = train_step(model, [batch], optimizer, laps)
    for hook in hooks:
        hook.remove()
    assert torch.isfinite(torch.tensor(loss)) and 4 < loss < 8  # about ln(512) = 6.2 for random weights
    assert laps.names == list(TRAIN_STAGES)
    assert set(grads) == set(before) and all(g > 0 for g in grads.values())
    moved = [n for n, p in model.named_parameters() if n in before and not torch.equal(p, before[n])]
    assert set(moved) == set(before)


def test_stages_choose_what_learns():
    """projector: Qwen's merger only (inside `visual`); projector-llm: and the LLM; full: everything that runs
    (LLaVA-OV never reads SigLIP's post_layernorm)."""
    counts = {stage: trainable_counts(peer("qwen2-vl-tiny", stage)) for stage in ("projector", "projector-llm", "full")}
    model = peer("qwen2-vl-tiny", "projector")
    merger = sum(p.numel() for p in model.hf.model.visual.merger.parameters())
    assert counts["projector"] == {"vision": 0, "projector": merger, "llm": 0, "total": merger}
    assert counts["projector-llm"]["vision"] == 0 and counts["projector-llm"]["llm"] == model.param_counts()["llm"]
    assert counts["full"]["total"] == model.param_counts()["total"]
    llava = peer("llava-onevision-tiny")
    frozen = [n for n, p in llava.named_parameters() if not p.requires_grad]
    assert frozen and all("post_layernorm" in n for n in frozen)
    assert sum(map(len, peer_parts(llava).values())) == len(list(llava.parameters()))


def test_a_peer_trains_the_stages_not_the_recipes():
    with pytest.raises(
        ValueError, match="a peer VLM trains the stages projector, projector-llm, full, not the recipe 'nvila'"
    ):
        peer("qwen2-vl-tiny", "nvila")


SAMPLES = [
    ("qwen2-vl-tiny", ((448, 448), (320, 240))),
    ("qwen2.5-vl-tiny", ((448, 448),)),
    ("llava-onevision-tiny", ((320, 240), (200, 300))),  # several images: one 384-px view each
]


@pytest.mark.parametrize("name,images", SAMPLES)
def test_loss_equals_the_inference_pipeline(name, images):
    """The training loss (one batched forward of transformers with labels, split into stages) equals the
    cross-entropy of the text tokens from the peer's own inference path, each sample on its own: its media blocks,
    embed (placement, M-RoPE) and forward_logits."""
    cfg = get_preset(name)
    model = build_model(cfg)
    requests = [peer_request(cfg, images, None, 6, 1, seed) for seed in (0, 100)]
    batch = peer_batch(cfg, requests)
    labels = batch.inputs["labels"]
    assert (labels != IGNORE_INDEX).sum(1).tolist() == [6, 6]  # the text tokens; every media position ignored
    with torch.no_grad():
        loss = loss_of(model, batch, section=Laps())
    total, count = 0.0, 0
    for request in requests:
        with torch.inference_mode():
            logits = model.forward_logits(model.embed(request.input_ids, model.media_blocks(request)))[0]
        target = peer_labels(cfg, request.input_ids)[0, 1:]
        total += torch.nn.functional.cross_entropy(logits[:-1], target, reduction="sum").item()
        count += int((target != IGNORE_INDEX).sum())
    assert loss.item() == pytest.approx(total / count, rel=1e-5)


@pytest.mark.parametrize("name", TINY_PEERS)
@pytest.mark.parametrize("stage", ["full", "projector-llm", "projector"])
def test_step_flops_equal_flop_counter(name, stage):
    """The cost model's FLOPs of a step (forward + backward) against FlopCounterMode under eager attention."""
    cfg = get_preset(name)
    model = peer(name, stage, attn="eager")
    images = ((448, 448),) if stage == "full" and name != "llava-onevision-tiny" else ((320, 240),)  # LLaVA: 2 views
    batch = synthetic_batch(BenchPoint(preset=name, images=images, prompt_tokens=8, batch_size=2))
    with FlopCounterMode(display=False) as counter:
        loss_of(model, batch).backward()
    analytic = costmodel.train_step_flops(cfg, flop_modes(Recipe.parse(stage)), images, prompt_tokens=8, batch=2)
    assert abs(analytic - counter.get_total_flops()) <= 0.02 * counter.get_total_flops()


def test_gradient_checkpointing_keeps_the_loss():
    base = BenchPoint(
        preset="qwen2.5-vl-tiny", images=((224, 224),), prompt_tokens=8, extra={"stage": "full", "lr": 1e-3}
    )
    runs = []
    for point in (base, replace(base, extra=base.extra | {"grad_ckpt": True})):
        model, _, optimizer, _ = prepare(point, settings(point))
        runs.append([train_step(model, [synthetic_batch(point, s)], optimizer) for s in range(2)])
    assert runs[0] == pytest.approx(runs[1], rel=1e-5)
    assert model.hf.model.language_model.gradient_checkpointing


def test_cli_train_records_a_peer_step(tmp_path):
    args = ["run", "train", "--preset", "qwen2-vl-tiny", "--stage", "full", "--prompt-tokens", "8", *FAST]
    assert main([*args, "--out", str(tmp_path)]) in (0, None)
    (r,) = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    m = r["metrics"]
    assert r["status"] == "ok" and r["config"]["preset"] == "qwen2-vl-tiny" and r["config"]["extra"]["stage"] == "full"
    assert m["samples_per_s"]["value"] == pytest.approx(1 / m["step_time"]["value"], rel=1e-6)
    assert m["sequence_tokens"]["value"] == 256 + 2 + 8  # 32x32 patches merged 2x2, vision_start / vision_end, text
    assert m["tokens_per_s"]["value"] == pytest.approx(266 / m["step_time"]["value"], rel=1e-6)
    laps = [m[stage]["value"] for stage in TRAIN_STAGES]
    assert all(t > 0 for t in laps) and sum(laps) <= m["step_time"]["value"] * (1 + 1e-6)
    cfg = get_preset("qwen2-vl-tiny")
    flops = costmodel.train_step_flops(cfg, flop_modes(Recipe.parse("full")), [(448, 448)], prompt_tokens=8)
    assert (m["step_flops"]["value"], m["step_flops"]["provenance"]) == (flops, "analytic")
    assert m["trainable_params"]["value"] == peer_param_counts(cfg)["total"] and "peak_rss" in m


REFUSED = [
    (["--fp8"], "--fp8 (torchao float8 of NVILA's LLM) covers NVILA and VILA1.5 presets only; qwen2-vl-tiny is a peer"),
    (["--compile"], "--compile (NVILA's per-layer torch.compile) covers NVILA and VILA1.5 presets only"),
    (
        ["--image", "448x448", "--video-frames", "4"],
        "qwen2-vl-tiny: a peer VLM's training sample holds images or a video",
    ),
]


@pytest.mark.parametrize("args,message", REFUSED)
def test_what_a_peer_step_cannot_take_is_refused_in_one_line(args, message, tmp_path, capsys):
    assert main(["run", "train", "--preset", "qwen2-vl-tiny", *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nvila-bench: error: ") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "results.jsonl").exists()


def test_torchrun_refuses_a_peer(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["run", "train", "--preset", "llava-onevision-tiny", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "torchrun data-parallel training (FSDP2) covers NVILA" in err
