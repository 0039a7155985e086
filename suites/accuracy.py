"""Accuracy suite: lmms-eval, run programmatically, over our model adapter (nvila_bench.suites.lmms_adapter) for
NVILA / VILA1.5, and over lmms-eval's own adapter of the family for a peer VLM's checkpoint (suites/lmms_peers.py).

Each task is a point: its own `simple_evaluate` call, so one failing task cannot take the others' scores
with it; a task that raises, or returns no numeric score, is recorded as an error, never as a score (lmms-eval's
own CLI exits 0 after a failed task). Scores go into the shared results schema with the metric, n, the
standard error, the chance level where known, and the visual tokens per sample (for the accuracy /
token-count trade of temporal pooling).

Task groups: `synthetic` (offline, generated from a seed: nvila_bench.core.measuring.synthetic_tasks), `paper-image` and
`paper-video` (the lmms-eval tasks of the paper's accuracy tables; they need official weights and the
datasets in the local Hugging Face cache).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nvila_bench.model import count_visual_tokens, get_preset

from nvila_bench.core.measuring import synthetic_tasks as st
from nvila_bench.core.measuring.point import canonical_dtype
from nvila_bench.core.measuring.results import Metric
from nvila_bench.core.measuring.specs import MetricSpec

from . import lmms_peers
from .lmms_tasks import (
    CHANCE,
    SYNTHETIC,
    check_checkpoint,
    check_lmms_tasks,
    default_data_dir,
    expand_tasks,
    score,
)
from .registry import Option, Suite, SuiteError, nvila_presets_only

if TYPE_CHECKING:
    from nvila_bench.core.measuring.session import Session


@dataclass(frozen=True)
class TaskPoint:
    """One lmms-eval task on one model: a random-weight preset, an official-layout checkpoint, or a peer VLM's
    transformers-layout checkpoint (`peer`: its kind, scored by lmms-eval's adapter `lmms_model`)."""

    task: str
    preset: str | None
    checkpoint: str | None
    limit: int | None = None
    device: str = "cpu"
    dtype: str | None = None
    temporal_pool: bool = True
    data_dir: str | None = None
    peer: str | None = None
    lmms_model: str = "nvila_bench"

    extra = {}  # no suite settings beyond the fields (the runner reads a point's `extra`)

    @property
    def label(self) -> str:
        return f"{self.preset or self.checkpoint} {self.task}"

    def to_config(self) -> dict:
        dtype = canonical_dtype(self.dtype or ("bfloat16" if self.device.startswith("cuda") else "float32"))
        weights = "checkpoint" if self.checkpoint else "random"
        extra = {"harness": "lmms-eval", "lmms_model": self.lmms_model, "weights": weights}
        config = {
            "preset": self.preset or Path(self.checkpoint).name,
            "device": self.device,
            "dtype": dtype,
            "task": self.task,
            "checkpoint": self.checkpoint,
            "limit": self.limit,
            "temporal_pool": self.temporal_pool,
            "images": [],
            "extra": extra,
        }
        return config | ({"family": "peer"} if self.peer else {})


def expand(axes: dict[str, list], options: dict) -> list[TaskPoint]:
    """One point per task; fails early (exit 2) on what cannot work: no tasks, unknown task names, benchmark
    tasks without weights, a missing checkpoint, several models."""
    presets, checkpoint = axes.get("preset", []), options.get("checkpoint")
    if not options.get("tasks"):
        raise SuiteError("accuracy needs --tasks (e.g. --tasks synthetic)")
    if bool(checkpoint) == bool(presets) or len(presets) > 1:
        raise SuiteError("accuracy takes one --preset (random weights) or --checkpoint DIR")
    refuse_peer_presets(presets)
    nvila_presets_only(axes, "the accuracy suite (NVILA's prompts and lmms-eval adapter)")
    if checkpoint and not Path(checkpoint).is_dir():
        raise SuiteError(f"--checkpoint {checkpoint}: no such directory")
    if len(axes.get("dtype", [])) > 1:
        raise SuiteError("accuracy takes one --dtype")
    device = axes.get("device", ["cpu"])[0]
    dtype = axes.get("dtype", [None])[0]
    peer = check_peer_checkpoint(checkpoint) if checkpoint else None
    if checkpoint and not peer:  # a broken config refuses the run up front, not as an error record
        check_checkpoint(checkpoint)
    if peer:
        return expand_peer(peer, checkpoint, options, device, dtype, axes.get("temporal_pool", [True])[0])
    tasks = expand_tasks(options["tasks"])
    others = [t for t in tasks if t not in SYNTHETIC]
    check_lmms_tasks(others)
    if others and checkpoint is None:
        raise SuiteError(
            f"{', '.join(others[:4])}{' ...' if len(others) > 4 else ''}: benchmark tasks need official weights "
            "(--checkpoint DIR); random-weight presets score at chance. Offline, use --tasks synthetic"
        )
    temporal_pool = axes.get("temporal_pool", [True])[0]
    return [
        TaskPoint(
            t,
            presets[0] if presets else None,
            checkpoint,
            options.get("limit"),
            device,
            dtype,
            temporal_pool,
            options.get("data_dir"),
        )
        for t in tasks
    ]


def refuse_peer_presets(presets: list[str]) -> None:
    """A peer preset (random weights, no tokenizer) in one line: lmms-eval's adapters load a peer from a directory."""
    from nvila_bench.model.presets import UnknownPresetError, is_peer

    for name in presets:
        try:
            cfg = get_preset(name)
        except UnknownPresetError:
            continue  # the point refuses it with the list of known names
        if is_peer(cfg):
            model = lmms_peers.FAMILIES[cfg.kind].model
            raise SuiteError(
                f"a peer VLM is scored from a checkpoint: --checkpoint DIR (transformers' layout with its tokenizer), "
                f"which lmms-eval's {model} adapter loads; --preset {name} has random weights and no tokenizer"
            )


def check_peer_checkpoint(checkpoint: str) -> str | None:
    """The peer kind of a transformers-layout checkpoint (config.json's model_type), after checking its config and
    tokenizer; None for an NVILA / VILA checkpoint."""
    from nvila_bench.model.peer_checkpoint_config import peer_config_from_checkpoint, peer_model_type

    try:
        kind = peer_model_type(checkpoint)
        if kind is not None:
            peer_config_from_checkpoint(checkpoint)
    except ValueError as e:
        raise SuiteError(str(e)) from None
    if kind is not None and not lmms_peers.has_tokenizer(checkpoint):
        model = lmms_peers.FAMILIES[kind].model
        raise SuiteError(
            f"{checkpoint}: no tokenizer (tokenizer.json or tokenizer_config.json), which lmms-eval's {model} "
            "adapter loads with AutoTokenizer"
        )
    return kind


PEER_SYNTHETIC = tuple(t for t in SYNTHETIC if t not in st.TASKS)  # generate_until: synthetic_colour_gen


def expand_peer(kind: str, checkpoint: str, options: dict, device: str, dtype: str | None, temporal_pool: bool):
    """One point per task on a peer's checkpoint: tasks its lmms-eval adapter can score, the dtype it loads in, and
    the packages it needs on this machine, all checked before anything runs."""
    family = lmms_peers.FAMILIES[kind]
    if not temporal_pool:
        raise SuiteError(f"{checkpoint} is a peer VLM ({kind}), which has no temporal pooling: drop --no-temporal-pool")
    tasks = expand_tasks(options["tasks"], PEER_SYNTHETIC)
    refused = [t for t in tasks if t in SYNTHETIC and t not in PEER_SYNTHETIC]
    if refused:
        raise SuiteError(
            f"lmms-eval's {family.model} adapter cannot score {', '.join(refused)} ({family.choices}): "
            f"use {', '.join(PEER_SYNTHETIC)}"
        )
    check_lmms_tasks([t for t in tasks if t not in SYNTHETIC])
    try:
        dtype = lmms_peers.adapter_dtype(kind, checkpoint, dtype, device)
    except ValueError as e:
        raise SuiteError(str(e)) from None
    missing = lmms_peers.harness_missing(kind)
    if missing:
        raise SuiteError(
            f"--checkpoint {checkpoint} ({kind}) is scored by lmms-eval's {family.model} adapter, which cannot run "
            f"here: {missing}"
        )
    limit, data_dir = options.get("limit"), options.get("data_dir")
    return [TaskPoint(t, None, checkpoint, limit, device, dtype, None, data_dir, kind, family.model) for t in tasks]


def harness(point: TaskPoint, session: Session):
    """(lmms-eval's simple_evaluate, its TaskManager, the adapter, the config its media tokens are counted from, the
    adapter's modules), built once per model and reused per task: our adapter, or lmms-eval's for a peer."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub here: fail fast on a missing dataset
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        from lmms_eval.evaluator import simple_evaluate
        from lmms_eval.tasks import TaskManager
    except ImportError as e:
        raise ValueError(f"the accuracy suite needs lmms-eval (pip install 'nvila-bench[eval]'): {e}") from None
    from nvila_bench.suites.lmms_adapter import NVILABench

    def build():
        data_dir = Path(point.data_dir) if point.data_dir else default_data_dir()
        include = None
        if point.task in SYNTHETIC or point.checkpoint is None:
            if not (data_dir / "manifest.json").is_file():  # generate once; an existing set is used as it is
                st.generate(data_dir)
            include = str(st.write_lmms_tasks(data_dir))
        manager = TaskManager("WARNING", include_path=include, include_defaults=point.checkpoint is not None)
        if point.peer:
            adapter = lmms_peers.build_adapter(point.peer, point.checkpoint, point.device, point.dtype)
            tokens = lmms_peers.token_config(point.peer, point.checkpoint, adapter)
            return simple_evaluate, manager, adapter, tokens, lmms_peers.held_modules(adapter)
        model = NVILABench(
            pretrained=point.checkpoint,
            preset=point.preset,
            device=point.device,
            dtype=point.dtype,
            temporal_pool=point.temporal_pool,
        )
        return simple_evaluate, manager, model, model.vlm.config, {}

    return session.cached(
        (
            "accuracy",
            point.preset,
            point.checkpoint,
            point.device,
            point.dtype,
            point.temporal_pool,
            point.data_dir,
            point.peer,
        ),
        build,
    )


def measure_point(point: TaskPoint, session: Session) -> dict[str, Metric]:
    """One task through lmms-eval; a task that raises or returns no numeric score is an error record."""
    simple_evaluate, manager, model, token_config, modules = harness(point, session)
    for name, module in modules.items():  # lmms-eval's clean() deleted them after the previous task
        setattr(model, name, module)
    if point.task not in manager.all_tasks:
        raise ValueError(f"unknown lmms-eval task: {point.task}")
    try:
        result = simple_evaluate(
            model=model,
            tasks=[point.task],
            limit=point.limit,
            task_manager=manager,
            log_samples=False,
            verbosity="WARNING",
        )
    except Exception as e:
        if point.task in SYNTHETIC:
            raise
        # The usual cause offline: the dataset is not in the local cache.
        cache = os.environ.get("HF_DATASETS_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
        raise RuntimeError(
            f"{point.task} failed; its dataset must be in the local Hugging Face cache ({cache}), "
            f"read offline: {type(e).__name__}: {e}"
        ) from None
    metrics = score(result, point.task) | _tokens(token_config, point.task, point.temporal_pool)
    if CHANCE.get(point.task) is not None:
        metrics["chance"] = Metric.analytic(CHANCE[point.task], "fraction")
    return metrics


def _tokens(cfg, task: str, temporal_pool: bool) -> dict:
    """Visual tokens the LLM sees per sample of a synthetic task (96 x 96 images, 8-frame videos)."""
    if task not in SYNTHETIC:
        return {}
    if task == "synthetic_frame":
        count = count_visual_tokens(cfg, [], st.FRAMES, temporal_pool)
    else:
        count = count_visual_tokens(cfg, [(st.SIZE, st.SIZE)])
    return {"media_tokens": Metric.analytic(count.total_tokens, "tokens")}


def describe(record) -> str:
    """The line `run accuracy` prints per task."""
    task = record.config["task"]
    if not record.ok:
        return f"accuracy: {task}: error: {record.error}"
    m = record.metrics
    stderr = f" ± {m['stderr'].value:.3f}" if "stderr" in m else ""
    chance = f" (chance {m['chance'].value:.3f})" if "chance" in m else ""
    return f"accuracy: {task}: {m['metric'].value} {m['score'].value:.3f}{stderr}, n={m['n'].value}{chance}"


METRICS = (
    MetricSpec("score", "fraction", "higher", headline=True, help="The task's primary metric (lmms-eval's)."),
    MetricSpec("stderr", "fraction", None, help="The score's standard error (lmms-eval's)."),
    MetricSpec("n", "samples", None, headline=True, help="Samples scored."),
    MetricSpec("chance", "fraction", None, headline=True, help="A uniform guess's score, where known."),
    MetricSpec("metric", "text", None, help="Which of the task's metrics `score` is."),
    MetricSpec("media_tokens", "tokens", None, help="Positions one sample's media take (synthetic tasks)."),
)

SUITE = Suite(
    "accuracy",
    "lmms-eval tasks over the model adapter, one record per task.",
    measure_point,
    view="accuracy",  # its report section: reports/views/accuracy.py
    options=(
        Option("tasks", "synthetic, paper-image, paper-video or lmms-eval task names, comma-separated.", str),
        Option(
            "checkpoint",
            "Checkpoint directory: NVILA's official layout, or a peer VLM's transformers layout "
            "with its tokenizer (else --preset, random weights).",
            str,
        ),
        Option("limit", "At most this many samples per task.", int),
        Option("data_dir", "Where the synthetic tasks live [~/.cache/nvila-bench/synthetic].", str),
    ),
    expand=expand,
    config=TaskPoint.to_config,
    describe=describe,
    fail_on_error=True,
    metrics=METRICS,
)
