"""Synthetic result records (`Record` objects, as `read_results` returns them) for the report, dashboard and
gate tests."""

import functools
from dataclasses import replace

import numpy as np
from nvila_bench.model.stages import PREFILL_STAGES
from nvila_bench.reports.render import render_report

from nvila_bench.core.measuring.results import Metric, Record
from nvila_bench.core.measuring.specs import MetricSpec, SuiteOutputs

CPU_ENV = {
    "device": "cpu",
    "cpu_model": "Test CPU",
    "cpu_count": 2,
    "torch": "2.13.0",
    "transformers": "5.24.0",
    "gpu": None,
    "git_revision": "a" * 40,
    "git_dirty": False,
    "platform": "Linux",
}
GPU_ENV = CPU_ENV | {
    "device": "cuda",
    "torch_device_name": "NVIDIA H100 80GB HBM3",
    "gpu": [{"name": "NVIDIA H100 80GB HBM3"}],
}
STAGE_SHARES = dict(zip(PREFILL_STAGES, (0.1, 0.5, 0.1, 0.3)))  # preprocess, vision, projector, LLM prefill


def samples(median: float, n: int = 200, cv: float = 0.03, seed: int = 0) -> list[float]:
    """Log-normal timing noise around `median` (timings are skewed, never negative)."""
    return (median * np.exp(np.random.default_rng(seed).normal(0.0, cv, n))).tolist()


def config(preset="nvila-tiny", env=CPU_ENV, images=("448x448",), extra=None) -> dict:
    return {
        "preset": preset,
        "device": env["device"],
        "dtype": "float32",
        "images": list(images),
        "video_frames": None,
        "temporal_pool": True,
        "prompt_tokens": 64,
        "batch_size": 1,
        "new_tokens": 32,
        "attn_implementation": "sdpa",
        "cache": "dynamic",
        "seed": 0,
        "extra": extra or {},
    }


def prefill_record(
    preset="nvila-tiny", ttft=0.1, seed=0, env=CPU_ENV, run_id="run-a", images=("448x448",), extra=None, **kw
) -> Record:
    values = samples(ttft, seed=seed, **kw)
    metrics = {"ttft": Metric.timing(values), "media_tokens": Metric.measured(257, "tokens")}
    for stage, share in STAGE_SHARES.items():
        metrics[stage] = Metric.timing([v * share for v in values])
    return Record("prefill", config(preset, env, images, extra), metrics, run_id, environment=env)


def decode_record(
    preset="nvila-tiny", tpot=0.001, seed=0, env=CPU_ENV, run_id="run-a", images=("448x448",), extra=None, **settings
) -> Record:
    """A decode-suite point; `settings` override config fields (e.g. new_tokens=8)."""
    values = samples(tpot, seed=seed)
    metrics = {
        "tpot": Metric.timing(values),
        "decode_tokens_per_s": Metric.rate(values, 1, "tokens/s"),
        "prefill": Metric.timing(samples(0.05, seed=seed + 1)),
    }
    return Record("decode", config(preset, env, images, extra) | settings, metrics, run_id, environment=env)


def train_record(
    preset="nvila-tiny", step_time=0.2, mfu=0.4, seed=0, env=CPU_ENV, run_id="run-a", extra=None
) -> Record:
    """A train-suite point: step time and samples/s with samples, and an MFU derived from the step time."""
    values = samples(step_time, seed=seed)
    metrics = {
        "step_time": Metric.timing(values),
        "samples_per_s": Metric.rate(values, 1, "samples/s"),
        "mfu": Metric.utilisation(mfu, of="step_time"),
        "trainable_params": Metric.measured(1000, "params"),
    }
    cfg = config(preset, env) | {"new_tokens": None, "cache": None}
    return Record("train", cfg | {"extra": {"stage": "full"} | (extra or {})}, metrics, run_id, environment=env)


RTX4090_ENV = GPU_ENV | {"torch_device_name": "NVIDIA GeForce RTX 4090", "gpu": [{"name": "NVIDIA GeForce RTX 4090"}]}
W4A16 = {"llm_weights": "w4a16", "scales": "activation-aware", "int4_kernel": "gemlite"}  # the w4a16-llm rung's extra


def rung_record(
    preset="nvila-8b",
    ttft=0.1,
    tps=100.0,
    rung="w4a16-llm",
    env=RTX4090_ENV,
    run_id="run-d",
    frames=None,
    engine="compiled",
    formats=None,
) -> Record:
    """A deployment-suite rung (bf16 activations) of the image request, or of a video of `frames` frames: TTFT and its
    stages, decode rate and TPOT, GPU peak. `formats` (the rung's extra) default to W4A16's on the w4a16-llm rung."""
    formats = (W4A16 if rung == "w4a16-llm" else {}) if formats is None else formats
    extra = {"rung": rung, "media": "video" if frames else "image"} | formats
    cfg = config(preset, env, () if frames else ("1920x1080",), extra)
    cfg |= {"dtype": "bfloat16", "engine": engine, "video_frames": frames, "cache": "static"}
    values = samples(ttft)
    metrics = {
        "ttft": Metric.timing(values),
        "decode_tokens_per_s": Metric.measured(tps, "tokens/s", "higher"),
        "tpot": Metric.timing(samples(1 / tps)),
        "media_tokens": Metric.measured(257, "tokens"),
        "peak_memory_allocated": Metric.measured(6 * 2**30, "bytes", "lower", "max"),
    }
    for stage, share in STAGE_SHARES.items():
        metrics[stage] = Metric.timing([v * share for v in values])
    return Record("deployment", cfg, metrics, run_id, environment=env)


# ---- what the CLI hands the report, gate and dashboard: the suites' declarations ---------------------------
# The gate's defaults before each suite declared its gated metrics (issue 31): the suites whose records held them
# (prefill, decode, train, deployment) gate them until they declare their own, so the tests keep today's verdicts.
FORMER_GATED = (
    MetricSpec("ttft", "s", "lower", gated=True),
    MetricSpec("tpot", "s", "lower", gated=True),
    MetricSpec("decode_tokens_per_s", "tokens/s", "higher", gated=True),
    MetricSpec("step_time", "s", "lower", gated=True),
    MetricSpec("samples_per_s", "samples/s", "higher", gated=True),
)
GATED = {suite: tuple(m.name for m in FORMER_GATED) for suite in ("prefill", "decode", "train", "deployment")}


@functools.cache
def declared() -> dict[str, SuiteOutputs]:
    """Every registered suite's declared outputs, as `nvila-bench report / gate / dashboard` pass them; a suite of
    GATED that declares no gated metric yet gates FORMER_GATED."""
    from nvila_bench.suites.registry import declared_outputs

    def former(o: SuiteOutputs) -> SuiteOutputs:
        if o.gated or o.suite not in GATED:
            return o
        return replace(o, metrics=o.metrics + tuple(m for m in FORMER_GATED if not o.spec(m.name)))

    return {name: former(o) for name, o in declared_outputs().items()}


def report_html(records: list[Record], sources=("x.jsonl",), title: str = "nvila-bench report") -> str:
    """The HTML report of the records, rendered with every suite's declarations as the CLI renders it."""
    return render_report(records, list(sources), declared(), title)


def report_data(records: list[Record]) -> dict:
    """What the report's template shows of the records (`sections.build`), with every suite's declarations."""
    from nvila_bench.reports import sections

    return sections.build(records, ["x.jsonl"], declared())


def html_section(html: str, anchor: str) -> str:
    """One section of a report or dashboard page, by its id: from its opening tag to its end."""
    start = html.index(f'<section id="{anchor}">')
    return html[start : html.index("</section>", start) + len("</section>")]
