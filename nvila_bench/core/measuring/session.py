"""What one run gives every point it measures: the measuring rule, the peaks of each dtype, the output
folder, and a cache of the last model built (a sweep over inputs reuses it; a new preset frees the old one).

The running layer creates a Session; a suite's `measure(point, session)` asks it for the model. Importing it loads
no torch (a suite module names it at import time)."""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nvila_bench.core.measuring.point import BenchPoint
from nvila_bench.core.measuring.timing import MeasureConfig
from nvila_bench.model import get_preset

if TYPE_CHECKING:  # the session carries the run's peaks to the suites; measuring computes none
    from nvila_bench.core.analysis.hardware import Peaks
    from nvila_bench.model.nvila import NVILAModel


@dataclass
class Session:
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    peaks: dict[str, Peaks | None] = field(default_factory=dict)  # dtype -> peaks (None: unknown here)
    out_dir: Path | None = None  # where a suite may put files beside results.jsonl (profiler traces)
    _key: tuple | None = field(default=None, repr=False)
    _model: object = field(default=None, repr=False)

    def peaks_for(self, dtype: str) -> Peaks | None:
        return self.peaks.get(dtype)

    def model(self, point: BenchPoint) -> NVILAModel:
        key = (point.preset, point.device, point.dtype, point.attn_implementation)

        def build():
            from nvila_bench.model import build_model  # torch loads when a point is measured

            return build_model(get_preset(point.preset), point.torch_dtype, point.device, point.attn_implementation)

        return self.cached(key, build)

    def cached(self, key: tuple, build):
        """The object built for `key` last time, or a new one from `build()` (the previous one is freed first:
        one model in memory at a time)."""
        if key != self._key:
            self.release()
            self._model = build()
            self._key = key
        return self._model

    def release(self) -> None:
        self._model, self._key = None, None
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
