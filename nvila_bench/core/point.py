"""A benchmark point: every setting of one measurement, validated up front.

Sweeps are lists of points (`points_from_axes`); a point's `to_config()` is what the result record stores,
so a record says exactly what was measured. Which media a point needs is its suite's business (the
accuracy suite's points have none).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field, fields

import torch

from nvila_bench.model.engines import check_engine, default_engine
from nvila_bench.model.nvila import check_attn_implementation
from nvila_bench.model.presets import get_preset

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
CACHES = ("dynamic", "static")
PREPROCESS = ("cpu", "gpu")  # where images are tiled and normalised
# The KV cache each engine runs with, whatever --cache says (eager alone takes either).
ENGINE_CACHE = {"compiled": "static", "hf-static": "static", "hf-generate": "dynamic"}


def canonical_dtype(name: str) -> str:
    name = DTYPE_ALIASES.get(name, name)
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; known: {', '.join(DTYPES)} (or bf16, fp16, fp32)")
    return name


@dataclass(frozen=True)
class BenchPoint:
    preset: str
    device: str = "cpu"
    dtype: str | None = None  # default: bfloat16 on cuda, float32 on cpu
    images: tuple[tuple[int, int], ...] = ()
    video_frames: int | None = None
    temporal_pool: bool = True
    prompt_tokens: int = 64
    batch_size: int = 1
    new_tokens: int = 32  # decode only; EOS is ignored so every run decodes exactly this many
    attn_implementation: str = "sdpa"
    cache: str = "dynamic"  # decode only: dynamic or static KV cache (the eager engine's choice)
    engine: str | None = None  # eager, compiled, hf-generate, hf-static (default: compiled on cuda, eager on cpu)
    preprocess: str | None = None  # cpu (PIL) or gpu (tensor ops on the device); default: gpu on cuda
    seed: int = 0
    extra: dict = field(default_factory=dict)  # suite-specific settings, recorded verbatim

    def __post_init__(self):
        get_preset(self.preset)  # raises a clear error for unknown names
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"unknown device {self.device!r}; use cpu or cuda[:N]")
        object.__setattr__(self, "dtype", canonical_dtype(self.dtype or ("float32" if self.device == "cpu" else "bfloat16")))
        object.__setattr__(self, "images", tuple(tuple(int(x) for x in im) for im in self.images))
        if any(w < 1 or h < 1 for w, h in self.images):
            raise ValueError(f"image sizes must be positive, got {self.images}")
        if self.video_frames is not None and self.video_frames < 1:
            raise ValueError(f"video frames must be a positive integer, got {self.video_frames}")
        for name in ("prompt_tokens", "batch_size", "new_tokens"):
            if getattr(self, name) < (0 if name == "prompt_tokens" else 1):
                raise ValueError(f"{name} must be {'>= 0' if name == 'prompt_tokens' else '>= 1'}, got {getattr(self, name)}")
        check_attn_implementation(self.attn_implementation)
        if self.cache not in CACHES:
            raise ValueError(f"unknown cache {self.cache!r}; known: {', '.join(CACHES)}")
        cuda = self.device.startswith("cuda")
        object.__setattr__(self, "engine", self.engine or default_engine(self.device))
        check_engine(self.engine)
        object.__setattr__(self, "cache", ENGINE_CACHE.get(self.engine, self.cache))
        object.__setattr__(self, "preprocess", self.preprocess or ("gpu" if cuda else "cpu"))
        if self.preprocess not in PREPROCESS:
            raise ValueError(f"unknown preprocess {self.preprocess!r}; known: {', '.join(PREPROCESS)}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def label(self) -> str:
        media = [f"{w}x{h}" for w, h in self.images] + ([f"{self.video_frames}f"] if self.video_frames else [])
        return f"{self.preset} {'+'.join(media)} b{self.batch_size} {self.dtype}"

    def to_config(self) -> dict:
        config = asdict(self)
        config["images"] = [f"{w}x{h}" for w, h in self.images]
        return config

    @classmethod
    def from_config(cls, config: dict) -> "BenchPoint":
        images = tuple(tuple(int(v) for v in str(im).lower().split("x")) for im in config.get("images", ()))
        return cls(**(config | {"images": images}))


SWEEP_FIELDS = tuple(f.name for f in fields(BenchPoint) if f.name not in ("seed", "extra"))


def points_from_axes(axes: dict[str, list]) -> list[BenchPoint]:
    """Every combination of the axes' values, in order (the first axis varies slowest)."""
    unknown = sorted(set(axes) - set(SWEEP_FIELDS))
    if unknown:
        raise ValueError(f"unknown sweep setting(s) {', '.join(unknown)}; known: {', '.join(SWEEP_FIELDS)}")
    names = list(axes)
    return [BenchPoint(**dict(zip(names, values))) for values in itertools.product(*(axes[n] for n in names))]
