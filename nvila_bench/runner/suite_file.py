"""Suite files (`--config`): TOML or YAML whose list values are sweep axes."""

from __future__ import annotations

import tomllib
from pathlib import Path


def load_suite_file(path: str | Path) -> tuple[str | None, dict[str, list]]:
    """(optional `suite = "prefill"`, axes) of a TOML or YAML suite file, e.g. `preset = ["nvila-tiny",
    "vila-tiny"]`, `images = [["448x448"], ["1920x1080"]]` (a list of requests, each a list of WxH)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"cannot read suite file {path}: {e.strerror}") from None
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: invalid TOML: {e}") from None
    elif path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ValueError("YAML suite files need PyYAML (pip install pyyaml), or use TOML") from None
        data = yaml.safe_load(text) or {}
    else:
        raise ValueError(f"suite file {path} must end in .toml, .yaml or .yml")
    suite = data.pop("suite", None)
    axes = {k: v if isinstance(v, list) and k != "images" else [v] for k, v in data.items()}
    if "images" in data:  # images: one request (list of WxH) or a list of requests
        value = data["images"]
        axes["images"] = value if value and isinstance(value[0], list) else [value]
        axes["images"] = [tuple(_size(s) for s in request) for request in axes["images"]]
    return suite, axes


def _size(text: str) -> tuple[int, int]:
    w, _, h = str(text).lower().partition("x")
    if not (w.isdigit() and h.isdigit()) or int(w) < 1 or int(h) < 1:
        raise ValueError(f"{text!r} is not an image size: expected WxH with positive integers, e.g. 1920x1080")
    return int(w), int(h)
