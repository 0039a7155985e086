"""A benchmark point: every setting of one measurement, validated up front.

Sweeps are lists of points (`points_from_axes`); a point's `to_config()` is what the result record stores,
so a record says exactly what was measured. Which media a point needs is its suite's business (the
accuracy suite's points have none).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import asdict, dataclass, field

from nvila_bench.model.config import check_attn_implementation
from nvila_bench.model.engines import CACHES, ENGINE_CACHE, ENGINES, default_engine
from nvila_bench.model.presets import get_preset
from nvila_bench.model.tokens import MAX_SIDE

from .settings import REQUEST, axes_of, setting

DTYPES = ("float32", "bfloat16", "float16")  # torch's names: torch loads only where a point is measured
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
PREPROCESS = ("cpu", "gpu")  # where images are tiled and normalised

# The request a suite measures on a CPU where the command line names none (no --image, --video-frames,
# --new-tokens): a suite whose default is the paper's (a 1920x1080 image, a 64-frame video) measures this one there,
# in seconds per point on 2 cores (the paper's took minutes per point).
CPU_REQUEST = {"images": ((448, 448),), "video_frames": 8, "new_tokens": 8}
CPU_REQUEST_TEXT = "one 448x448 image, 8 video frames, 8 new tokens"


def request_default(name: str, default, on_cpu: bool):
    """A suite's default of one request setting (images: one request): `default` (its GPU request), or CPU_REQUEST's
    where the suite measures on a CPU."""
    return CPU_REQUEST[name] if on_cpu else default


def canonical_dtype(name: str) -> str:
    name = DTYPE_ALIASES.get(name, name)
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; known: {', '.join(DTYPES)} (or bf16, fp16, fp32)")
    return name


def torch_dtype(name: str):
    """torch's dtype of a dtype name or alias (imports torch)."""
    import torch

    return getattr(torch, canonical_dtype(name))


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


def _frames(value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"video frames must be a positive integer, got {value!r}"[:200])


_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class BenchPoint:
    """Every setting of one measurement. Each field's `setting` is its command-line option, its suite-file key and
    its check (core/measuring/settings.py): a value is checked the same way wherever it comes from, before any
    suite expands it (an empty engine or a negative frame count that a suite never turns into a point is refused
    all the same, never replaced by a default)."""

    preset: str = setting(flag="--preset", help="Preset(s); several make a sweep axis.", check=_preset)
    device: str = setting("cpu", help="cpu or cuda[:N].", repeat=False, check=_device)
    dtype: str | None = setting(
        None, help="float32 / bfloat16 / float16 (default: bf16 on cuda, fp32 on cpu).", check=canonical_dtype
    )
    images: tuple[tuple[int, int], ...] = setting(
        (), flag="--image", kind=REQUEST, help="Image WxH; repeat for a multi-image request.", check=_images
    )
    video_frames: int | None = setting(None, kind=int, help="Frames of one video in the request.", check=_frames)
    temporal_pool: bool = setting(True, kind=bool, choices=(True, False), help="Disable TSP temporal pooling.")
    prompt_tokens: int = setting(64, kind=int, minimum=0, help="Text tokens after the media.")
    batch_size: int = setting(1, kind=int, minimum=1, help="Identical requests per batch.")
    # decode only; EOS is ignored so every run decodes exactly this many
    new_tokens: int = setting(32, kind=int, minimum=1, help="Tokens generated, EOS ignored.")
    attn_implementation: str = setting(
        "sdpa", flag="--attn", repeat=False, help="sdpa, eager or flash_attention_2.", check=check_attn_implementation
    )
    cache: str = setting("dynamic", choices=CACHES, help="Decode KV cache of the eager engine.")
    engine: str | None = setting(
        None,
        choices=ENGINES,
        help="How prefill / decode run (sweep axis): compiled (CUDA graphs; default on cuda), eager (default on "
        "cpu), and the transformers peers hf-generate, hf-static.",
    )
    preprocess: str | None = setting(
        None,
        choices=PREPROCESS,
        help="Image tiling on the host with PIL (cpu) or by tensor ops on the point's device (gpu; default on cuda).",
    )
    seed: int = 0
    extra: dict = field(default_factory=dict)  # suite-specific settings, recorded verbatim

    def __post_init__(self):
        for name, declared in axes_of(type(self)).items():  # each setting checked as its option and its file key
            declared.validate(getattr(self, name))
        cuda = self.device.startswith("cuda")
        object.__setattr__(
            self, "dtype", canonical_dtype(self.dtype or ("float32" if self.device == "cpu" else "bfloat16"))
        )
        object.__setattr__(self, "images", tuple(tuple(int(x) for x in im) for im in self.images))
        object.__setattr__(self, "engine", self.engine or default_engine(self.device))
        object.__setattr__(self, "cache", ENGINE_CACHE.get(self.engine, self.cache))
        object.__setattr__(self, "preprocess", self.preprocess or ("gpu" if cuda else "cpu"))

    @property
    def torch_dtype(self):
        """torch's dtype (imports torch: a point is being measured)."""
        return torch_dtype(self.dtype)

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


SETTINGS = axes_of(BenchPoint)  # name -> Declared, in field order


def check_value(name: str, value) -> None:
    """ValueError of one line unless `value` is a valid setting `name` of a point."""
    SETTINGS[name].validate(value)


def check_axes(axes: dict[str, list]) -> None:
    """Every value of every sweep axis checked as a point's setting would be (images: each request)."""
    for name, values in axes.items():
        if name in SETTINGS:
            for value in values:
                check_value(name, value)


SWEEP_FIELDS = tuple(SETTINGS)


def points_from_axes(axes: dict[str, list], cls=BenchPoint) -> list[BenchPoint]:
    """Every combination of the axes' values, in order (the first axis varies slowest)."""
    known = tuple(axes_of(cls))
    unknown = sorted(set(axes) - set(known))
    if unknown:
        raise ValueError(f"unknown sweep setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
    names = list(axes)
    return [cls(**dict(zip(names, values))) for values in itertools.product(*(axes[n] for n in names))]
