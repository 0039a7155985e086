"""Command-line options generated from the declared settings (core/measuring/settings.py): a BenchPoint field is
an option and a sweep axis, a MeasureConfig field an option, with the flag, help, kind and bounds the field
declares. `nvila-bench run SUITE` and `nvila-bench profile` take them from here; `axes_given` turns the parsed
values back into sweep axes."""

from __future__ import annotations

import math
from dataclasses import MISSING

import click

from nvila_bench.core.measuring.point import BenchPoint
from nvila_bench.core.measuring.settings import REQUEST, Declared, axes_of, declared
from nvila_bench.core.measuring.timing import MAX_SECONDS, MeasureConfig

from .common import ImageSize, PresetName

MAX_PROCESSES = 1000  # fresh subprocesses per point (each loads the model anew)


class Seconds(click.ParamType):
    """Seconds from 0 (exclusive if `positive`) to `maximum`, finite: NaN or inf would never end."""

    name = "SECONDS"

    def __init__(self, positive: bool = False, maximum: float = MAX_SECONDS):
        self.positive, self.maximum = positive, maximum

    def convert(self, value, param, ctx):
        seconds = _float(value, self, param, ctx)
        if not (
            math.isfinite(seconds) and (seconds > 0 if self.positive else seconds >= 0) and seconds <= self.maximum
        ):
            self.fail(
                f"{value!r} seconds: must be finite, {'> 0' if self.positive else '>= 0'} and <= {self.maximum:g}",
                param,
                ctx,
            )
        return seconds


class FiniteFloat(click.ParamType):
    name = "FLOAT"

    def convert(self, value, param, ctx):
        number = _float(value, self, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def _float(value, kind, param, ctx) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        kind.fail(f"{value!r} is not a number", param, ctx)


def _type(d: Declared):
    """The click type of one value. A sweep axis's values are checked by the point's own checks (one message
    whatever the source, a suite file's included); a one-off setting's bounds by click."""
    s = d.setting
    if s.kind is REQUEST:
        return ImageSize()
    if s.choices and s.kind is not bool:
        return click.Choice(list(s.choices))
    if s.kind is float:
        return Seconds(maximum=s.maximum) if s.unit == "s" else FiniteFloat()
    if s.kind is int and not s.axis and (s.minimum is not None or s.maximum is not None):
        return click.IntRange(s.minimum, s.maximum)
    return s.kind


def declared_option(d: Declared, once: bool = False, **overrides):
    """The click option of one declared setting. A sweep axis repeats (each value a point) unless declared with
    `repeat=False` or asked `once`; an image request repeats either way (its images). A bool is a flag giving the
    value other than its default. `overrides` replace click keywords (a type, `required`)."""
    s, dest = d.setting, d.name
    if s.kind is bool:
        kw = {"is_flag": True, "flag_value": not d.default, "default": d.default}
        return click.option(d.flag, dest, **{"help": s.help} | kw | overrides)
    repeat = s.kind is REQUEST or (s.axis and s.repeat and not once)
    default = None if d.default is MISSING else d.default
    if repeat:  # click shows no default of a repeated option: the declared one, in click's words
        shown = f"  [default: {default}]" if default not in (None, ()) and s.show_default else ""
        kw = {"multiple": True, "help": s.help + shown}
    else:
        kw = {"default": default, "show_default": s.show_default and default is not None, "help": s.help}
    return click.option(d.flag, dest, **{"type": _type(d)} | kw | overrides)


def point_options(cls=BenchPoint, names=None, once: bool = False, **overrides) -> list:
    """The options of a point's sweep axes (`names`: these only, in this order), e.g. --preset, --image."""
    axes = axes_of(cls)
    return [declared_option(axes[name], once, **overrides.get(name, {})) for name in names or axes]


def request_options(f):
    """One request of a point's declared settings, given once: --preset, --image (repeatable: one multi-image
    request), --video-frames, --no-temporal-pool (`tokens`, `cost`)."""
    preset = {"type": PresetName(), "required": True, "help": "A preset name."}
    no_pool = {"help": "Disable TSP temporal pooling (a peer VLM has none)."}
    names = ("preset", "images", "video_frames", "temporal_pool")
    for option in reversed(point_options(names=names, once=True, preset=preset, temporal_pool=no_pool)):
        f = option(f)
    return f


def measure_options() -> list:
    """--warmup, --warmup-seconds, --repeats, --min-seconds, --max-repeats."""
    return [declared_option(d) for d in declared(MeasureConfig).values()]


def measure_config(params: dict) -> MeasureConfig:
    return MeasureConfig(**{name: params[name] for name in declared(MeasureConfig)})


RUN_OPTIONS = [
    click.option(
        "--config", "suite_file", type=click.Path(dir_okay=False), help="TOML/YAML suite file; lists are sweep axes."
    ),
    click.option(
        "--hardware",
        help="Hardware table entry for analytic floors and MFU (default: the GPU's own, or measured ceilings).",
    ),
    click.option(
        "--ceilings",
        "ceilings_file",
        type=click.Path(dir_okay=False),
        help="ceilings.json from `nvila-bench ceilings`.",
    ),
    click.option("--isolate", is_flag=True, help="Run every point in its own subprocess."),
    click.option(
        "--processes",
        default=1,
        show_default=True,
        type=click.IntRange(1, MAX_PROCESSES),
        help="Measure every point in this many fresh subprocesses; the CI then covers run-to-run noise.",
    ),
    click.option("--quiet", is_flag=True, help="No progress output."),
    click.option(
        "--progress", is_flag=True, help="A progress bar on stderr even when it is not a terminal (a CI log)."
    ),
    click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory."),
]


def axes_given(params: dict, written=None, cls=BenchPoint) -> dict[str, tuple[str, list, bool]]:
    """Sweep axis -> (its flag, the values the command line gives it, whether the user wrote them): a repeated
    option's values, an image request, a flag's value where set, a one-off option's value. `written`: the parameter
    names the user wrote (None: all); the others are defaults, which a suite file's values replace."""
    given = {}
    for name, d in axes_of(cls).items():
        value = params.get(name)
        if d.setting.kind is REQUEST:
            values = [tuple(value)] if value else []
        elif d.setting.kind is bool:
            values = [] if value == d.default else [value]
        else:
            values = list(value) if isinstance(value, (list, tuple)) else [value]
        values = [v for v in values if v is not None]
        if values:
            given[name] = (d.flag, values, written is None or name in written)
    return given
