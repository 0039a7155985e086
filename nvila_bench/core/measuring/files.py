"""Writing a whole file so that a reader, a crash or Ctrl-C never sees half of it (reports, dashboard pages,
ceilings.json; result records are appended line by line instead, core/results.py)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: str | Path, text: str) -> Path:
    """Write `text` via a temporary file in the same folder and rename it into place. The file gets the mode a
    plain open() would give (0666 less the umask): mkstemp's 0600 would hide a report or a dashboard page from
    the web server or CI reader that runs as another user."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            os.fchmod(fd, 0o666 & ~_umask())
        except OSError:  # a filesystem without modes (some mounts): keep what it gives
            pass
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    """The process's umask, read where Linux states it; elsewhere by setting it and putting it back (for that
    instant another thread's new file would get mode 0666)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
