"""torchrun's launcher mode of the runner: data-parallel training with PyTorch's FSDP2.

    torchrun --nproc-per-node 8 -m nvila_bench run train --preset nvila-lite-2b --device cuda --out out/

This sets up the process group (NCCL on GPUs, gloo on CPU: the tests run 2 gloo ranks) and runs the sweep on
every rank (`run_sweep` with `ranks`): each rank measures every job on its own GPU through the suite's own
measure, which shards its model and trains on its rows (suites/train.py); rank 0's writer writes each record,
with the launch's `world_size` and `backend` in the point's `extra`. Only suites that say so run here
(`Suite.distributed`: train).
"""

from __future__ import annotations

import os
from pathlib import Path

from nvila_bench.core.measuring.result_files import ResultWriter
from nvila_bench.core.measuring.results import new_run_id
from nvila_bench.core.measuring.session import Session
from nvila_bench.core.measuring.timing import MeasureConfig
from nvila_bench.runner.sweep import Ranks, run_sweep
from nvila_bench.suites.registry import Job, get_suite


def run_distributed(jobs: list[Job], measure: MeasureConfig, out_dir: str, quiet: bool = False) -> int:
    """Run `jobs` on the ranks torchrun started (RANK, WORLD_SIZE, LOCAL_RANK); rank 0 writes the records."""
    import torch
    import torch.distributed as dist

    from nvila_bench.core.measuring.env import capture_environment

    alone = sorted({j.suite for j in jobs if not get_suite(j.suite).distributed})
    if alone:
        raise ValueError(f"under torchrun only the train suite runs ({', '.join(alone)} measure one device)")
    first, first_suite = jobs[0].point, jobs[0].suite
    cuda = first.device.startswith("cuda")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        writer = ResultWriter(out_dir) if rank == 0 else None
        run_id = _broadcast(new_run_id() if rank == 0 else None)
        environment = capture_environment(first.attn_implementation, first.device) if rank == 0 else {}
        ranks = Ranks(rank, world, local, dist.get_backend())
        run_sweep(jobs, writer, Session(measure, {}, Path(out_dir)), run_id, environment, ranks=ranks)
        if writer is not None and not quiet:
            print(f"{first_suite}: {writer.count} record(s) on {world} ranks -> {writer.path}", flush=True)
    finally:
        dist.destroy_process_group()
    return 0


def _broadcast(value):
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
