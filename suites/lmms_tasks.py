"""lmms-eval's tasks as the accuracy and deployment suites use them: the task groups (`synthetic`,
`paper-image`, `paper-video`), checks of task names and checkpoints before anything runs, and `score`, a task's
primary metric read from lmms-eval's result. Importing it loads neither torch nor lmms-eval."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from nvila_bench.model import get_preset

from nvila_bench.core.measuring import synthetic_tasks as st
from nvila_bench.core.measuring.results import Metric

from .registry import SuiteError

SYNTHETIC = (*st.TASKS, "synthetic_colour_gen")
CHANCE = st.CHANCE | {"synthetic_colour_gen": 0.25}  # a uniform guess among the four colours


def paper_tasks(kind: str) -> list[str]:
    from nvila_bench.core.analysis import paper

    return list(paper.accuracy_table(kind))


def lmms_task_names() -> set[str]:
    """lmms-eval's task names. Its task loader logs every file it skips at DEBUG through loguru; lmms-eval's
    logging goes to WARNING first, so that a bad task name is one line of error, not a page."""
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    from lmms_eval.tasks import TaskManager

    return set(TaskManager("WARNING").all_tasks)


def check_lmms_tasks(tasks: list[str], prefix: str = "") -> None:
    """SuiteError naming the tasks lmms-eval does not know (nothing is loaded when `tasks` is empty)."""
    if tasks:
        known = lmms_task_names()
        unknown = [t for t in tasks if t not in known]
        if unknown:
            raise SuiteError(f"{prefix}unknown lmms-eval task(s): {', '.join(unknown)}")


def check_checkpoint(checkpoint: str, prefix: str = "", preset: str | None = None) -> None:
    """SuiteError when the directory's config does not describe an NVILA / VILA checkpoint, or (given `preset`)
    describes another model than that preset: its records would carry the preset's name."""
    from nvila_bench.model.checkpoint_config import CheckpointError, config_from_checkpoint

    try:
        cfg = config_from_checkpoint(checkpoint)
    except CheckpointError as e:
        raise SuiteError(f"{prefix}{e}") from None
    if preset is not None:
        differ = model_differences(cfg, get_preset(preset))
        if differ:
            why = "; ".join(differ)
            raise SuiteError(
                f"{prefix}{checkpoint} is not a {preset} model ({why}): give the --preset it was trained from"
            )


SHAPES = {
    "vision": ("image_size", "patch_size", "hidden_size", "intermediate_size", "num_layers", "num_heads"),
    "llm": ("arch", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size", "vocab_size"),
    "projector": ("type", "mm_hidden_size", "hidden_size"),
}


def model_differences(checkpoint, preset) -> list[str]:
    """How a checkpoint's config differs from a preset's in family and shapes, e.g. "family vila1.5, not nvila"."""
    out = [] if checkpoint.family == preset.family else [f"family {checkpoint.family}, not {preset.family}"]
    for part, names in SHAPES.items():
        ours, theirs = getattr(checkpoint, part), getattr(preset, part)
        for n in names:
            if getattr(ours, n) != getattr(theirs, n):
                out.append(f"{part} {n} {getattr(ours, n)}, not {getattr(theirs, n)}")
    return out


def expand_tasks(spec: str, synthetic: tuple[str, ...] = SYNTHETIC) -> list[str]:
    """ "synthetic" (the tasks in `synthetic`), "paper-image", "paper-video" or task names, comma-separated, in
    order, no repeats."""
    out: list[str] = []
    for name in (t.strip() for t in spec.split(",")):
        if not name:
            continue
        group = {"synthetic": list(synthetic), "paper-image": None, "paper-video": None}.get(name, [name])
        if group is None:
            group = paper_tasks(name.split("-")[1])
        out += [t for t in group if t not in out]
    if not out:
        raise ValueError("no tasks given: use --tasks synthetic, paper-image, paper-video or lmms-eval task names")
    return out


def default_data_dir() -> Path:
    return Path(os.environ.get("NVILA_BENCH_DATA") or Path.home() / ".cache" / "nvila-bench" / "synthetic")


def score(result: dict | None, task: str) -> dict:
    """The task's primary metric, its stderr and n; ValueError when lmms-eval produced no numeric score."""
    if not result or task not in result.get("results", {}):
        raise ValueError(f"lmms-eval returned no results for {task}")
    row = result["results"][task]
    names = [k for k in row if k.endswith(",none") and "_stderr" not in k]
    if not names:
        raise ValueError(f"lmms-eval returned no metric for {task}: {sorted(row)}")
    name = names[0]
    value = row[name]
    if not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"lmms-eval returned a non-numeric {name} for {task}: {value!r}")
    stderr = row.get(name.replace(",none", "_stderr,none"))
    n = (result.get("n-samples", {}).get(task) or {}).get("effective")
    out = {
        "score": Metric.measured(float(value), "fraction", "higher"),
        "n": Metric.measured(int(n) if n is not None else None, "samples"),
    }
    out["metric"] = Metric.measured(name.split(",")[0], "text")
    if isinstance(stderr, (int, float)):
        out["stderr"] = Metric.measured(float(stderr), "fraction")
    return out
