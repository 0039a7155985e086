"""Accuracy suite: lmms-eval, run programmatically, over our model adapter (nvila_bench.suites.lmms_adapter).

Each task runs in its own `simple_evaluate` call, so one failing task cannot take the others' scores with
it; a task that raises, or returns no numeric score, is recorded as an error, never as a score (lmms-eval's
own CLI exits 0 after a failed task). Scores go into the shared results schema with the metric, n, the
standard error, the chance level where known, and the visual tokens per sample (for the accuracy /
token-count trade of temporal pooling).

Task groups: `synthetic` (offline, generated from a seed: nvila_bench.core.synthetic_tasks), `paper-image` and
`paper-video` (the lmms-eval tasks of the paper's accuracy tables; they need official weights and the
datasets in the local Hugging Face cache).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nvila_bench.core import synthetic_tasks as st
from nvila_bench.model import count_visual_tokens
from nvila_bench.core.results import make_record, metric

SYNTHETIC = (*st.TASKS, "synthetic_colour_gen")
CHANCE = st.CHANCE | {"synthetic_colour_gen": 0.25}  # a uniform guess among the four colours


def paper_tasks(kind: str) -> list[str]:
    from nvila_bench.reports import paper

    return list(paper.accuracy_table(kind))


@dataclass(frozen=True)
class AccuracyRun:
    preset: str | None
    checkpoint: str | None
    tasks: tuple[str, ...]
    limit: int | None = None
    device: str = "cpu"
    dtype: str | None = None
    temporal_pool: bool = True
    data_dir: str | None = None


def expand_tasks(spec: str) -> list[str]:
    """"synthetic", "paper-image", "paper-video" or task names, comma-separated, in order, no repeats."""
    out: list[str] = []
    for name in (t.strip() for t in spec.split(",")):
        if not name:
            continue
        group = {"synthetic": list(SYNTHETIC), "paper-image": None, "paper-video": None}.get(name, [name])
        if group is None:
            group = paper_tasks(name.split("-")[1])
        out += [t for t in group if t not in out]
    if not out:
        raise ValueError("no tasks given: use --tasks synthetic, paper-image, paper-video or lmms-eval task names")
    return out


def default_data_dir() -> Path:
    return Path(os.environ.get("NVILA_BENCH_DATA") or Path.home() / ".cache" / "nvila-bench" / "synthetic")


def check_tasks(run: AccuracyRun) -> list[str]:
    """Fail early (exit 2) on what cannot work: unknown task names, paper tasks without weights."""
    others = [t for t in run.tasks if t not in SYNTHETIC]
    if others and run.checkpoint is None:
        raise ValueError(
            f"{', '.join(others[:4])}{' ...' if len(others) > 4 else ''}: benchmark tasks need official weights "
            "(--checkpoint DIR); random-weight presets score at chance. Offline, use --tasks synthetic"
        )
    return others


def evaluate(run: AccuracyRun, run_id: str, environment: dict, on_record=None) -> list[dict]:
    """Run every task; returns the records (ok or error), calling `on_record` as each completes."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub here: fail fast on a missing dataset
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    others = [t for t in run.tasks if t not in SYNTHETIC]
    try:
        from lmms_eval.evaluator import simple_evaluate
        from lmms_eval.tasks import TaskManager
    except ImportError as e:
        raise ValueError(f"the accuracy suite needs lmms-eval (pip install 'nvila-bench[eval]'): {e}") from None
    from nvila_bench.suites.lmms_adapter import NVILABench

    data_dir = Path(run.data_dir) if run.data_dir else default_data_dir()
    if any(t in SYNTHETIC for t in run.tasks):
        if not (data_dir / "manifest.json").is_file():  # generate once; an existing set is used as it is
            st.generate(data_dir)
        include = str(st.write_lmms_tasks(data_dir))
    else:
        include = None
    manager = TaskManager("WARNING", include_path=include, include_defaults=bool(others))
    unknown = [t for t in run.tasks if t not in manager.all_tasks]
    if unknown:
        raise ValueError(f"unknown lmms-eval task(s): {', '.join(unknown)}")
    check_tasks(run)
    model = NVILABench(pretrained=run.checkpoint, preset=run.preset, device=run.device, dtype=run.dtype,
                       temporal_pool=run.temporal_pool)  # fmt: skip
    cfg = model.vlm.config
    records = []
    for task in run.tasks:
        config = {
            "preset": cfg.name, "device": run.device, "dtype": str(next(model.vlm.parameters()).dtype).split(".")[-1],
            "task": task, "checkpoint": run.checkpoint, "limit": run.limit, "temporal_pool": run.temporal_pool,
            "images": [], "extra": {"harness": "lmms-eval", "weights": "checkpoint" if run.checkpoint else "random"},
        }  # fmt: skip
        try:
            result = simple_evaluate(model=model, tasks=[task], limit=run.limit, task_manager=manager,
                                     log_samples=False, verbosity="WARNING")  # fmt: skip
            metrics = _score(result, task)
        except Exception as e:  # noqa: BLE001 - one task's failure is its record, the others go on
            message = f"{type(e).__name__}: {e}"
            if task not in SYNTHETIC:  # the usual cause offline: the dataset is not in the local cache
                cache = os.environ.get("HF_DATASETS_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
                message = f"{task} failed; its dataset must be in the local Hugging Face cache ({cache}), read offline: {message}"
            record = make_record("accuracy", config, {}, run_id, environment, "error", _one_line(message))
        else:
            metrics |= _tokens(cfg, task, run.temporal_pool)
            if CHANCE.get(task) is not None:
                metrics["chance"] = metric(CHANCE[task], "fraction", "analytic")
            record = make_record("accuracy", config, metrics, run_id, environment)
        records.append(record)
        if on_record:
            on_record(record)
    return records


def _score(result: dict | None, task: str) -> dict:
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
    out = {"score": metric(float(value), "fraction"), "n": metric(int(n) if n is not None else None, "samples")}
    out["metric"] = metric(name.split(",")[0], "text")
    if isinstance(stderr, (int, float)):
        out["stderr"] = metric(float(stderr), "fraction")
    return out


def _tokens(cfg, task: str, temporal_pool: bool) -> dict:
    """Visual tokens the LLM sees per sample of a synthetic task (96 x 96 images, 8-frame videos)."""
    if task not in SYNTHETIC:
        return {}
    if task == "synthetic_frame":
        count = count_visual_tokens(cfg, [], st.FRAMES, temporal_pool)
    else:
        count = count_visual_tokens(cfg, [(st.SIZE, st.SIZE)])
    return {"media_tokens": metric(count.total_tokens, "tokens", "analytic")}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:500]
