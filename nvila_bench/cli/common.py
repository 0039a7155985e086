"""What every command shares: parameter types, request options, one-line errors."""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from pathlib import Path

import click

from nvila_bench.model.config import NVILAConfig
from nvila_bench.model.peer_config import PeerConfig
from nvila_bench.model.presets import get_preset

EXIT_USAGE = 2
_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


class ImageSize(click.ParamType):
    """WxH, e.g. 1920x1080, both positive."""

    name = "WxH"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        m = _SIZE.match(str(value))
        if not m or int(m[1]) < 1 or int(m[2]) < 1:
            self.fail(
                f"{value!r} is not an image size: expected WxH with positive integers, e.g. 1920x1080", param, ctx
            )
        return int(m[1]), int(m[2])


class PresetName(click.ParamType):
    name = "PRESET"

    def convert(self, value, param, ctx):
        if isinstance(value, (NVILAConfig, PeerConfig)):
            return value
        try:
            return get_preset(value)
        except KeyError as e:
            self.fail(str(e), param, ctx)


def emit(data, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2) if as_json else text)


def table(rows: list[dict]) -> str:
    """A text table of `rows` (columns right-justified, two spaces apart), without loading pandas."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = [columns, *([str(row.get(k, "")) for k in columns] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(line, widths)) for line in lines)


def check_request(images, video_frames) -> None:
    if video_frames is not None and video_frames < 1:
        raise click.BadParameter(f"must be a positive integer, got {video_frames}", param_hint="--video-frames")
    if not images and video_frames is None:
        raise click.UsageError("give at least one --image WxH or --video-frames N")


def check_output(path, option: str = "--out", directory: bool = False) -> None:
    """Refuse an output that cannot be written before any work is done: an empty path, one under a regular
    file, an existing directory where a file belongs, anything else that exists and is not a regular file (a
    FIFO, a device: writing one waits for a reader or goes nowhere). One line (BadParameter), exit 2."""
    target = Path(path)
    if not str(path).strip():
        raise click.BadParameter("an empty path: give a file or directory to write", param_hint=option)
    if target.exists() and not (target.is_dir() or target.is_file()):
        raise click.BadParameter(f"{path} is not a regular file or directory", param_hint=option)
    with writing(path, option):
        (target if directory else target.parent).mkdir(parents=True, exist_ok=True)
    if not directory and target.is_dir():
        raise click.BadParameter(f"{path} is a directory, not a file", param_hint=option)


@contextmanager
def writing(path, option: str = "--out"):
    """Turn a failed write of `path` (full disk, no permission, a file in the way) into one line, exit 2."""
    try:
        yield
    except OSError as e:
        why = "a file is in the way" if isinstance(e, FileExistsError) else e.strerror or e  # mkdir under a file
        raise click.BadParameter(f"cannot write {path}: {why}", param_hint=option) from None


_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


def check_device(device: str) -> None:
    """cpu, or cuda[:N] of a device torch sees here."""
    if not _DEVICE.match(device):
        raise click.BadParameter(f"unknown device {device!r}; use cpu or cuda[:N]", param_hint="--device")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise click.BadParameter(f"{device}, but torch sees no CUDA device here", param_hint="--device")
        if int(device.partition(":")[2] or 0) >= torch.cuda.device_count():
            raise click.BadParameter(
                f"{device}: torch sees {torch.cuda.device_count()} CUDA device(s)", param_hint="--device"
            )


def one_line(message: str) -> str:
    return " ".join(str(message).split())
