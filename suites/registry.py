"""The suite registry: every suite the CLI can run, by name.

A suite module declares one `SUITE = Suite(...)`: its name, its own options, how it turns the run's base
points and its options into points (`expand`), and how it measures one point (`measure`). The CLI builds a
`nvila-bench run NAME` command from it and the running layer measures each point and writes its record.
Adding a suite is one module plus one line below (see docs/architecture.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from importlib import import_module
from typing import TYPE_CHECKING, Any, Callable

from nvila_bench.model import get_preset
from nvila_bench.model.presets import UnknownPresetError, nvila_only, preset_names
from nvila_bench.model.tokens import check_temporal_pool, temporal_pool_size

from nvila_bench.core.analysis.fits import fit_problem
from nvila_bench.core.measuring.point import BenchPoint, check_axes, points_from_axes
from nvila_bench.core.measuring.results import Metric
from nvila_bench.core.measuring.specs import MetricSpec, SuiteOutputs

if TYPE_CHECKING:
    from nvila_bench.core.measuring.session import Session

# name -> module under nvila_bench.suites (imported only when that suite runs, so the CLI starts fast)
REGISTRY = {
    "prefill": "prefill",
    "decode": "decode",
    "scale-then-compress": "scale_then_compress",
    "overhead": "overhead",
    "train": "train",
    "finetune-memory": "finetune_memory",
    "accuracy": "accuracy",
    "profile": "profile",
    "deployment": "deployment",
}


COMMON_OPTIONS = ("hardware",)  # run-wide options the CLI passes to every suite's expand


@dataclass(frozen=True)
class Option:
    """A suite's own option (`--name` on the command line). `multiple` options are sweep axes."""

    name: str  # with underscores; the flag is --name-with-dashes
    help: str
    type: Any = str  # str, int, float, bool (a flag), or a tuple of choices
    default: Any = None
    multiple: bool = False


class SuiteError(ValueError):
    """Settings a suite cannot run (the CLI reports it in one line, exit 2, before measuring)."""


@dataclass(frozen=True)
class Job:
    """One record to produce: the suite whose `measure` runs, on which point. A suite may schedule other
    suites' measurements (scale-then-compress runs prefill and decode beside its own analytic figures)."""

    suite: str
    point: BenchPoint
    skip: str | None = None  # why this job cannot run as asked: recorded as `skipped` without measuring


def sweep_points(axes: dict[str, list], options: dict) -> list[BenchPoint]:
    """The default expansion: every combination of the sweep axes (one 448x448 image when no media is
    given), the suite's own options in each point's `extra` (recorded, and read by `measure`)."""
    if "images" not in axes and "video_frames" not in axes:
        axes = axes | {"images": [((448, 448),)]}
    if "preset" not in axes:
        raise SuiteError("give at least one --preset (or a --config file that lists presets)")
    own = {k: v for k, v in options.items() if k not in COMMON_OPTIONS}
    return [with_extra(p, **own) if own else p for p in points_from_axes(axes)]


@dataclass(frozen=True)
class Suite:
    name: str
    help: str
    measure: Callable[[BenchPoint, Session], dict[str, Metric]]
    options: tuple[Option, ...] = ()
    # (sweep axes of the common options, this suite's options) -> its points or jobs; raise SuiteError
    expand: Callable[[dict[str, list], dict], list] = sweep_points
    provenance: str = "measured"
    takes_presets: bool = True  # False: the suite picks its presets itself (--preset is refused)
    config: Callable[[BenchPoint], dict] = BenchPoint.to_config  # what the record stores as settings
    # A point this machine cannot run (a missing library, a GPU-only option on CPU): `measure` raises
    # core.measuring.results.PointSkipped(reason) and the runner records it as `skipped` with that reason.
    describe: Callable[[object], str | None] | None = None  # a line to print per record (else a progress bar)
    fail_on_error: bool = False  # exit 1 when a point failed (accuracy: a failed task is no score)
    decodes: bool = False  # its points generate `new_tokens` tokens, which count against the context
    distributed: bool = False  # its measure runs on every rank of a torchrun launch (runner/distributed.py)
    metrics: tuple[MetricSpec, ...] = ()  # what it writes, declared once: the report, gate and dashboard read them
    view: str | None = None  # its own report view (reports/views/<view>.py), else the generic per-suite table

    def outputs(self) -> SuiteOutputs:
        return SuiteOutputs(self.name, self.help, self.metrics, self.view)


def suite_names() -> list[str]:
    return list(REGISTRY)


def declared_outputs() -> dict[str, SuiteOutputs]:
    """Every registered suite's declared outputs, by name (suite modules import no torch at import time)."""
    return {name: get_suite(name).outputs() for name in REGISTRY}


def get_suite(name: str) -> Suite:
    if name not in REGISTRY:
        raise SuiteError(f"unknown suite {name!r}; known: {', '.join(REGISTRY)}")
    return import_module(f"nvila_bench.suites.{REGISTRY[name]}").SUITE


def jobs_of(suite: Suite, axes: dict[str, list], options: dict) -> list[Job]:
    """The suite's expansion of the sweep, as jobs (a plain point is a job of the suite itself), checked before
    anything is measured, the same way for every suite: each axis value as its option checks it; every video
    against its preset's temporal pooling; `--cache` only where a point runs the eager engine (the others run
    their own cache); and each measured point against its preset's context and its device's memory
    (core/analysis/fits.py). A point of a preset the user named that cannot fit is refused (SuiteError), as is a run
    where none fits; one of a preset the suite chose itself (a ladder's baseline) is recorded as skipped."""
    try:
        check_axes(axes)
    except ValueError as e:
        raise SuiteError(str(e)) from None
    jobs = [p if isinstance(p, Job) else Job(suite.name, p) for p in suite.expand(axes, options)]
    for job in jobs:
        point = job.point
        frames, pool = getattr(point, "video_frames", None), getattr(point, "temporal_pool", True)
        if frames is not None:
            temporal_pool_size(get_preset(point.preset), frames, pool)  # ValueError: exit 2
        elif not pool and point.preset in preset_names():  # a checkpoint's point names no preset
            check_temporal_pool(get_preset(point.preset), pool)
    if axes.get("cache") and not any(getattr(j.point, "engine", None) == "eager" for j in jobs):
        raise SuiteError(
            "--cache sets the eager engine's KV cache, and no point runs eager: compiled runs a static "
            "cache, hf-generate and hf-static their own (add --engine eager, or drop --cache)"
        )
    return _fitted(jobs, set(axes.get("preset") or ()))


def _fitted(jobs: list[Job], named: set[str]) -> list[Job]:
    """The jobs, each measured point that cannot fit its context or memory refused or marked to skip."""
    out, measured, unfit = [], 0, 0
    for job in jobs:
        runs = get_suite(job.suite)
        problem = None
        if runs.provenance == "measured" and isinstance(job.point, BenchPoint):
            measured += 1
            problem = fit_problem(job.point, runs.decodes)
            if problem and job.point.preset in named:
                raise SuiteError(problem)
            unfit += bool(problem)
        out.append(replace(job, skip=problem) if problem else job)
    if measured and unfit == measured:
        raise SuiteError(next(j.skip for j in out if j.skip))
    return out


def nvila_presets_only(axes: dict[str, list], what: str, hint: str = "") -> None:
    """A SuiteError naming the first peer VLM among the sweep's presets, where `what` serves NVILA only; `hint`
    (with {name}, the peer's) says what serves it instead."""
    for name in axes.get("preset", []):
        try:
            nvila_only(get_preset(name), what)
        except UnknownPresetError:
            continue  # the point refuses it with the list of known names
        except ValueError as e:
            raise SuiteError(f"{e}; {hint.format(name=name)}" if hint else str(e)) from None


def check_training(axes: dict[str, list], lr: float) -> None:
    """What a training step needs: a positive finite learning rate, and text for the loss to predict."""
    if not (math.isfinite(lr) and lr > 0):
        raise SuiteError(f"--lr must be a positive finite number, got {lr}")
    if any(n < 1 for n in axes.get("prompt_tokens", [])):
        raise SuiteError("training needs --prompt-tokens >= 1: the loss predicts the text tokens (none: NaN)")


def with_extra(point: BenchPoint, **extra) -> BenchPoint:
    return replace(point, extra=point.extra | extra)
