"""Quality of a quantized rung on a trained checkpoint: synthetic-task accuracy through lmms-eval, the same
harness and scoring as the accuracy suite, with the checkpoint's weights quantized as the rung says."""

from __future__ import annotations

from pathlib import Path

import torch

from nvila_bench.core import synthetic_tasks as st
from nvila_bench.core.results import Metric
from nvila_bench.model.quantize import QuantPlan, quantize_model

from .accuracy import _score, default_data_dir


def logits_agreement(ours: torch.Tensor, reference: torch.Tensor, prefix: str = "") -> dict[str, Metric]:
    """Top-1 agreement and KL(reference || ours) of two sets of next-token log-probabilities."""
    agreement = (ours.argmax(-1) == reference.argmax(-1)).float().mean().item()
    kl = torch.nn.functional.kl_div(ours, reference, log_target=True, reduction="batchmean").item()
    return {f"{prefix}top1_agreement": Metric.measured(agreement, "fraction", "higher"),
            f"{prefix}logits_kl": Metric.measured(kl, "nats", "lower")}  # fmt: skip


def synthetic_accuracy(checkpoint: str, plan: QuantPlan, device: str, limit: int, data_dir: str | None = None,
                       logprobs=None, calibration=None) -> dict[str, Metric]:  # fmt: skip
    """`synthetic_accuracy` (mean over the multiple-choice synthetic tasks) and one `accuracy_<task>` each;
    with `logprobs` (model -> next-token log-probabilities of fixed requests), the checkpoint's top-1
    agreement and KL against itself in bf16 (`checkpoint_top1_agreement`, `checkpoint_logits_kl`)."""
    try:
        from lmms_eval.evaluator import simple_evaluate
        from lmms_eval.tasks import TaskManager
    except ImportError as e:
        raise ValueError(f"accuracy per rung needs lmms-eval (pip install 'nvila-bench[eval]'): {e}") from None
    from .lmms_adapter import NVILABench

    root = Path(data_dir) if data_dir else default_data_dir()
    if not (root / "manifest.json").is_file():
        st.generate(root)
    manager = TaskManager("WARNING", include_path=str(st.write_lmms_tasks(root)), include_defaults=False)
    model = NVILABench(pretrained=checkpoint, device=device, dtype="bfloat16")
    out, scores = {}, []
    reference = logprobs(model.vlm) if logprobs else None
    quantize_model(model.vlm, plan, calibration(model.vlm) if calibration else None)
    if logprobs:
        out |= logits_agreement(logprobs(model.vlm), reference, "checkpoint_")
    for task in st.TASKS:
        result = simple_evaluate(model=model, tasks=[task], limit=limit, task_manager=manager, log_samples=False,
                                 verbosity="WARNING")  # fmt: skip
        score = _score(result, task)["score"].value
        scores.append(score)
        out[f"accuracy_{task}"] = Metric.measured(score, "fraction", "higher")
    out["synthetic_accuracy"] = Metric.measured(sum(scores) / len(scores), "fraction", "higher")
    return out
