"""Timing: CUDA events on GPU, `perf_counter_ns` on CPU, with warm-up and adaptive repeats.

An iteration is a function that calls `clock.lap("stage")` after each stage; the clock records one event
(GPU) or one timestamp (CPU) per lap and nothing else, so the harness adds microseconds per iteration.
GPU events are read only after the iteration, behind one synchronize, so timing never stalls the stream
mid-iteration.

Testing hook (CPU only): NVILA_BENCH_SLOWDOWN=1.10 stretches every stage by 10% with a busy wait before its
lap, a real slowdown the regression gate's tests must catch.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .settings import setting

if TYPE_CHECKING:  # torch loads where a point is measured, not where a command line is read
    import torch

MAX_SECONDS = 3600.0
MAX_ITERATIONS = 10**6  # warm-up or measured iterations of one point: a larger count would run for days


def _count(default: int, minimum: int, help: str):
    return setting(default, kind=int, minimum=minimum, maximum=MAX_ITERATIONS, axis=False, repeat=False, help=help)


def _seconds(default: float, help: str):
    return setting(default, kind=float, minimum=0.0, maximum=MAX_SECONDS, unit="s", axis=False, repeat=False, help=help)


@dataclass(frozen=True)
class MeasureConfig:
    """When to stop warming up and when to stop measuring (both conditions must hold). Each field is a command-line
    option of every `nvila-bench run` suite (core/measuring/settings.py)."""

    warmup: int = _count(2, 0, "Minimum warm-up iterations.")  # at least this many warm-up iterations ...
    warmup_seconds: float = _seconds(0.0, "Minimum warm-up time.")  # ... and at least this long warming up
    repeats: int = _count(5, 1, "Minimum measured iterations.")  # at least this many measured iterations ...
    min_seconds: float = _seconds(1.0, "Minimum measuring time per point.")  # ... and at least this long measuring
    max_repeats: int = _count(1000, 1, "Cap on measured iterations.")  # hard cap, whatever min_seconds says

    def __post_init__(self):
        if self.warmup < 0 or self.repeats < 1 or self.max_repeats < self.repeats:
            raise ValueError("need warmup >= 0 and 1 <= repeats <= max_repeats")
        if self.warmup_seconds < 0 or self.min_seconds < 0:
            raise ValueError("warmup_seconds and min_seconds must be >= 0")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


class StageClock:
    """Marks stage boundaries inside one iteration: `lap(name)` ends the stage called `name`."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.names: list[str] = []
        self.marks: list = []
        self.slowdown = 1.0 if self.cuda else float(os.environ.get("NVILA_BENCH_SLOWDOWN") or 1.0)

    def start(self) -> None:
        self.names.clear()
        self.marks = [self._mark()]

    def lap(self, name: str) -> None:
        if self.slowdown != 1.0:  # testing hook: spin until the stage has taken `slowdown` times as long
            began = self.marks[-1]
            until = began + (time.perf_counter_ns() - began) * self.slowdown
            while time.perf_counter_ns() < until:
                pass
        self.names.append(name)
        self.marks.append(self._mark())

    @contextlib.contextmanager
    def section(self, name: str):
        """`with clock.section(name):` runs one stage and laps it (the pipeline's `section` argument)."""
        yield
        self.lap(name)

    def _mark(self):
        if self.cuda:
            import torch

            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter_ns()

    def durations(self) -> list[tuple[str, float]]:
        """(stage, seconds) per lap of the iteration just finished (call after synchronize)."""
        return [
            (name, a.elapsed_time(b) / 1e3 if self.cuda else (b - a) / 1e9)
            for name, a, b in zip(self.names, self.marks, self.marks[1:])
        ]


def measure(
    iteration: Callable[[StageClock], None],
    device: torch.device,
    cfg: MeasureConfig,
    region: contextlib.AbstractContextManager | None = None,
) -> dict[str, list[float]]:
    """Warm up, then repeat `iteration` until cfg's count and duration are both met.

    Returns samples in seconds per stage name (a stage lapped k times per iteration, like a decode step,
    contributes k samples per iteration) plus "total" (first to last mark of each iteration). `region` (e.g.
    an energy meter) is entered after the warm-up and left after the last measured iteration's synchronize.
    """
    clock = StageClock(device)
    began, done = time.perf_counter(), 0
    while done < cfg.warmup or time.perf_counter() - began < cfg.warmup_seconds:
        clock.start()
        iteration(clock)
        synchronize(device)
        done += 1
    samples: dict[str, list[float]] = {}
    with region or contextlib.nullcontext():
        began, done = time.perf_counter(), 0
        while done < cfg.max_repeats and (done < cfg.repeats or time.perf_counter() - began < cfg.min_seconds):
            clock.start()
            iteration(clock)
            synchronize(device)
            laps = clock.durations()
            for name, seconds in laps:
                samples.setdefault(name, []).append(seconds)
            samples.setdefault("total", []).append(sum(seconds for _, seconds in laps))
            done += 1
    return samples


def timed_once(work: Callable[[], None], device: torch.device) -> float:
    """Seconds of one call of `work`, device work included (one-time costs: compile, graph capture)."""
    synchronize(device)
    began = time.perf_counter()
    work()
    synchronize(device)
    return time.perf_counter() - began


class OneTimeClock:
    """Seconds of named one-time sections inside a setup (a CUDA graph capture within compile + capture), device
    work included, summed over repeats in `clock.seconds[name]` (suites/prefill.py `timed_setup` hands
    `clock.section` to the engine)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def section(self, name: str):
        synchronize(self.device)
        began = time.perf_counter()
        yield
        synchronize(self.device)
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - began
