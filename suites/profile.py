"""Profile one benchmark point: torch.profiler traces, top operators per stage, GPU memory, energy, overhead.

A step is one iteration of the profiled stage, split into named ranges:

    prefill  preprocess -> vision -> projector -> llm_prefill       (the prefill suite's iteration: TTFT)
    decode   llm_prefill of the embedded context -> decode_step x (new_tokens - 1)   (the decode suite's)
    train    preprocess -> vision -> projector -> llm_forward (loss) -> backward -> optimizer (the training
             suite's step: AdamW over every parameter that runs, the "full" stage)

Each range is a `record_function` (named in the traces and the operator tables) and, on CUDA, an NVTX range
(the same names in Nsight Systems). The run:

1. wait + warm-up + active steps under torch.profiler's schedule; the active ones are traced (CPU and CUDA
   activity, input shapes, memory, FLOPs, optionally Python stacks) and timed;
2. `repeats` steps timed the same way without the profiler, half before the profiled ones (after a warm-up
   step) and half after, so a machine that drifts (a shared CPU) biases neither side: the profiler's
   overhead is stated, not guessed. On a GPU the energy of these steps is metered (NVML, see energy.py);
3. on CUDA, one more step with the caching allocator's history on: a snapshot for pytorch.org/memory_viz
   and the peak split into weights, gradients, optimizer state and the rest.

Outputs under OUT: `tb/<preset>-<stage>/` (tensorboard_trace_handler, for torch-tb-profiler), the same trace
as `<preset>-<stage>.trace.json` (chrome://tracing, ui.perfetto.dev), `<preset>-<stage>.memory.pickle`
(CUDA), and a "profile" record in results.jsonl.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from nvila_bench.model.stages import DECODE_STEP, LLM_PREFILL, PREFILL_STAGES, PREPROCESS, TRAIN_STAGES

from nvila_bench.core.measuring.results import Metric
from nvila_bench.core.measuring.specs import MetricSpec

from .common import ENERGY_SPECS, MEMORY_SPECS
from .registry import Option, Suite, SuiteError, nvila_presets_only, sweep_points, with_extra

if TYPE_CHECKING:
    from nvila_bench.core.measuring.point import BenchPoint
    from nvila_bench.core.measuring.session import Session

STAGE_RANGES = {
    "prefill": PREFILL_STAGES,
    "decode": (LLM_PREFILL, DECODE_STEP),
    "train": (PREPROCESS, *TRAIN_STAGES),
}


@dataclass(frozen=True)
class Schedule:
    """torch.profiler's schedule: `wait` steps idle, `warmup` steps traced and discarded, `active` kept."""

    wait: int = 1
    warmup: int = 1
    active: int = 3

    def __post_init__(self):
        if self.wait < 0 or self.warmup < 0 or self.active < 1:
            raise ValueError(f"bad profiler schedule {self}: need wait >= 0, warmup >= 0, active >= 1")


def measure_point(point: BenchPoint, session: Session) -> dict[str, Metric]:
    """The registry's entry: the point's `extra` holds the stage, the schedule and the table settings."""
    from .profiler import profile_point

    extra = point.extra
    schedule = Schedule(**extra["schedule"])
    session.release()  # the profiler builds its own model (train changes the weights)
    return profile_point(
        point, extra["stage"], schedule, session.out_dir, session.measure.repeats, extra["top"], extra["with_stack"]
    )


def expand(axes: dict[str, list], options: dict) -> list[BenchPoint]:
    nvila_presets_only(axes, "the profile suite (NVILA's stage ranges)")
    if options["stage"] not in STAGE_RANGES:
        raise SuiteError(f"--stage must be one of {', '.join(STAGE_RANGES)}")
    if options["stage"] == "decode" and any(n < 2 for n in axes.get("new_tokens", [])):
        raise SuiteError("profiling decode needs --new-tokens >= 2 (the first token comes from the prefill)")
    try:
        schedule = Schedule(options["wait"], options["schedule_warmup"], options["active"])
    except ValueError as e:
        raise SuiteError(str(e)) from None
    extra = {
        "stage": options["stage"],
        "schedule": {"wait": schedule.wait, "warmup": schedule.warmup, "active": schedule.active},
        "with_stack": bool(options["with_stack"]),
        "top": options["top"],
    }
    return [with_extra(p, **extra) for p in sweep_points(axes, {})]


METRICS = (
    MetricSpec("unprofiled_step_time", "s", "lower", headline=True, help="One step's time without the profiler."),
    MetricSpec("profiled_step_time", "s", "lower", help="One step's time under the profiler."),
    MetricSpec("profiler_overhead", "ratio", "lower", headline=True, help="Profiled over unprofiled step time."),
    MetricSpec("stage_times", "per step", None, help="Each stage's ranges: wall, self CPU / CUDA time and FLOPs."),
    MetricSpec("top_ops", "per step", None, help="The operators that took the most time, per stage."),
    MetricSpec("tokens_per_step", "tokens", None, help="Tokens one step processes (for J/token)."),
    MetricSpec("chrome_trace", "path", None, help="The trace for chrome://tracing or ui.perfetto.dev."),
    MetricSpec("tensorboard_dir", "path", None, help="The trace for TensorBoard's profiler plugin."),
    *ENERGY_SPECS,
    *(spec for spec in MEMORY_SPECS if spec.name != "peak_rss"),  # one more step under the allocator's history
    MetricSpec("peak_memory_breakdown", "bytes", None, help="The peak split: weights, gradients, optimizer, rest."),
    MetricSpec("memory_snapshot", "path", None, help="The allocator's snapshot for pytorch.org/memory_viz."),
)

SUITE = Suite(
    "profile",
    "torch.profiler traces, top operators per stage, the profiler's overhead (also `nvila-bench profile`).",
    measure_point,
    view="profile",  # its report section: reports/views/profile.py
    options=(
        Option("stage", "What one profiled step runs: prefill, decode or train.", tuple(STAGE_RANGES), "prefill"),
        Option("wait", "Schedule: steps before tracing.", int, 1),
        Option("schedule_warmup", "Schedule: traced steps discarded.", int, 1),
        Option("active", "Schedule: traced steps kept.", int, 3),
        Option("top", "Operators kept per stage.", int, 10),
        Option("with_stack", "Record Python stacks (larger traces, more overhead).", bool, False),
    ),
    expand=expand,
    decodes=True,  # a decode profile generates --new-tokens; prefill and train profiles count them too
    metrics=METRICS,
)
