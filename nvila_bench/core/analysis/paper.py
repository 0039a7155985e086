"""The paper's published numbers, read from the package data file `core/analysis/paper.toml` (never typed into a
template). Every value read from here is provenance "paper"."""

from __future__ import annotations

import functools
from importlib import resources

import tomllib


@functools.cache
def paper_data() -> dict:
    text = resources.files("nvila_bench.core.analysis").joinpath("paper.toml").read_text()
    return tomllib.loads(text)


def claims() -> list[dict]:
    return paper_data()["claims"]


def decode_rates() -> list[dict]:
    return paper_data()["decode_rates"]


def accuracy_table(kind: str) -> dict[str, dict]:
    """lmms-eval task -> {"name": ..., preset: score, ...} for kind "image" or "video"; every preset key is
    flat (quoted in the TOML: a bare `vila1.5-8b` would be the nested table vila1 -> 5-8b, refused here)."""
    table = paper_data()["accuracy"][kind]
    for task, entry in table.items():
        nested = [k for k, v in entry.items() if isinstance(v, dict)]
        if nested:
            raise ValueError(
                f"paper.toml: accuracy.{kind}.{task}: key(s) {nested} hold tables; quote dotted preset names"
            )
    return table


def scores(entry: dict) -> dict[str, float]:
    """preset -> score of one accuracy row (its keys but "name")."""
    return {k: v for k, v in entry.items() if k != "name"}
