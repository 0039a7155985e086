"""Suite files (`--config`): TOML or YAML whose list values are sweep axes.

Its keys are a point's declared settings (core/measuring/point.py), each value checked against the setting's
declared kind and then by the setting's own check, the same as its command-line option. Every problem is a
ValueError of one line naming the file and the key: a file that does not parse or is not a mapping, an unknown
key, a value of the wrong type (a table where a list belongs, 8.0 frames), an empty list.
"""

from __future__ import annotations

from pathlib import Path

import tomllib

from nvila_bench.core.measuring.point import SETTINGS, SWEEP_FIELDS, check_value
from nvila_bench.core.measuring.settings import REQUEST

MAX_BYTES = 1 << 20  # a suite file lists settings: a larger one is not one


def load_suite_file(path: str | Path) -> tuple[str | None, dict[str, list]]:
    """(optional `suite = "prefill"`, axes) of a TOML or YAML suite file, e.g. `preset = ["nvila-tiny",
    "vila-tiny"]`, `images = [["448x448"], ["1920x1080"]]` (a list of requests, each a list of WxH)."""
    path = Path(path)
    data = _parse(path)
    if not isinstance(data, dict):
        raise ValueError(f'{path}: expected a mapping of settings (e.g. preset = ["nvila-tiny"]), got {_kind(data)}')
    suite = data.pop("suite", None)
    if suite is not None and not isinstance(suite, str):
        raise ValueError(f"{path}: suite: expected a suite name, got {_kind(suite)}")
    unknown = sorted(set(map(str, data)) - set(SWEEP_FIELDS))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {', '.join(unknown)}; known: suite, {', '.join(SWEEP_FIELDS)}")
    axes = {key: _axis(path, key, value) for key, value in data.items()}
    return suite, axes


def _parse(path: Path):
    if path.exists() and not path.is_file():  # a FIFO with no writer would wait for ever, /dev/zero never end
        raise ValueError(f"suite file {path} is not a regular file")
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ValueError(f"suite file {path} is over {MAX_BYTES >> 20} MiB: not a list of settings")
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read suite file {path}: {getattr(e, 'strerror', None) or e}") from None
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: invalid TOML: {e}") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ValueError("YAML suite files need PyYAML (pip install pyyaml), or use TOML") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: invalid YAML: {' '.join(str(e).split())}") from None
        return {} if data is None else data
    raise ValueError(f"suite file {path} must end in .toml, .yaml or .yml")


def _axis(path: Path, key: str, value) -> list:
    """The values of one axis: a list, or one value (a one-value axis), each of the key's declared kind."""
    kind = SETTINGS[key].setting.kind
    if kind is REQUEST:  # one request (a list of WxH) or a list of requests
        if not isinstance(value, list):
            raise ValueError(
                f"{path}: images: expected a list of WxH (one request) or a list of such lists, got {_kind(value)}"
            )
        requests = value if value and isinstance(value[0], list) else [value]
        if not all(requests) or not all(isinstance(r, list) for r in requests):
            raise ValueError(f'{path}: images: every request must be a non-empty list of WxH, e.g. ["448x448"]')
        values = [tuple(_size(path, s) for s in request) for request in requests]
        _check(path, key, values)
        return values
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ValueError(f"{path}: {key}: empty list; give at least one value or leave the key out")
    for v in values:
        if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
            raise ValueError(f"{path}: {key}: each value must be {_kind(kind())}, got {_kind(v)} {v!r}"[:300])
    _check(path, key, values)
    return values


def _check(path: Path, key: str, values: list) -> None:
    """Each value through the same check as its command-line option (an empty engine is no engine)."""
    for value in values:
        try:
            check_value(key, value)
        except ValueError as e:
            raise ValueError(f"{path}: {key}: {e}") from None


def _kind(value) -> str:
    return {
        dict: "a table",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "nothing",
    }.get(type(value), type(value).__name__)


def _size(path: Path, text) -> tuple[int, int]:
    w, _, h = str(text).lower().partition("x")
    if not isinstance(text, str) or not (w.isdigit() and h.isdigit()) or int(w) < 1 or int(h) < 1:
        raise ValueError(
            f"{path}: images: {text!r} is not an image size: expected WxH with positive integers, e.g. 1920x1080"
        )
    return int(w), int(h)
