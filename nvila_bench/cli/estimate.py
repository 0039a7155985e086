"""`nvila-bench estimate`: analytic estimates (no measurement)."""

from __future__ import annotations

import click

from .common import ImageSize, emit


def register(cli: click.Group) -> None:
    cli.add_command(estimate)


@click.group()
def estimate():
    """Analytic estimates (no measurement)."""


@estimate.command(name="training-cost")
@click.option("--hardware", default="h100-sxm", show_default=True, help="Hardware table entry (its bf16 peak).")
@click.option(
    "--image", type=ImageSize(), default="1920x1080", show_default=True, help="Image size of a training sample."
)
@click.option(
    "--text-tokens",
    default=128,
    show_default=True,
    type=click.IntRange(min=0),
    help="Text tokens per sample (an assumption).",
)
@click.option(
    "--samples",
    "samples",
    multiple=True,
    help="STAGE=N samples (repeat); default: the SFT stage's 10M (docs/reference.md#training-and-fine-tuning-recipes).",
)
@click.option(
    "--mfu",
    default=0.4,
    show_default=True,
    type=float,
    help="Model FLOPs utilisation assumed for both models (model FLOPs: full attention, as the train suite's MFU).",
)
@click.option(
    "--results", "results", multiple=True, type=click.Path(), help="Results with train records: measured FP8 speed-up."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False), help="Also write an analytic record to OUT/results.jsonl."
)
def training_cost(hardware, image, text_tokens, samples, mfu, results, as_json, out_dir):
    """GPU-hours of NVILA-8B vs VILA1.5-8B and the factors behind the ratio: tokens, FP8, data pruning."""
    from nvila_bench.core.analysis import training_cost as tc

    counts = {}
    for item in samples:
        stage, _, n = item.partition("=")
        if not stage or not n.strip().replace("_", "").isdigit():
            raise click.UsageError(f"--samples {item!r}: expected STAGE=N, e.g. sft=5000000")
        counts[stage] = int(n.replace("_", ""))
    fp8 = None
    if results:
        from nvila_bench.core.measuring.result_files import load_results

        fp8 = tc.measured_fp8_factor(load_results(results))
    est = tc.estimate(hardware, image, text_tokens, counts or None, mfu, *(fp8 or (None, "")))
    data = {
        "hardware": est.hardware,
        "image": f"{image[0]}x{image[1]}",
        "text_tokens": text_tokens,
        "samples": est.samples,
        "mfu_assumed": mfu,
        "tokens_per_sample": est.tokens,
        "train_flops_per_sample": est.flops,
        "gpu_hours": {p: est.gpu_hours(p) for p in est.flops},
        "factors": {"tokens": est.token_factor, "fp8": est.fp8_factor, "pruning": est.prune_factor},
        "fp8_source": est.fp8_source,
        "cost_ratio": est.cost_ratio,
        "paper_claim": 4.5,
    }
    lines = [
        f"training cost on {est.hardware} at {mfu:.0%} MFU, {sum(est.samples.values()):,} samples "
        f"({image[0]}x{image[1]} + {text_tokens} text tokens)",
        f"  {'':<12}{'tokens/sample':>14}{'TFLOP/sample':>14}{'GPU-hours':>12}",
    ]
    for p in est.flops:
        lines.append(f"  {p:<12}{est.tokens[p]:>14,}{est.flops[p] / 1e12:>14.1f}{est.gpu_hours(p):>12,.0f}")
    lines += [
        f"  VILA1.5-8B / NVILA-8B = {est.cost_ratio:.2f}x (paper: 4.5x) = tokens {est.token_factor:.2f}x"
        f" x FP8 {est.fp8_factor:.2f}x x pruning {est.prune_factor:.1f}x",
        f"  FP8 from {est.fp8_source}",
    ]
    emit(data, as_json, "\n".join(lines))
    if out_dir:
        from nvila_bench.core.measuring.result_files import ResultWriter
        from nvila_bench.core.measuring.results import Metric, Record, new_run_id

        m = {
            "cost_ratio": Metric.analytic(est.cost_ratio, "x", "higher"),
            "token_factor": Metric.analytic(est.token_factor, "x"),
            "fp8_factor": Metric(est.fp8_factor, "x", "measured" if est.fp8_source.startswith("measured") else "paper"),
            "pruning_factor": Metric(est.prune_factor, "x", "paper"),
            "nvila_gpu_hours": Metric.analytic(est.gpu_hours(est.nvila), "GPU-h", "lower"),
            "vila_gpu_hours": Metric.analytic(est.gpu_hours(est.baseline), "GPU-h", "lower"),
        }
        config = {
            "preset": "nvila-8b",
            "device": "cuda",
            "hardware": est.hardware,
            "dtype": "bfloat16",
            "images": [data["image"]],
            "prompt_tokens": text_tokens,
            "extra": {"baseline": est.baseline, "mfu": mfu, "samples": est.samples},
        }
        writer = ResultWriter(out_dir)
        writer.write(Record("training-cost", config, m, new_run_id(), provenance="analytic"))
        click.echo(f"training-cost: 1 record -> {writer.path}", err=True)
