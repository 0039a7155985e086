"""Data-parallel training under torchrun with PyTorch's FSDP2 (`fully_shard`).

    torchrun --nproc-per-node 8 -m nvila_bench run train --preset nvila-lite-2b --device cuda --out out/

Every ViT layer, every LLM decoder layer and the input embedding are their own FSDP2 units, the rest (patch
embedding, projector, final norm, LM head) the root; `training_loss` is registered as a forward method so
the root's parameters are gathered around it. Each rank trains on its own rows of the global batch
(`--batch-size` is per rank), gradients are averaged by the reduce-scatter, so N ranks of batch b follow
the same trajectory as one process of batch N*b. NCCL on GPUs, gloo on CPU (the tests run 2 gloo ranks).

Steps are counted, not timed (every rank must run the same number of collectives): `--warmup` then
`--repeats` steps. Rank 0 writes one record: per-rank step times, per-GPU and aggregate samples/s.
"""

from __future__ import annotations

import os
from dataclasses import replace

import torch
import torch.distributed as dist

from nvila_bench.core.analysis import costmodel
from nvila_bench.core.analysis.memory_model import geometry
from nvila_bench.core.measuring.point import BenchPoint
from nvila_bench.core.measuring.results import Metric, Record, ResultWriter, new_run_id
from nvila_bench.core.measuring.stats import summarize
from nvila_bench.core.measuring.timing import MeasureConfig, StageClock, synchronize
from nvila_bench.model import get_preset
from nvila_bench.model.training import build_optimizer, flop_modes, synthetic_batch, train_step
from nvila_bench.model.vision import vision_body
from nvila_bench.suites.train import prepare, settings


def shard(model) -> None:
    """FSDP2 units: each ViT layer, each LLM layer, the input embedding; then the root."""
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    for layer in vision_body(model.vision_tower).encoder.layers:
        fully_shard(layer)
    for layer in model.llm.model.layers:
        fully_shard(layer)
    if not model.config.llm.tie_word_embeddings:  # tied: it shares the LM head's weight, so it stays in the root
        fully_shard(model.llm.model.embed_tokens)
    fully_shard(model)
    register_fsdp_forward_method(model, "training_loss")


def run_distributed(points: list[BenchPoint], mcfg: MeasureConfig, out_dir: str, quiet: bool = False) -> int:
    from nvila_bench.core.measuring.env import capture_environment

    if any(p.extra.get("recipe") for p in points):
        raise ValueError("under torchrun only the train suite runs (finetune-memory is one device)")
    cuda = points[0].device.startswith("cuda")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        writer = ResultWriter(out_dir) if rank == 0 else None
        run_id = new_run_id() if rank == 0 else None
        run_id = _broadcast(run_id)
        environment = capture_environment(points[0].attn_implementation, points[0].device) if rank == 0 else {}
        for point in points:
            if cuda:
                point = replace(point, device=f"cuda:{local}")
            metrics = train_ranks(point, settings(point), mcfg, rank, world)
            if rank == 0:
                config = point.to_config() | {"device": points[0].device}
                config["extra"] = config["extra"] | {"world_size": world, "backend": dist.get_backend()}
                writer.write(Record("train", config, metrics, run_id, environment=environment))
        if rank == 0 and not quiet:
            print(f"train: {writer.count} record(s) on {world} ranks -> {writer.path}", flush=True)
    finally:
        dist.destroy_process_group()
    return 0


def train_ranks(
    point: BenchPoint, s: dict, mcfg: MeasureConfig, rank: int, world: int, steps: int | None = None
) -> dict:
    """This rank's share of `warmup + repeats` steps; every rank returns the same metrics (gathered)."""
    device = torch.device(point.device)
    model, recipe, _, autocast = prepare(point, s)
    shard(model)
    optimizer = build_optimizer(model, recipe, lr=float(s["lr"]), fused=False)
    accum = int(s["grad_accum"])
    total_steps = steps if steps is not None else mcfg.warmup + mcfg.repeats
    times, losses = [], []
    clock = StageClock(device)
    for step in range(total_steps):
        batches = [synthetic_batch(point, step * accum + k, first_row=rank * point.batch_size) for k in range(accum)]
        synchronize(device)
        clock.start()
        local_loss = train_step(model, batches, optimizer, clock.section, autocast)
        synchronize(device)
        seconds = sum(t for _, t in clock.durations())  # forward, backward (with the reduce-scatter), optimizer
        loss = torch.tensor([local_loss], device=device)
        dist.all_reduce(loss)  # the mean over ranks = the loss of the global batch (equal tokens per row)
        losses.append(float(loss) / world)
        if step >= (0 if steps is not None else mcfg.warmup):
            times.append(seconds)
    per_rank = [None] * world
    dist.all_gather_object(per_rank, times)
    slowest = [max(ts) for ts in zip(*per_rank)]  # a step ends when the slowest rank ends
    cfg = get_preset(point.preset)
    g = geometry(cfg, point.images, point.video_frames, point.temporal_pool, point.prompt_tokens, point.batch_size)
    rows = point.batch_size * accum
    return {
        "step_time": Metric.timing(slowest),
        "samples_per_s": Metric.rate(slowest, world * rows, "samples/s"),
        "per_gpu_samples_per_s": Metric.rate([t for ts in per_rank for t in ts], rows, "samples/s"),
        "tokens_per_s": Metric.rate(slowest, world * rows * g.sequence, "tokens/s"),
        "rank_step_time_median": Metric.measured([summarize(ts, "s").median for ts in per_rank], "s"),
        "world_size": Metric.measured(world, "ranks"),
        "losses": Metric.measured(losses, "nats"),
        "loss_first": Metric.measured(losses[0], "nats"),
        "loss_last": Metric.measured(losses[-1], "nats"),
        "step_flops": Metric.analytic(
            world
            * costmodel.train_step_flops(
                cfg,
                flop_modes(recipe),
                point.images,
                point.video_frames,
                point.temporal_pool,
                point.prompt_tokens,
                rows,
                s["grad_ckpt"],
            ),
            "FLOP",
        ),
    }


def _broadcast(value):
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
