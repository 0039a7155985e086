"""The paper's published numbers, read from the package data file `core/paper.toml` (never typed into a
template). Every value read from here is provenance "paper"."""

from __future__ import annotations

import functools
import tomllib
from importlib import resources


@functools.cache
def paper_data() -> dict:
    text = resources.files("nvila_bench.core").joinpath("paper.toml").read_text()
    return tomllib.loads(text)


def claims() -> list[dict]:
    return paper_data()["claims"]


def decode_rates() -> list[dict]:
    return paper_data()["decode_rates"]


def accuracy_table(kind: str) -> dict[str, dict]:
    """lmms-eval task -> {"name": ..., preset: score, ...} for kind "image" or "video"."""
    return paper_data()["accuracy"][kind]
