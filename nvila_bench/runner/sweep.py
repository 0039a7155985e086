"""Sweeps: run a suite's jobs one by one, each result written by the one writer as it completes.

A job that runs out of (device or host) memory is recorded as `oom`, one that fails as `error` (with the
message), one its suite cannot run here (`PointSkipped`) as `skipped` with the reason, and the sweep goes on; a
NaN or infinite figure makes the record `nonfinite` (`Record.make_finite`). With `isolate=True` every job runs
in its own Python subprocess (`python -m nvila_bench.runner.worker`), so even a hard crash or the host OOM
killer takes only that point; with `processes=K` each point is measured in K fresh subprocesses and the K
records merge into one, metric by metric as each metric says (`Metric.merge`). Ctrl-C stops the sweep; every
completed point is already on disk. Under torchrun (`ranks`, set up by runner/distributed.py) every rank measures
each job and rank 0 writes its record. Whatever the mode, a point's record is built here (`measured_record`,
`failed_record`) and written by the one writer.

Testing hook: NVILA_BENCH_FAULT="oom:<preset>" makes points of that preset fail as if the device ran out of
memory; "memory:" as if the host did (MemoryError; "alloc:" as torch's CPU allocator says so), "skip:" as if the
suite cannot run them here, "error:" (or any other) as if they crashed: to exercise the paths above without a GPU.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass, replace
from typing import Callable, Iterable

import torch

from nvila_bench.core.measuring.result_files import ResultWriter
from nvila_bench.core.measuring.results import STATUSES, PointSkipped, Record
from nvila_bench.core.measuring.session import Session
from nvila_bench.core.measuring.stats import bounded_samples, summarize_groups
from nvila_bench.suites.registry import Job, get_suite

# PyTorch's CPU allocator says the host is out of memory with a RuntimeError of its own, not a MemoryError.
HOST_OOM_MARKER = "can't allocate memory"
OOM_MARKERS = ("OutOfMemoryError", "CUDA out of memory", "out of memory", "MemoryError", HOST_OOM_MARKER)


def _injected_fault(point) -> None:
    kind, _, preset = os.environ.get("NVILA_BENCH_FAULT", "").partition(":")
    if preset and preset == getattr(point, "preset", None):
        if kind == "oom":
            raise torch.OutOfMemoryError("injected: CUDA out of memory (NVILA_BENCH_FAULT)")
        if kind == "memory":
            raise MemoryError()
        if kind == "alloc":  # what torch's CPU allocator raises for a tensor the host cannot hold
            raise RuntimeError(
                "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                "you tried to allocate 52000000000 bytes. Error code 12 (Cannot allocate memory)"
            )
        if kind == "skip":
            raise PointSkipped("injected: cannot run here (NVILA_BENCH_FAULT)")
        raise RuntimeError("injected failure (NVILA_BENCH_FAULT)")


def failed_record(job: Job, run_id: str, environment: dict | None, status: str, error: str) -> Record:
    suite = get_suite(job.suite)
    return Record(job.suite, suite.config(job.point), {}, run_id, status, error, suite.provenance, environment)


def measured_record(
    job: Job, metrics: dict, run_id: str, environment: dict | None, launch: dict | None = None
) -> Record:
    """A measured job's record: the suite's settings of the point (with `launch`'s, e.g. a torchrun launch's
    world size, in its `extra`) and the metrics its measure returned."""
    suite = get_suite(job.suite)
    config = suite.config(job.point)
    if launch:
        config["extra"] = config["extra"] | launch
    analytic = suite.provenance == "analytic"
    return Record(
        job.suite,
        config,
        metrics,
        run_id,
        provenance=suite.provenance,
        environment=None if analytic else environment,
    )


def run_job(job: Job, session: Session, run_id: str, environment: dict | None) -> Record:
    """Measure one job in this process; failures become oom / error / skipped records."""
    suite = get_suite(job.suite)
    try:
        _injected_fault(job.point)
        metrics = suite.measure(job.point, session)
    except PointSkipped as e:
        return failed_record(job, run_id, environment, "skipped", _one_line(e) or "cannot run here")
    except torch.OutOfMemoryError as e:
        session.release()
        return failed_record(job, run_id, environment, "oom", _one_line(e))
    except MemoryError as e:  # the host's memory: an oom as much as the device's
        session.release()
        return failed_record(job, run_id, environment, "oom", f"host out of memory: {_one_line(e) or 'MemoryError'}")
    except Exception as e:  # noqa: BLE001 - any failure of one point is recorded, the sweep goes on
        session.release()
        if isinstance(e, RuntimeError) and HOST_OOM_MARKER in str(e):
            return failed_record(job, run_id, environment, "oom", f"host out of memory: {_one_line(e)}")
        return failed_record(job, run_id, environment, "error", f"{type(e).__name__}: {_one_line(e)}")
    return measured_record(job, metrics, run_id, environment)


@dataclass(frozen=True)
class Ranks:
    """This process's place in a torchrun launch (runner/distributed.py sets up the process group)."""

    rank: int
    world: int
    local: int  # LOCAL_RANK: this process's GPU on its node
    backend: str  # nccl (GPUs) or gloo (CPU)


def run_on_ranks(job: Job, session: Session, run_id: str, environment: dict | None, ranks: Ranks) -> Record:
    """Measure one job on this rank's device (cuda:LOCAL_RANK), every rank alike; the suite's measure shards its
    model and takes this rank's rows. A failure is raised, not recorded: the other ranks would wait inside a
    collective for ever, so it ends the launch (torchrun stops every rank), as a crash would."""
    suite = get_suite(job.suite)
    point = job.point
    if point.device.startswith("cuda"):
        point = replace(point, device=f"cuda:{ranks.local}")
    try:
        _injected_fault(point)
        metrics = suite.measure(point, session)
    except PointSkipped as e:  # raised before any collective, on every rank alike
        return failed_record(job, run_id, environment, "skipped", _one_line(e) or "cannot run here")
    return measured_record(job, metrics, run_id, environment, {"world_size": ranks.world, "backend": ranks.backend})


def run_isolated(job: Job, session: Session, run_id: str, environment: dict | None) -> Record:
    """Measure one job in a fresh subprocess; a crash or kill becomes an oom / error record."""
    peaks = session.peaks_for(job.point.dtype)
    payload = {
        "suite": job.suite,
        "point": job.point.to_config(),
        "measure": asdict(session.measure),
        "run_id": run_id,
        "environment": environment,
        "peaks": asdict(peaks) if peaks else None,
        "other_peaks": {d: asdict(p) for d, p in session.peaks.items() if p and d != job.point.dtype},
        "out_dir": str(session.out_dir) if session.out_dir else None,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "nvila_bench.runner.worker"], input=json.dumps(payload), capture_output=True, text=True
    )
    if proc.returncode == 0 and proc.stdout.strip():
        try:  # the record keeps every status the worker's run_job gave (skipped, nonfinite, oom, ...)
            return Record.from_dict(json.loads(proc.stdout.strip().splitlines()[-1]))
        except ValueError as e:  # not a record (something else printed last): this point failed, not the sweep
            return failed_record(job, run_id, environment, "error", f"worker printed no record: {_one_line(e)}")
    if proc.returncode < 0 and -proc.returncode == 2:  # the worker got the user's Ctrl-C too
        raise KeyboardInterrupt
    tail = _one_line(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit code {proc.returncode}")
    killed = proc.returncode == -9  # SIGKILL: most often the host's OOM killer
    status = "oom" if killed or any(m in proc.stderr for m in OOM_MARKERS) else "error"
    message = f"worker killed (SIGKILL, likely host out of memory): {tail}" if killed else f"worker failed: {tail}"
    return failed_record(job, run_id, environment, status, message)


def merge_runs(records: list[Record]) -> Record:
    """One record from K process runs of the same point, each metric merged by its own rule: `pool` pools
    the samples (median CI from the hierarchical bootstrap, process then sample), `max` takes the largest run,
    `rescale` follows the merged median of the metric it is derived from, `first` keeps the first run's.
    A failed run wins."""
    failed = [r for r in records if not r.ok]
    if failed or len(records) == 1:
        return failed[0] if failed else records[0]
    merged = copy.deepcopy(records[0])
    for name, m in merged.metrics.items():
        runs = [r.metrics[name] for r in records]
        if m.merge == "pool":
            summary = summarize_groups([r.samples for r in runs], m.unit)
            # Each run's samples stay a contiguous group (bounded per run), so a later comparison (the gate)
            # can bootstrap over processes too.
            groups = [bounded_samples(r.samples, max(2, 1000 // len(runs))) for r in runs]
            m.value, m.summary, m.samples, m.groups = (
                summary.median,
                summary.to_dict(),
                sum(groups, []),
                [len(g) for g in groups],
            )
        elif m.merge == "max":
            m.value = max(r.value for r in runs)
    for m in merged.metrics.values():
        if m.merge == "rescale":
            m.value *= records[0].metrics[m.derived_from].value / merged.metrics[m.derived_from].value
    merged.config = merged.config | {"processes": len(records)}
    return merged


def run_sweep(
    jobs: Iterable[Job],
    writer: ResultWriter | None,
    session: Session,
    run_id: str,
    environment: dict | None,
    isolate: bool = False,
    processes: int = 1,
    on_record: Callable[[Job, Record], None] | None = None,
    ranks: Ranks | None = None,
) -> dict[str, int]:
    """Run and write every job (`writer` None: a torchrun rank other than 0, which measures but writes nothing);
    returns counts per status."""
    counts = dict.fromkeys(STATUSES, 0)
    interrupted: list[int] = []

    def on_sigint(signum, frame):
        # Also remembered: a KeyboardInterrupt raised inside a __del__ or GC callback is swallowed by
        # Python, so the flag is checked again at every point boundary.
        interrupted.append(signum)
        raise KeyboardInterrupt

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if in_main_thread else None
    try:
        for job in jobs:
            if interrupted:
                raise KeyboardInterrupt
            if job.skip:  # found before the sweep (registry.jobs_of): e.g. a ladder's baseline past its context
                record = failed_record(job, run_id, environment, "skipped", job.skip)
            elif ranks is not None:
                record = run_on_ranks(job, session, run_id, environment, ranks)
            elif processes > 1:
                record = merge_runs([run_isolated(job, session, run_id, environment) for _ in range(processes)])
            elif isolate:
                record = run_isolated(job, session, run_id, environment)
            else:
                record = run_job(job, session, run_id, environment)
            if writer is not None:
                writer.write(record)
            counts[record.status] += 1
            if on_record:
                on_record(job, record)
        if interrupted:
            raise KeyboardInterrupt
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)
        session.release()
    return counts


def _one_line(e) -> str:
    return " ".join(str(e).split())[:500]
