"""Sweeps: the cartesian product of settings, run point by point, each result written as it completes.

A point that runs out of memory is recorded as `oom`, one that fails as `error` (with the message), and the
sweep goes on. With `isolate=True` every point runs in its own Python subprocess (`python -m
nvila_bench.runner.worker`), so even a hard crash or the host OOM killer takes only that point. Ctrl-C stops the
sweep; every completed point is already on disk.

Testing hook: NVILA_BENCH_FAULT="oom:<preset>" (or "error:<preset>") makes points of that preset fail as if
the device ran out of memory (or crashed), to exercise the paths above without a GPU.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import tomllib
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterable

import torch

from nvila_bench.core.point import BenchPoint
from nvila_bench.core.results import ResultWriter, make_record, point_id, validate_record
from nvila_bench.core.stats import bounded_samples, summarize_groups
from nvila_bench.core.timing import MeasureConfig

SUITES = ("prefill", "decode", "overhead", "train", "finetune-memory")
SWEEP_FIELDS = (
    "preset", "device", "dtype", "images", "video_frames", "temporal_pool", "prompt_tokens", "batch_size",
    "new_tokens", "attn_implementation", "cache",
)  # fmt: skip
OOM_MARKERS = ("OutOfMemoryError", "CUDA out of memory", "out of memory")


def suite_runner(name: str) -> Callable:
    if name == "prefill":
        from nvila_bench.suites.prefill import run
    elif name == "decode":
        from nvila_bench.suites.decode import run
    elif name == "overhead":
        from nvila_bench.suites.overhead import run
    elif name == "train":
        from nvila_bench.suites.train import run
    elif name == "finetune-memory":
        from nvila_bench.suites.finetune_memory import run
    else:
        raise ValueError(f"unknown suite {name!r}; known: {', '.join(SUITES)}")
    return run


def expand(axes: dict[str, list]) -> list[BenchPoint]:
    """Every combination of the axes' values, in order (the first axis varies slowest)."""
    unknown = sorted(set(axes) - set(SWEEP_FIELDS))
    if unknown:
        raise ValueError(f"unknown sweep setting(s) {', '.join(unknown)}; known: {', '.join(SWEEP_FIELDS)}")
    names = list(axes)
    return [BenchPoint(**dict(zip(names, values))) for values in itertools.product(*(axes[n] for n in names))]


def load_suite_file(path: str | Path) -> tuple[str | None, dict[str, list]]:
    """A TOML or YAML suite file: optional `suite = "prefill"`, and settings whose list values are sweep
    axes, e.g. `preset = ["nvila-tiny", "vila-tiny"]`, `images = [["448x448"], ["1920x1080"]]`."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"cannot read suite file {path}: {e.strerror}") from None
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: invalid TOML: {e}") from None
    elif path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ValueError("YAML suite files need PyYAML (pip install pyyaml), or use TOML") from None
        data = yaml.safe_load(text) or {}
    else:
        raise ValueError(f"suite file {path} must end in .toml, .yaml or .yml")
    suite = data.pop("suite", None)
    axes = {k: v if isinstance(v, list) and k != "images" else [v] for k, v in data.items()}
    if "images" in data:  # images: one request (list of WxH) or a list of requests
        value = data["images"]
        axes["images"] = value if value and isinstance(value[0], list) else [value]
        axes["images"] = [tuple(_size(s) for s in request) for request in axes["images"]]
    return suite, axes


def _size(text: str) -> tuple[int, int]:
    w, _, h = str(text).lower().partition("x")
    if not (w.isdigit() and h.isdigit()) or int(w) < 1 or int(h) < 1:
        raise ValueError(f"{text!r} is not an image size: expected WxH with positive integers, e.g. 1920x1080")
    return int(w), int(h)


def _injected_fault(point: BenchPoint) -> None:
    kind, _, preset = os.environ.get("NVILA_BENCH_FAULT", "").partition(":")
    if preset and preset == point.preset:
        if kind == "oom":
            raise torch.OutOfMemoryError("injected: CUDA out of memory (NVILA_BENCH_FAULT)")
        raise RuntimeError("injected failure (NVILA_BENCH_FAULT)")


def run_point(suite: str, point: BenchPoint, mcfg: MeasureConfig, session, run_id: str, environment: dict) -> dict:
    """Measure one point in this process; failures become oom / error records."""
    status, error, metrics = "ok", None, {}
    try:
        _injected_fault(point)
        metrics = suite_runner(suite)(point, mcfg, session)
    except torch.OutOfMemoryError as e:
        status, error = "oom", _one_line(e)
        session.release()
    except Exception as e:  # noqa: BLE001 - any failure of one point is recorded, the sweep goes on
        status, error = "error", f"{type(e).__name__}: {_one_line(e)}"
        session.release()
    return make_record(suite, point.to_config(), metrics, run_id, environment, status, error)


def run_isolated(
    suite: str, point: BenchPoint, mcfg: MeasureConfig, run_id: str, environment: dict, peaks=None
) -> dict:
    """Measure one point in a fresh subprocess; a crash or kill becomes an oom / error record."""
    job = {
        "suite": suite, "point": point.to_config(), "measure": asdict(mcfg), "run_id": run_id,
        "environment": environment, "peaks": asdict(peaks) if peaks else None,
    }  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "nvila_bench.runner.worker"], input=json.dumps(job), capture_output=True, text=True
    )
    if proc.returncode == 0 and proc.stdout.strip():
        return json.loads(proc.stdout.strip().splitlines()[-1])
    if proc.returncode < 0 and -proc.returncode == 2:  # the worker got the user's Ctrl-C too
        raise KeyboardInterrupt
    tail = _one_line(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit code {proc.returncode}")
    killed = proc.returncode == -9  # SIGKILL: most often the host's OOM killer
    status = "oom" if killed or any(m in proc.stderr for m in OOM_MARKERS) else "error"
    message = f"worker killed (SIGKILL, likely host out of memory): {tail}" if killed else f"worker failed: {tail}"
    return make_record(suite, point.to_config(), {}, run_id, environment, status, message)


def merge_runs(records: list[dict]) -> dict:
    """One record from K process runs of the same point: timing metrics pool their samples, with the
    median's CI from the hierarchical (process, then sample) bootstrap; MFU / MBU follow the merged median;
    peak memory takes the largest run; everything else comes from the first run. A failed run wins."""
    failed = [r for r in records if r["status"] != "ok"]
    if failed or len(records) == 1:
        return failed[0] if failed else records[0]
    merged = json.loads(json.dumps(records[0]))
    metrics = merged["metrics"]
    for name, m in metrics.items():
        runs = [r["metrics"][name] for r in records]
        if "samples" in m and "summary" in m:
            summary = summarize_groups([r["samples"] for r in runs], m["unit"])
            # Each run's samples stay a contiguous group (bounded per run), so a later comparison (the gate)
            # can bootstrap over processes too.
            groups = [bounded_samples(r["samples"], max(2, 1000 // len(runs))) for r in runs]
            m.update(value=summary.median, summary=summary.to_dict(), samples=sum(groups, []), groups=[len(g) for g in groups])
        elif name.startswith(("peak_", "kv_cache_bytes")) and m["provenance"] == "measured":
            m["value"] = max(r["value"] for r in runs)
    for m in metrics.values():
        if "of" in m:
            m["value"] *= records[0]["metrics"][m["of"]]["value"] / metrics[m["of"]]["value"]
    merged["config"] = merged["config"] | {"processes": len(records)}
    merged["point_id"] = point_id(merged["suite"], merged["config"])
    validate_record(merged)
    return merged


def run_sweep(
    suite: str,
    points: Iterable[BenchPoint],
    writer: ResultWriter,
    mcfg: MeasureConfig,
    run_id: str,
    environment: dict,
    session=None,
    isolate: bool = False,
    on_point: Callable[[BenchPoint, dict], None] | None = None,
    processes: int = 1,
) -> dict[str, int]:
    """Run and write every point; returns counts per status. `processes` > 1 measures each point in that
    many fresh subprocesses and merges them (`merge_runs`), so the CI covers run-to-run variation."""
    from nvila_bench.suites.common import Session

    session = session or Session()
    counts = {"ok": 0, "oom": 0, "error": 0}
    interrupted: list[int] = []

    def on_sigint(signum, frame):
        # Also remembered: a KeyboardInterrupt raised inside a __del__ or GC callback is swallowed by
        # Python, so the flag is checked again at every point boundary.
        interrupted.append(signum)
        raise KeyboardInterrupt

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if in_main_thread else None
    try:
        for point in points:
            if interrupted:
                raise KeyboardInterrupt
            if processes > 1:
                record = merge_runs(
                    [run_isolated(suite, point, mcfg, run_id, environment, session.peaks_for(point.dtype)) for _ in range(processes)]
                )
            elif isolate:
                record = run_isolated(suite, point, mcfg, run_id, environment, session.peaks_for(point.dtype))
            else:
                record = run_point(suite, point, mcfg, session, run_id, environment)
            writer.write(record)
            counts[record["status"]] += 1
            if on_point:
                on_point(point, record)
        if interrupted:
            raise KeyboardInterrupt
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)
        session.release()
    return counts


def _one_line(e) -> str:
    return " ".join(str(e).split())[:500]
