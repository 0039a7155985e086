"""Every suite declares what it writes (`Suite.metrics`, core/measuring/specs.py MetricSpec): each metric of a real
record is declared with the record's unit and better direction, and the declarations load without torch."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import read_dicts
from nvila_bench.suites.registry import REGISTRY, declared_outputs

from nvila_bench.cli import main

FAST = ["--repeats", "1", "--min-seconds", "0", "--warmup", "0", "--quiet"]
IMAGE = ["--image", "448x448", "--prompt-tokens", "16"]
# One tiny CPU run per suite, in each suite's cheapest setting that still writes every metric a CPU writes.
RUNS = {
    "prefill": ["--preset", "nvila-tiny", "--preset", "qwen2-vl-tiny", *IMAGE],
    "decode": ["--preset", "nvila-tiny", "--preset", "qwen2-vl-tiny", *IMAGE, "--new-tokens", "3"],
    "scale-then-compress": [],  # analytic on CPU (its measured records are prefill's and decode's, run above)
    "overhead": ["--preset", "nvila-tiny", *IMAGE],
    "train": ["--preset", "nvila-tiny", "--stage", "full", *IMAGE],
    "finetune-memory": ["--preset", "nvila-tiny", "--recipe", "nvila", *IMAGE],
    "accuracy": ["--preset", "vila-tiny", "--tasks", "synthetic_colour", "--limit", "2"],
    "profile": ["--preset", "nvila-tiny", *IMAGE, "--wait", "0", "--schedule-warmup", "0", "--active", "1"],
    "deployment": [  # a bf16 rung and a quantized one (quantize_seconds); a peer's rungs write the same metrics
        *("--preset", "nvila-tiny", "--image", "448x448", "--media", "image", "--rung", "bf16", "--rung", "w4a16-llm"),
        *("--new-tokens", "2", "--quality-prompts", "1"),
    ],
}
LMMS_EVAL = importlib.util.find_spec("lmms_eval") is not None  # the accuracy suite's harness


def test_every_suite_has_a_run_here():
    assert sorted(RUNS) == sorted(REGISTRY)


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> dict[str, list[dict]]:
    """The suites' records of one tiny CPU run each, by suite (a suite may write another's: none of these do)."""
    out: dict[str, list[dict]] = {}
    for suite, args in RUNS.items():
        if suite == "accuracy" and not LMMS_EVAL:
            continue
        folder = tmp_path_factory.mktemp(suite.replace("-", "_"))
        assert main(["run", suite, *args, *FAST, "--out", str(folder)]) == 0, suite
        for record in read_dicts(folder):
            out.setdefault(record["suite"], []).append(record)
    return out


@pytest.mark.parametrize("suite", list(REGISTRY))
def test_every_metric_a_record_holds_is_declared_as_recorded(records, suite):
    if suite not in records and not LMMS_EVAL:
        pytest.skip("lmms-eval not installed (make test installs it)")
    specs = {m.name: m for m in declared_outputs()[suite].metrics}
    ok = [r for r in records[suite] if r["status"] == "ok"]
    assert ok, f"{suite}: no record measured here"
    for record in ok:
        undeclared = sorted(set(record["metrics"]) - set(specs))
        assert not undeclared, f"{suite} writes undeclared metrics: {undeclared}"
        for name, metric in record["metrics"].items():
            spec = specs[name]
            assert (spec.unit, spec.better) == (metric["unit"], metric["better"]), f"{suite}: {name}"


@pytest.mark.parametrize("suite", list(REGISTRY))
def test_a_suite_headlines_figures_it_writes(records, suite):
    """Its headline metrics are in its records (a table column that is always empty would say nothing)."""
    if suite not in records and not LMMS_EVAL:
        pytest.skip("lmms-eval not installed (make test installs it)")
    outputs = declared_outputs()[suite]
    written = {name for r in records[suite] if r["status"] == "ok" for name in r["metrics"]}
    assert outputs.headline and set(outputs.headline) <= written


def test_the_gate_compares_by_default_what_it_compared_before():
    """The gate's defaults were ttft, tpot, decode_tokens_per_s, step_time and samples_per_s wherever written,
    overhead records aside (their TTFT is the denominator of the harness's share)."""
    gated = {suite: set(o.gated) for suite, o in declared_outputs().items() if o.gated}
    assert gated == {
        "prefill": {"ttft"},
        "decode": {"tpot", "decode_tokens_per_s"},
        "train": {"step_time", "samples_per_s"},
        "finetune-memory": {"step_time"},
        "deployment": {"ttft", "tpot", "decode_tokens_per_s"},
    }


def test_declared_outputs_import_neither_torch_nor_transformers():
    code = (
        "import sys, json; from nvila_bench.suites.registry import declared_outputs; "
        "outputs = declared_outputs(); "
        "print(json.dumps([len(outputs), 'torch' in sys.modules, 'transformers' in sys.modules]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == [len(REGISTRY), False, False]


@pytest.mark.parametrize("suite", ["prefill", "decode", "accuracy"])
def test_a_suites_help_names_what_it_gates_and_headlines_from_its_declarations(suite, capsys):
    assert main(["run", suite, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # click wraps the epilog
    metrics = declared_outputs()[suite].metrics
    gated = [m.name for m in metrics if m.gated]
    assert (f"Gated by default: {', '.join(gated)}." in text) == bool(gated)
    assert all(m.name in text for m in metrics if m.headline) and f"{len(metrics)} metrics in all" in text
