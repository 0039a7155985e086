"""The `train` and `finetune-memory` suites' report view: training throughput and fine-tuning memory per point,
each part measured beside the memory model's prediction."""

from __future__ import annotations

from nvila_bench.core.measuring.results import Record

from ..claims import not_measured
from ..records import hardware_of, point_label, value

TITLE = "Training"  # the page's navigation
ANCHOR = "training"  # the section's id


def training(records: list[Record]) -> dict:
    """Training throughput and fine-tuning memory records, with the paper's Table 5 / 6 settings beside."""
    train = [r for r in records if r.suite == "train" and r.ok]
    ft = [r for r in records if r.suite == "finetune-memory" and r.ok]
    return {
        "train": [
            {
                "label": point_label(r),
                "hardware": hardware_of(r),
                "samples_per_s": value(r, "samples_per_s"),
                "tokens_per_s": value(r, "tokens_per_s"),
                "step_time": value(r, "step_time"),
                "peak": value(r, "peak_memory_allocated"),
                "mfu": value(r, "mfu"),
            }
            for r in train
        ],
        "finetune": [
            {
                "label": point_label(r),
                "hardware": hardware_of(r),
                "peak": value(r, "peak_memory_allocated"),
                "counted": value(r, "memory_counted"),
                "predicted": value(r, "peak_memory_predicted"),
                "its": value(r, "iterations_per_s"),
                "trainable": value(r, "trainable_params"),
                "parts": [
                    (part, value(r, f"{part}_bytes"), value(r, f"{part}_bytes_predicted"))
                    for part in ("weights", "gradients", "optimizer", "activations")
                ],
                "provenance": r.provenance,
            }
            for r in ft
        ],
        "missing": [
            m
            for m, have in (
                (
                    not_measured("train", "nvila-bench run train --preset nvila-lite-2b --device cuda --out results/"),
                    train,
                ),
                (
                    not_measured(
                        "finetune-memory",
                        "nvila-bench run finetune-memory --preset nvila-8b --device cuda --out results/",
                    ),
                    ft,
                ),
            )
            if not have
        ],
    }


def build(records: list[Record]) -> dict:
    return training(records)
