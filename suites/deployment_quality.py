"""Quality of a quantized rung: its next-token logits against the same model's in bf16 on synthetic requests
(`quality`), and on a trained checkpoint synthetic-task accuracy through lmms-eval, the same harness and scoring as
the accuracy suite, with the checkpoint's weights quantized as the rung says (`rung_accuracy`)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from nvila_bench.core.measuring import synthetic_tasks as st
from nvila_bench.core.measuring.results import Metric
from nvila_bench.core.measuring.specs import MetricSpec

from .common import request_of
from .lmms_tasks import SYNTHETIC, default_data_dir, paper_tasks, score

if TYPE_CHECKING:
    import torch
    from nvila_bench.model.quant_plan import QuantPlan

    from nvila_bench.core.measuring.point import BenchPoint


def logits_agreement(ours: torch.Tensor, reference: torch.Tensor, prefix: str = "") -> dict[str, Metric]:
    """Top-1 agreement and KL(reference || ours) of two sets of next-token log-probabilities."""
    import torch

    agreement = (ours.argmax(-1) == reference.argmax(-1)).float().mean().item()
    kl = torch.nn.functional.kl_div(ours, reference, log_target=True, reduction="batchmean").item()
    return {
        f"{prefix}top1_agreement": Metric.measured(agreement, "fraction", "higher"),
        f"{prefix}logits_kl": Metric.measured(kl, "nats", "lower"),
    }


QUALITY_POSITIONS = 16  # text positions of each quality prompt whose next-token logits are compared


def logprobs(model, point: BenchPoint) -> torch.Tensor:
    """Next-token log-probabilities at every text position of `quality_prompts` requests (float32, CPU)."""
    import torch
    from nvila_bench.model.pipeline import embed

    out = []
    with torch.inference_mode():
        for seed in range(point.extra["quality_prompts"]):
            request = request_of(replace(point, seed=seed + 1, prompt_tokens=QUALITY_POSITIONS, batch_size=1))
            logits = model.prefill(embed(model, request), all_logits=True).logits[0, -QUALITY_POSITIONS:]
            out.append(logits.float().log_softmax(-1).cpu())
    return torch.cat(out)


REFERENCE: dict[tuple, torch.Tensor] = {}  # (preset, device, media) -> the bf16 model's log-probabilities


def reference_key(point: BenchPoint) -> tuple:
    return point.preset, point.device, point.extra["media"]


def quality(model, point: BenchPoint, plan: QuantPlan) -> dict[str, Metric]:
    """Top-1 agreement and KL of the rung's next-token logits against the same preset's in bf16 (`REFERENCE`)."""
    import torch
    from nvila_bench.model import build_model, get_preset

    key = reference_key(point)
    ours = logprobs(model, point)
    if plan.is_bf16:
        REFERENCE[key] = ours
    if key not in REFERENCE:  # a model cached from the same rung's other request: its bf16 reference now
        REFERENCE[key] = logprobs(build_model(get_preset(point.preset), torch.bfloat16, point.device), point)
    ref = REFERENCE[key]
    return logits_agreement(ours, ref) | {"quality_positions": Metric.measured(ref.shape[0], "positions")}


TEST_QUESTIONS = 16  # per synthetic task: the checkpoint's logits are compared at these questions' answers


def answer_logprobs(model, tokenizer, data_dir: str | Path, per_task: int = TEST_QUESTIONS) -> torch.Tensor:
    """Next-token log-probabilities (float32, CPU) at every answer position (its tokens and EOS, teacher-forced)
    of the first `per_task` test questions of each synthetic task: where the checkpoint's answers are decided."""
    import torch
    from nvila_bench.model.pipeline import embed

    from .synthetic_train import example_request

    out = []
    with torch.inference_mode():
        for task in st.TASKS:
            for row in st.load_split(data_dir, task, "test")[:per_task]:
                request, answer = example_request(model.config, tokenizer, data_dir, row)
                logits = model.prefill(embed(model, request), all_logits=True).logits[0]
                out.append(logits[-answer - 1 : -1].float().log_softmax(-1).cpu())  # the positions predicting it
    return torch.cat(out)


def rung_accuracy(
    checkpoint: str,
    plan: QuantPlan,
    device: str,
    limit: int,
    tasks: tuple[str, ...] = st.TASKS,
    data_dir: str | None = None,
    logprobs=None,
    calibration=None,
) -> dict[str, Metric]:
    """The checkpoint quantized as `plan` says, through lmms-eval as the accuracy suite scores it: one
    `accuracy_<task>` per task, `synthetic_accuracy` (mean over the multiple-choice synthetic tasks) and
    `benchmark_accuracy` (mean over the others: the paper's lmms-eval tasks, with official weights and their
    datasets in the local cache); and the checkpoint's top-1 agreement and KL against itself in bf16
    (`checkpoint_top1_agreement`, `checkpoint_logits_kl`) at the synthetic test split's answer positions
    (`answer_logprobs`), or of `logprobs` (model -> next-token log-probabilities) where given."""
    try:
        from lmms_eval.evaluator import simple_evaluate
        from lmms_eval.tasks import TaskManager
    except ImportError as e:
        raise ValueError(f"accuracy per rung needs lmms-eval (pip install 'nvila-bench[eval]'): {e}") from None
    from nvila_bench.model.quantize import quantize_model

    from .lmms_adapter import NVILABench

    root = Path(data_dir) if data_dir else default_data_dir()
    if not (root / "manifest.json").is_file():
        st.generate(root)
    benchmarks = [t for t in tasks if t not in SYNTHETIC]
    if benchmarks:  # no hub here: a dataset missing from the local cache fails fast
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    manager = TaskManager("WARNING", include_path=str(st.write_lmms_tasks(root)), include_defaults=bool(benchmarks))
    model = NVILABench(pretrained=checkpoint, device=device, dtype="bfloat16")
    out, scores = {}, {}
    logprobs = logprobs or (lambda vlm: answer_logprobs(vlm, model.tokenizer, root))
    reference = logprobs(model.vlm)
    quantize_model(model.vlm, plan, calibration(model.vlm) if calibration else None)
    out |= logits_agreement(logprobs(model.vlm), reference, "checkpoint_")
    out["checkpoint_quality_positions"] = Metric.measured(reference.shape[0], "positions")
    for task in tasks:
        result = simple_evaluate(
            model=model, tasks=[task], limit=limit, task_manager=manager, log_samples=False, verbosity="WARNING"
        )
        scores[task] = score(result, task)["score"].value
        out[f"accuracy_{task}"] = Metric.measured(scores[task], "fraction", "higher")
    for name, group in (
        ("synthetic_accuracy", [t for t in tasks if t in st.TASKS]),
        ("benchmark_accuracy", benchmarks),
    ):
        if group:
            out[name] = Metric.measured(sum(scores[t] for t in group) / len(group), "fraction", "higher")
    return out


def _agreement_specs(prefix: str, of: str, headline: bool = False) -> tuple[MetricSpec, ...]:
    return (
        MetricSpec(f"{prefix}top1_agreement", "fraction", "higher", headline=headline, help=f"{of}: top-1 agreement."),
        MetricSpec(f"{prefix}logits_kl", "nats", "lower", help=f"{of}: KL divergence from bf16."),
        MetricSpec(f"{prefix}quality_positions", "positions", None, help=f"{of}: positions compared."),
    )


QUALITY_SPECS = (  # what `quality` and (a run with --checkpoint) `rung_accuracy` write
    *_agreement_specs("", "Next-token logits against the same model in bf16", headline=True),
    *_agreement_specs("checkpoint_", "The checkpoint's logits at the answers against itself in bf16"),
    *(
        MetricSpec(f"accuracy_{task}", "fraction", "higher", help=f"The checkpoint's {task} score, quantized.")
        for task in (*SYNTHETIC, *paper_tasks("image"), *paper_tasks("video"))  # other lmms-eval tasks: undeclared
    ),
    MetricSpec("synthetic_accuracy", "fraction", "higher", help="Mean score over the synthetic multiple choice."),
    MetricSpec("benchmark_accuracy", "fraction", "higher", help="Mean score over the paper's lmms-eval tasks."),
)
