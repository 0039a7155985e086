"""Prefill suite: time to first token (TTFT) and where it goes.

One iteration = one request, as a server would handle it: preprocess the images (`--preprocess cpu`: PIL
resize, tiling, normalisation on the host; `gpu`: the uint8 image copied to the device once and tiled
there by tensor operations; decoding the file is not included, except for `--image-file`, whose files are
decoded inside the preprocessing stage: PIL for cpu, torchvision / nvJPEG on the device for gpu), run the vision tower,
the projector (S2
merge, STC, MLP, TSP), then splice the media into the prompt and run the LLM prefill up to the first token.
TTFT is the sum, as vLLM / MLPerf define it. The engine decides how the stages run (model/engines.py): the
compiled engine compiles the vision layers and the projector and replays the LLM prefill as one CUDA graph
captured for this context length; its one-time cost is `setup_seconds` (of which the graph captures:
`graph_capture_seconds`), outside the timed iterations.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from nvila_bench.model.stages import LLM_PREFILL, PREFILL_STAGES, PROJECTOR, VISION

from nvila_bench.core.measuring.results import Metric
from nvila_bench.core.measuring.specs import MetricSpec

from .common import (
    ENERGY_SPECS,
    ENGINE_NOTE,
    MEMORY_SPECS,
    SETUP_SPECS,
    STAGE_SPECS,
    TOKEN_SPECS,
    analytic_specs,
    measure_ttft,
    setup_metrics,
    token_metrics,
)
from .registry import Option, Suite, SuiteError, sweep_points, with_extra

if TYPE_CHECKING:
    from nvila_bench.core.measuring.point import BenchPoint
    from nvila_bench.core.measuring.session import Session

COSTED = (VISION, PROJECTOR, LLM_PREFILL)  # timed stages the cost model costs too (preprocessing is not)


def measure_point(point: BenchPoint, session: Session) -> dict[str, Metric]:
    import torch

    from nvila_bench.core.analysis.analytic import analytic_metrics
    from nvila_bench.core.measuring.energy import energy_metrics
    from nvila_bench.core.measuring.memory import memory_metrics

    run = measure_ttft(point, session)
    samples, engine = run.samples, run.engine
    metrics = {"ttft": Metric.timing(samples["total"])}
    metrics |= {stage: Metric.timing(samples[stage]) for stage in PREFILL_STAGES}
    metrics |= token_metrics(point)
    metrics["iterations"] = Metric.measured(len(samples["total"]), "count")
    metrics |= setup_metrics(run.setup)
    if engine.note:
        metrics["engine_note"] = Metric.measured(engine.note, "text")
    if point.images or point.video_frames:
        metrics["vision_attention"] = Metric.measured(engine.vision_attention(), "text")  # e.g. flash_attention
    llm_attention = engine.prefill_attention()  # the compiled engine's LLM prefill: its SDPA backend
    if llm_attention:
        metrics["llm_prefill_attention"] = Metric.measured(llm_attention, "text")
    metrics |= memory_metrics(torch.device(point.device))
    # Joules per prefilled position (media + prompt, every row of the batch), preprocessing and vision included.
    positions = metrics["sequence_tokens"].value * point.batch_size
    metrics |= energy_metrics(run.meter, len(samples["total"]) * positions)
    timed = {stage: stage for stage in COSTED}
    return metrics | analytic_metrics(point, metrics, timed, session.peaks_for(point.dtype))


def expand(axes: dict[str, list], options: dict) -> list[BenchPoint]:
    """The sweep; with `--image-file`, one request per file instead of `--image` sizes (the file's size
    from its header, so token counts and costs are the file's; the path recorded in the point)."""
    from nvila_bench.model.pipeline import image_file_size

    files = options.get("image_file") or ()
    if not files:
        return sweep_points(axes, {})
    if axes.get("images") or axes.get("video_frames"):
        raise SuiteError("give --image-file or --image / --video-frames, not both")
    points = []
    for path in files:
        try:
            size = image_file_size(path)
        except ValueError as e:
            raise SuiteError(str(e)) from None
        points += [
            with_extra(p, image_file=str(Path(path).resolve())) for p in sweep_points(axes | {"images": [(size,)]}, {})
        ]
    return points


METRICS = (
    MetricSpec("ttft", "s", "lower", gated=True, headline=True, help="Time to first token: the sum of the stages."),
    *(replace(spec, headline=spec.name in (VISION, LLM_PREFILL)) for spec in STAGE_SPECS),
    *(replace(spec, headline=spec.name == "media_tokens") for spec in TOKEN_SPECS),
    MetricSpec("iterations", "count", None, help="Timed requests."),
    *SETUP_SPECS,
    ENGINE_NOTE,
    MetricSpec("vision_attention", "text", None, help="The kernel the vision tower's attention runs."),
    MetricSpec("llm_prefill_attention", "text", None, help="The SDPA backend of the compiled LLM prefill."),
    *MEMORY_SPECS,
    *ENERGY_SPECS,
    *analytic_specs(COSTED),
)

SUITE = Suite(
    "prefill",
    "TTFT and its stages (preprocess, vision, projector, LLM prefill).",
    measure_point,
    options=(
        Option(
            "image_file",
            "An image file as the request's image (repeat for a sweep): decoded inside the "
            "timed preprocessing stage, nvJPEG on the GPU for JPEGs with --preprocess gpu.",
            multiple=True,
        ),
    ),
    expand=expand,
    metrics=METRICS,
)
