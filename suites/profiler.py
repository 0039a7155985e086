"""The profiler behind the profile suite (suites/profile.py, whose docstring says what one run does): a stage's
step split into named ranges, torch.profiler's trace and operator tables, the CUDA allocator's snapshot."""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from nvila_bench.model import build_model, get_preset, preprocess_media
from nvila_bench.model.pipeline import embed, first_token, generate
from nvila_bench.model.stages import PREPROCESS
from nvila_bench.model.training import Batch, Recipe, apply_recipe, build_optimizer, train_step

from nvila_bench.core.analysis import costmodel
from nvila_bench.core.measuring.energy import EnergyMeter, energy_metrics
from nvila_bench.core.measuring.point import BenchPoint
from nvila_bench.core.measuring.results import Metric
from nvila_bench.core.measuring.timing import MeasureConfig, StageClock, measure, synchronize

from .common import request_of, token_metrics
from .profile import STAGE_RANGES, Schedule

MEMORY_HISTORY_ENTRIES = 100_000  # allocator events kept for the snapshot (the newest win)


@contextlib.contextmanager
def stage_range(name: str, cuda: bool = False):
    """A named range: record_function for torch.profiler and, on CUDA, NVTX for Nsight Systems."""
    with torch.profiler.record_function(name), torch.cuda.nvtx.range(name) if cuda else contextlib.nullcontext():
        yield


@dataclass
class ProfiledStep:
    """One iteration of a stage: `run(section)` runs it, each stage inside `with section(name)`."""

    run: Callable[[Callable[[str], contextlib.AbstractContextManager]], None]
    tokens: int  # processed per step (prefill, train: every sequence position; decode: generated), for J/token
    optimizer: torch.optim.Optimizer | None = None  # train only
    kv_cache_bytes: int = 0  # decode only: the cache a step fills (analytic, static or dynamic alike)


def build_step(model, point: BenchPoint, stage: str) -> ProfiledStep:
    """The step of `stage` (see the module docstring) on `point`'s synthetic request."""
    request = request_of(point)
    sequence = point.batch_size * token_metrics(point)["sequence_tokens"].value
    if stage == "prefill":
        return ProfiledStep(lambda section: first_token(model, request, section), sequence)
    if stage == "decode":
        if point.new_tokens < 2:
            raise ValueError("profiling decode needs --new-tokens >= 2 (the first token comes from the prefill)")
        with torch.inference_mode():  # as the decode suite: the context is embedded once, outside the steps
            embeds = embed(model, request)

        def step(section):
            cache = model.new_cache(point.cache, embeds.shape[1] + point.new_tokens)
            generate(model, embeds, point.new_tokens, cache, section=section)

        kv = costmodel.kv_cache_bytes(model.config, embeds.shape[1] + point.new_tokens, point.batch_size, point.dtype)
        return ProfiledStep(step, point.batch_size * point.new_tokens, kv_cache_bytes=kv)
    if stage == "train":
        recipe = Recipe.parse("full")
        apply_recipe(model.train(), recipe)
        optimizer = build_optimizer(model, recipe)

        def step(section):
            with section(PREPROCESS):
                media = preprocess_media(model.config, request.images, request.video)
            batch = Batch([media] * request.batch, request.input_ids, request.temporal_pool)
            train_step(model, [batch], optimizer, section)

        return ProfiledStep(step, sequence, optimizer)
    raise ValueError(f"unknown stage {stage!r}; known: {', '.join(STAGE_RANGES)}")


def _sections(clock: StageClock, ranges: bool, cuda: bool):
    """The `section(name)` a step runs each stage in: optionally a named range, always a clock lap after it."""

    @contextlib.contextmanager
    def section(name: str):
        with stage_range(name, cuda) if ranges else contextlib.nullcontext():
            yield
        clock.lap(name)

    return section


def operator_tables(events, stages: tuple[str, ...], steps: int, top: int, cuda: bool) -> tuple[list[dict], list[dict]]:
    """(stage rows, top-operator rows) per step from a profiler's events.

    A stage row holds the wall time of its ranges (`seconds`), how many ranges a step has, and the self CPU /
    CUDA time and FLOPs of every operator inside them. On a GPU a range's wall time is its CPU side (launches,
    and waits where the stage synchronises); the kernels' time is the self CUDA column. Operators are attributed to the
    innermost enclosing
    stage range; the top rows keep the `top` operators of each stage by self CUDA time (CPU time on CPU).
    CUDA times are None without CUDA activity (not zero); FLOPs are None where the profiler knows no formula
    for any call of the operator.
    """
    ranges = {s: [0.0, 0] for s in stages}
    ops: dict[tuple[str, str], list] = {}
    for e in events:
        if e.device_type != torch.autograd.DeviceType.CPU:
            continue  # kernels are counted through the CPU operators that launched them
        if e.is_user_annotation:
            if e.name in ranges:
                ranges[e.name][0] += e.cpu_time_total / 1e6
                ranges[e.name][1] += 1
            continue
        parent = e.cpu_parent
        while parent is not None and not (parent.is_user_annotation and parent.name in ranges):
            parent = parent.cpu_parent
        if parent is None:
            continue  # outside every stage (profiler bookkeeping)
        row = ops.setdefault((parent.name, e.name), [0.0, 0.0, 0, 0])
        row[0] += e.self_cpu_time_total / 1e6
        row[1] += e.self_device_time_total / 1e6
        row[2] += 1
        row[3] += e.flops or 0
    op_rows = [
        {
            "stage": stage,
            "op": name,
            "self_cpu_s": cpu / steps,
            "self_cuda_s": dev / steps if cuda else None,
            "calls": calls / steps,
            "flops": flops / steps if flops else None,
        }
        for (stage, name), (cpu, dev, calls, flops) in ops.items()
    ]
    stage_rows = []
    for stage in stages:
        mine = [r for r in op_rows if r["stage"] == stage]
        flops = [r["flops"] for r in mine if r["flops"] is not None]
        stage_rows.append(
            {
                "stage": stage,
                "seconds": ranges[stage][0] / steps,
                "ranges": ranges[stage][1] / steps,
                "self_cpu_s": sum(r["self_cpu_s"] for r in mine),
                "self_cuda_s": sum(r["self_cuda_s"] for r in mine) if cuda else None,
                "flops": sum(flops) if flops else None,
            }
        )
    key = (lambda r: r["self_cuda_s"]) if cuda else (lambda r: r["self_cpu_s"])
    top_rows = []
    for stage in stages:
        top_rows += sorted((r for r in op_rows if r["stage"] == stage), key=key, reverse=True)[:top]
    return stage_rows, top_rows


def _trace(prof, tb_dir: Path, worker: str, chrome_path: Path, store: dict) -> None:
    """on_trace_ready: the TensorBoard trace, the same file as a plain Chrome trace, and the events."""
    before = set(tb_dir.glob("*.pt.trace.json")) if tb_dir.exists() else set()
    torch.profiler.tensorboard_trace_handler(str(tb_dir), worker_name=worker)(prof)
    (written,) = set(tb_dir.glob("*.pt.trace.json")) - before
    chrome_path.unlink(missing_ok=True)
    try:
        os.link(written, chrome_path)  # one file, two names
    except OSError:
        shutil.copyfile(written, chrome_path)
    store["events"] = prof.events()


def _memory_step(model, step: ProfiledStep, device: torch.device, snapshot: Path) -> dict:
    """One step under the CUDA allocator's history: a snapshot for pytorch.org/memory_viz and the peak split
    into what tensors of known size account for; `activations_and_other` is the remainder."""
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    torch.cuda.memory._record_memory_history(max_entries=MEMORY_HISTORY_ENTRIES)
    try:
        step.run(lambda name: stage_range(name, cuda=True))
        synchronize(device)
        torch.cuda.memory._dump_snapshot(str(snapshot))
    finally:
        torch.cuda.memory._record_memory_history(enabled=None)
    peak = torch.cuda.max_memory_allocated(device)

    def size(tensors):
        return sum(t.numel() * t.element_size() for t in tensors)

    optimizer = step.optimizer
    parts = {"weights": size(model.parameters()) + size(model.buffers())}
    if optimizer is not None:  # gradients are alive at the peak (backward, optimizer step): one per parameter
        parts["gradients"] = size(p for p in model.parameters() if p.requires_grad)
        parts["optimizer_state"] = size(t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t))
    if step.kv_cache_bytes:
        parts["kv_cache"] = step.kv_cache_bytes
    parts["activations_and_other"] = max(0, peak - sum(parts.values()))
    return {
        "peak_memory_allocated": Metric.measured(peak, "bytes", "lower", "max"),
        "peak_memory_reserved": Metric.measured(torch.cuda.max_memory_reserved(device), "bytes", "lower", "max"),
        "peak_memory_breakdown": Metric.measured(parts, "bytes"),
        "memory_snapshot": Metric.measured(snapshot.name, "path"),
    }


def profile_point(
    point: BenchPoint,
    stage: str,
    schedule: Schedule,
    out_dir: str | Path,
    repeats: int = 5,
    top: int = 10,
    with_stack: bool = False,
) -> dict:
    """Profile `stage` of `point` (see the module docstring); returns the record's metrics."""
    if stage not in STAGE_RANGES:
        raise ValueError(f"unknown stage {stage!r}; known: {', '.join(STAGE_RANGES)}")
    out_dir = Path(out_dir)
    name = f"{point.preset}-{stage}"
    tb_dir, chrome_path = out_dir / "tb" / name, out_dir / f"{name}.trace.json"
    device = torch.device(point.device)
    cuda = device.type == "cuda"
    model = build_model(get_preset(point.preset), point.torch_dtype, point.device, point.attn_implementation)
    step = build_step(model, point, stage)
    grad_mode = contextlib.nullcontext if stage == "train" else torch.inference_mode

    meter = EnergyMeter.open(device)

    def unprofiled(n: int, warmup: int) -> list[float]:
        """Step times without the profiler (and their energy, on a GPU)."""
        if n < 1:
            return []
        with grad_mode():
            return measure(
                lambda clock: step.run(_sections(clock, False, cuda)),
                device,
                MeasureConfig(warmup=warmup, repeats=n, min_seconds=0, max_repeats=n),
                region=meter,
            )["total"]

    plain = unprofiled(-(-repeats // 2), warmup=1)  # half before the profiled steps, half after
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
    store: dict = {}
    profiled, clock = [], StageClock(device)
    with (
        grad_mode(),
        torch.profiler.profile(
            activities=activities,
            schedule=torch.profiler.schedule(
                wait=schedule.wait, warmup=schedule.warmup, active=schedule.active, repeat=1
            ),
            on_trace_ready=lambda prof: _trace(prof, tb_dir, name, chrome_path, store),
            record_shapes=True,
            profile_memory=True,
            with_stack=with_stack,
            with_flops=True,
        ) as prof,
    ):
        for i in range(schedule.wait + schedule.warmup + schedule.active):
            clock.start()
            step.run(_sections(clock, True, cuda))
            synchronize(device)
            if i >= schedule.wait + schedule.warmup:
                profiled.append(sum(seconds for _, seconds in clock.durations()))
            prof.step()
    plain += unprofiled(repeats // 2, warmup=0)
    stage_rows, top_rows = operator_tables(store["events"], STAGE_RANGES[stage], schedule.active, top, cuda)

    with_profiler, without = Metric.timing(profiled), Metric.timing(plain)
    metrics = {
        "stage_times": Metric.measured(stage_rows, "per step"),
        "top_ops": Metric.measured(top_rows, "per step"),
        "profiled_step_time": with_profiler,
        "unprofiled_step_time": without,
        "profiler_overhead": Metric.measured(with_profiler.value / without.value, "ratio", "lower"),  # of the medians
        "tokens_per_step": Metric.measured(step.tokens, "tokens"),
        "chrome_trace": Metric.measured(chrome_path.name, "path"),
        "tensorboard_dir": Metric.measured(str(tb_dir.relative_to(out_dir)), "path"),
    }
    metrics |= energy_metrics(meter, step.tokens * len(plain))
    if cuda:  # 3. the allocator's view of one more step
        with grad_mode():
            metrics |= _memory_step(model, step, device, out_dir / f"{name}.memory.pickle")
    return metrics
