"""A benchmark point: every setting of one measurement, validated up front.

Sweeps are lists of points (`points_from_axes`); a point's `to_config()` is what the result record stores,
so a record says exactly what was measured. Which media a point needs is its suite's business (the
accuracy suite's points have none).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING

from nvila_bench.model.presets import get_preset
from nvila_bench.model.tokens import MAX_SIDE

if TYPE_CHECKING:
    import torch

DTYPES = ("float32", "bfloat16", "float16")  # torch's names: `BenchPoint.torch_dtype` is getattr(torch, name)
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


def _preset(value) -> None:
    get_preset(value if isinstance(value, str) else repr(value))  # a clear error for unknown names


def _device(value) -> None:
    if not isinstance(value, str) or not _DEVICE.match(value):
        raise ValueError(f"unknown device {value!r}; use cpu or cuda[:N]")


def _images(value) -> None:
    for size in value:
        w, h = size
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (w, h)) or w < 1 or h < 1:
            raise ValueError(f"image sizes must be positive integers, got {w!r}x{h!r}"[:200])
        if max(w, h) > MAX_SIDE:
            raise ValueError(f"image size {w}x{h} is too large: each side must be at most {MAX_SIDE:,} px")


def _count(name: str, minimum: int):
    def check(value) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value!r}"[:200])

    return check


def _frames(value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"video frames must be a positive integer, got {value!r}"[:200])


def _choice(name: str, known: tuple):
    def check(value) -> None:
        if value not in known:
            raise ValueError(f"unknown {name} {value!r:.60}; known: {', '.join(map(str, known))}")

    return check


def _optional(check):
    return lambda value: value is None or check(value)


# The engine and attention checks live beside the model, which imports torch: loaded when a point is checked,
# so that importing this module (the registry does, for `declared_outputs`) loads no torch.
def check_attn_implementation(value) -> None:
    from nvila_bench.model.nvila import check_attn_implementation

    check_attn_implementation(value)


def check_engine(value) -> None:
    from nvila_bench.model.engines import check_engine

    check_engine(value)


def default_engine(device: str) -> str:
    from nvila_bench.model.engines import default_engine

    return default_engine(device)


_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")
# One check per setting, run on a point's values and, before any suite expands them, on every value of a sweep
# axis (a command-line option or a suite file's key): an empty engine or a negative frame count that a suite
# never turns into a point (deployment's --media image) is refused all the same, never replaced by a default.
CHECKS = {
    "preset": _preset,
    "device": _device,
    "dtype": _optional(canonical_dtype),
    "images": _images,
    "video_frames": _optional(_frames),
    "temporal_pool": _choice("temporal_pool", (True, False)),
    "prompt_tokens": _count("prompt_tokens", 0),
    "batch_size": _count("batch_size", 1),
    "new_tokens": _count("new_tokens", 1),
    "attn_implementation": check_attn_implementation,
    "cache": _choice("cache", CACHES),
    "engine": _optional(check_engine),
    "preprocess": _optional(_choice("preprocess", PREPROCESS)),
}


def check_value(name: str, value) -> None:
    """ValueError of one line unless `value` is a valid setting `name` of a point."""
    CHECKS[name](value)


def check_axes(axes: dict[str, list]) -> None:
    """Every value of every sweep axis checked as a point's setting would be (images: each request)."""
    for name, values in axes.items():
        if name in CHECKS:
            for value in values:
                check_value(name, value)


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
        for name in CHECKS:  # every setting through the same check as its option and its suite-file key
            check_value(name, getattr(self, name))
        cuda = self.device.startswith("cuda")
        object.__setattr__(
            self, "dtype", canonical_dtype(self.dtype or ("float32" if self.device == "cpu" else "bfloat16"))
        )
        object.__setattr__(self, "images", tuple(tuple(int(x) for x in im) for im in self.images))
        object.__setattr__(self, "engine", self.engine or default_engine(self.device))
        object.__setattr__(self, "cache", ENGINE_CACHE.get(self.engine, self.cache))
        object.__setattr__(self, "preprocess", self.preprocess or ("gpu" if cuda else "cpu"))

    @property
    def torch_dtype(self) -> torch.dtype:
        import torch

        return getattr(torch, self.dtype)

    @property
    def label(self) -> str:
        media = [f"{w}x{h}" for w, h in self.images] + ([f"{self.video_frames}f"] if self.video_frames else [])
        return f"{self.preset} {'+'.join(media)} b{self.batch_size} {self.dtype}"

    def to_config(self) -> dict:
        config = asdict(self)
        config["images"] = [f"{w}x{h}" for w, h in self.images]
        return config

    @classmethod
    def from_config(cls, config: dict) -> BenchPoint:
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
