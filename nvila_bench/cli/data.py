"""The synthetic accuracy tasks: generate them, train a tiny model on them."""

from __future__ import annotations

import click

from nvila_bench.model.presets import get_preset, nvila_only

from .common import check_output, writing


def register(cli: click.Group) -> None:
    for command in (synthetic_data, train_synthetic_command):
        cli.add_command(command)


@click.command(name="synthetic-data")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Directory for the data.")
@click.option("--seed", default=0, show_default=True, type=int)
def synthetic_data(out_dir, seed):
    """Write the synthetic tasks (images, splits, lmms-eval task YAMLs) to OUT."""
    from nvila_bench.core.measuring.synthetic_tasks import generate, write_lmms_tasks

    check_output(out_dir, directory=True)  # a file in the way is one line, before any image is made
    with writing(out_dir):
        root = generate(out_dir, seed)
    click.echo(f"synthetic tasks -> {root}; lmms-eval include path {write_lmms_tasks(root)}", err=True)


@click.command(name="train-synthetic")
@click.option("--preset", required=True, help="A tiny preset to train (e.g. vila-tiny).")
@click.option(
    "--tasks", default="synthetic_colour,synthetic_count", show_default=True, help="Synthetic tasks to train on."
)
@click.option("--steps", default=200, show_default=True, type=click.IntRange(1, 10**6))
@click.option(
    "--batch-size",
    default=8,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="Samples per step (a tiny model on CPU).",
)
@click.option("--lr", default=1e-3, show_default=True, type=float)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--no-temporal-pool", is_flag=True, help="Train the video task without TSP.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Synthetic data [~/.cache/nvila-bench/synthetic].")
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Checkpoint directory (official layout)."
)
def train_synthetic_command(preset, tasks, steps, batch_size, lr, seed, no_temporal_pool, data_dir, out_dir):
    """Train a tiny preset on the synthetic tasks' train split; save a checkpoint for `run accuracy --checkpoint`."""
    from nvila_bench.core.measuring.synthetic_tasks import TASKS
    from nvila_bench.suites.accuracy import default_data_dir
    from nvila_bench.suites.synthetic_train import save_trained, train_synthetic

    names = [t.strip() for t in tasks.split(",") if t.strip()]
    bad = [t for t in names if t not in TASKS]
    if bad or not names:
        raise click.UsageError(f"unknown synthetic task(s) {', '.join(bad) or '(none)'}; known: {', '.join(TASKS)}")
    if not get_preset(preset).is_tiny:
        raise click.UsageError(f"train-synthetic trains tiny presets on CPU; {preset!r} is not one")
    nvila_only(get_preset(preset), "train-synthetic")
    check_output(out_dir, directory=True)  # before training, not after
    if data_dir:
        check_output(data_dir, "--data-dir", directory=True)
    model, tokenizer, losses = train_synthetic(
        preset,
        data_dir or default_data_dir(),
        names,
        steps,
        batch_size,
        lr,
        seed,
        not no_temporal_pool,
        log=lambda m: click.echo(m, err=True),
    )
    with writing(out_dir):
        path = save_trained(model, tokenizer, out_dir)
    click.echo(
        f"trained {preset} {steps} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}; checkpoint -> {path}", err=True
    )
