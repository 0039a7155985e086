"""Settings declared once. A dataclass field made with `setting(...)` carries a `Setting`: how a user gives it
(the command-line flag and its help), whether it is a sweep axis, and what one value may be (its kind, choices
and bounds). The CLI builds its options and sweep axes from these declarations, and a suite file's keys are
checked through them, so adding a shared option is one field. Nothing here imports torch.
"""

from __future__ import annotations

import functools
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Callable

REQUEST = "request"  # the kind of `images`: one request, a list of WxH


@dataclass(frozen=True)
class Setting:
    help: str  # one line for --help
    flag: str = ""  # the command-line option; default --name-with-dashes (a bool's: --no-name, see below)
    kind: Any = str  # one value's type: str, int, float, bool, or REQUEST
    choices: tuple = ()  # the known values (a click.Choice on the command line)
    minimum: float | None = None
    maximum: float | None = None
    axis: bool = True  # a sweep axis: a list in a suite file, each value a point
    repeat: bool = True  # the option may be given several times (False: once, like --device)
    unit: str = ""  # "s": seconds
    check: Callable[[Any], None] | None = None  # a value's own check (ValueError); default: choices and bounds
    show_default: bool = True  # the default in --help

    def option(self, name: str, default) -> str:
        """The flag: a bool's gives the value other than its default (--no-temporal-pool for a default True)."""
        if self.flag:
            return self.flag
        stem = name.replace("_", "-")
        return f"--no-{stem}" if self.kind is bool and default is True else f"--{stem}"

    def validate(self, name: str, value, optional: bool = False) -> None:
        """ValueError of one line unless `value` is a valid value of setting `name` (None where `optional`)."""
        if value is None and optional:
            return
        if self.check is not None:
            self.check(value)
        elif self.choices:
            if value not in self.choices:
                raise ValueError(f"unknown {name} {value!r:.60}; known: {', '.join(map(str, self.choices))}")
        elif self.kind in (int, float):
            number = isinstance(value, self.kind if self.kind is int else (int, float)) and not isinstance(value, bool)
            if not number or (self.minimum is not None and value < self.minimum):
                raise ValueError(f"{name} must be >= {self.minimum}, got {value!r}"[:200])
            if self.maximum is not None and value > self.maximum:
                raise ValueError(f"{name} must be <= {self.maximum}, got {value!r}"[:200])


def setting(default=MISSING, **declared) -> Any:
    """A dataclass field with its `Setting` (keyword arguments: Setting's fields)."""
    return field(default=default, metadata={"setting": Setting(**declared)})


@dataclass(frozen=True)
class Declared:
    """One declared setting of a dataclass: its field name, default (MISSING: required) and Setting."""

    name: str
    default: Any
    setting: Setting

    @property
    def flag(self) -> str:
        return self.setting.option(self.name, self.default)

    def validate(self, value) -> None:
        self.setting.validate(self.name, value, optional=self.default is None)


@functools.cache
def declared(cls) -> dict[str, Declared]:
    """The settings a dataclass declares, by field name, in field order (fields without one are not settings)."""
    return {f.name: Declared(f.name, f.default, f.metadata["setting"]) for f in fields(cls) if "setting" in f.metadata}


@functools.cache
def axes_of(cls) -> dict[str, Declared]:
    """The sweep axes among them."""
    return {name: d for name, d in declared(cls).items() if d.setting.axis}
