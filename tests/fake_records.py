"""Synthetic result records for the report, dashboard and gate tests (the schema's own `make_record`)."""

import numpy as np

from nvila_bench.core.results import make_record, metric
from nvila_bench.core.stats import summarize

CPU_ENV = {"device": "cpu", "cpu_model": "Test CPU", "cpu_count": 2, "torch": "2.13.0", "transformers": "5.24.0",
           "gpu": None, "git_revision": "a" * 40, "git_dirty": False, "platform": "Linux"}
GPU_ENV = CPU_ENV | {"device": "cuda", "torch_device_name": "NVIDIA H100 80GB HBM3", "gpu": [{"name": "NVIDIA H100 80GB HBM3"}]}


def samples(median: float, n: int = 200, cv: float = 0.03, seed: int = 0) -> list[float]:
    """Log-normal timing noise around `median` (timings are skewed, never negative)."""
    return (median * np.exp(np.random.default_rng(seed).normal(0.0, cv, n))).tolist()


def timed(values: list[float], unit: str = "s") -> dict:
    s = summarize(values, unit)
    return metric(s.median, unit, summary=s.to_dict(), samples=values)


def prefill_record(preset="nvila-tiny", ttft=0.1, seed=0, env=CPU_ENV, run_id="run-a", images=("448x448",), extra=None, **kw):
    config = {"preset": preset, "device": env["device"], "dtype": "float32", "images": list(images), "video_frames": None,
              "temporal_pool": True, "prompt_tokens": 64, "batch_size": 1, "new_tokens": 32, "attn_implementation": "sdpa",
              "cache": "dynamic", "seed": 0, "extra": extra or {}}
    values = samples(ttft, seed=seed, **kw)
    metrics = {"ttft": timed(values), "media_tokens": metric(257, "tokens")}
    for stage, share in (("preprocess", 0.1), ("vision", 0.5), ("projector", 0.1), ("llm_prefill", 0.3)):
        metrics[stage] = timed([v * share for v in values])
    return make_record("prefill", config, metrics, run_id, environment=env)


def decode_record(preset="nvila-tiny", tpot=0.001, seed=0, env=CPU_ENV, run_id="run-a"):
    config = {"preset": preset, "device": env["device"], "dtype": "float32", "images": ["448x448"], "video_frames": None,
              "temporal_pool": True, "prompt_tokens": 64, "batch_size": 1, "new_tokens": 32, "attn_implementation": "sdpa",
              "cache": "dynamic", "seed": 0, "extra": {}}
    values = samples(tpot, seed=seed)
    rates = [1 / v for v in values]
    metrics = {"tpot": timed(values), "decode_tokens_per_s": timed(rates, "tokens/s"), "prefill": timed(samples(0.05, seed=seed + 1))}
    return make_record("decode", config, metrics, run_id, environment=env)
