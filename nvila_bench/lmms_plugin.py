"""lmms-eval plugin entry point (group `lmms_eval.models`, declared in pyproject.toml): makes
`lmms-eval --model nvila_bench --model_args preset=nvila-tiny|pretrained=/path ...` find our adapter.
Kept import-light: lmms-eval loads it while importing `lmms_eval.models`."""

from lmms_eval.models.registry_v2 import ModelManifest

MANIFESTS = [ModelManifest(model_id="nvila_bench", simple_class_path="nvila_bench.suites.lmms_adapter.NVILABench")]
