"""Result files: the one writer (`ResultWriter`: whole fsync'd lines, or nothing) and the readers (`read_results`,
`load_results`: regular files only, bounded lines, every record checked against record.schema.json). A crash,
Ctrl-C or a full disk loses at most the point in flight; a record cut off by one is skipped with a warning."""

from __future__ import annotations

import json
import os
import signal
import sys
from contextlib import suppress
from pathlib import Path

from nvila_bench.core.measuring.results import Record


class ResultWriter:
    """The one writer: appends records to DIR/results.jsonl, one whole fsync'd line each, or nothing."""

    def __init__(self, out_dir: str | Path, filename: str = "results.jsonl"):
        # Checked now, before any measuring: a bad --out must not cost a sweep.
        if not str(out_dir).strip():
            raise ValueError("the output directory is '': give a directory for the results")
        self.path, self.count = Path(out_dir) / filename, 0
        if self.path.exists() and not self.path.is_file():  # opening a FIFO to append waits for a reader for ever
            raise ValueError(f"{self.path}: cannot write results here (not a regular file)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            existed = self.path.exists()
            os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
            if not existed:
                self.path.unlink()  # an empty results file would not read: the first record creates it
        except OSError as e:
            raise ValueError(f"{self.path}: cannot write results here ({e.strerror or e})") from None
        # Past a file-size limit (ulimit -f) the kernel kills the process by default; ignored, the write fails
        # with EFBIG instead and is undone below. (No SIGXFSZ on Windows; signals only from the main thread.)
        with suppress(AttributeError, ValueError):
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def write(self, record: Record) -> None:
        line, fd, start = (record.to_json() + "\n").encode(), -1, 0
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            start = os.fstat(fd).st_size
            if start and os.pread(fd, 1, start - 1) != b"\n":
                line = b"\n" + line  # the file ends mid-line (an earlier crash): never glue onto that fragment
            done = 0
            while done < len(line):  # a full disk can take part of a line (the next call fails: ENOSPC)
                done += os.write(fd, line[done:])
            os.fsync(fd)
        except BaseException as e:
            with suppress(OSError):
                os.ftruncate(fd, start)  # whole lines or nothing: the file stays readable
            if isinstance(e, OSError):
                raise ValueError(
                    f"{self.path}: cannot write the record ({e.strerror or e}); the file is left as "
                    f"it was, with {self.count} record(s) of this run"
                ) from None
            raise
        finally:
            if fd >= 0:
                os.close(fd)
        self.count += 1


def _no_constant(name: str):
    raise ValueError(f"not JSON ({name} is not a number JSON allows)")


_WARNED: set[str] = set()  # each skipped line is reported once per process, however often the file is read


def read_results(path: str | Path) -> list[Record]:
    """All records of a results file (or of DIR/results.jsonl). Any problem is a ValueError of one line naming
    the file and line: no file, no records, a line that is not JSON (NaN, Infinity included) or not a record of
    record.schema.json. But a record cut off by a crash (it starts as one and ends early) is skipped with a warning.
    A torn record that an older writer glued the next one onto stays an error: split that line by hand."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.jsonl"
    lines, records, torn = _lines(path), [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(Record.from_dict(json.loads(line, parse_constant=_no_constant)))
        except json.JSONDecodeError as e:
            body = line.rstrip()  # a record cut off: no closing brace, or it ends where the parser wants more
            if not body.lstrip().startswith("{") or body.endswith("}") and e.pos < len(body):
                raise ValueError(f"{path}:{number}: not JSON ({e.msg})") from None
            torn.append((number, "the file ends mid-line" if number == len(lines) else "a write was cut off"))
        except RecursionError:
            raise ValueError(f"{path}:{number}: not JSON (nested too deeply)") from None
        except ValueError as e:
            raise ValueError(f"{path}:{number}: {e}") from None
    if not records:
        raise ValueError(f"{path}: no result records" + (f" (line {torn[0][0]}: truncated record)" if torn else ""))
    for message in (f"{path}:{n}: truncated record skipped ({why})" for n, why in torn):
        if message not in _WARNED:
            _WARNED.add(message)
            print(f"nvila-bench: warning: {message}", file=sys.stderr)
    return records


MAX_LINE_BYTES = 16 << 20  # one record: 1000 samples per metric come to well under 1 MiB


def _lines(path: Path) -> list[str]:
    """The lines of a results file as text; a ValueError of one line when it is missing, not a regular file (a
    FIFO would wait for a writer for ever, /dev/zero never ends), not UTF-8, or has a line over MAX_LINE_BYTES."""
    if not path.is_file():
        why = "not a regular file; results are read from files" if path.exists() else "no such results file"
        raise ValueError(f"{path}: {why}")
    lines, ended = [], True  # as text.split("\n"): a last, empty line after a final newline
    try:
        with open(path, "rb") as f:
            while line := f.readline(MAX_LINE_BYTES + 1):
                ended = line.endswith(b"\n")
                if len(line) > MAX_LINE_BYTES and not (ended and len(line) == MAX_LINE_BYTES + 1):
                    raise ValueError(
                        f"{path}:{len(lines) + 1}: a line over {MAX_LINE_BYTES:,} bytes: not a result record"
                    )
                lines.append(line.decode().removesuffix("\n"))
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read results: {e}") from None
    return lines + [""] if ended else lines


def load_results(paths) -> list[Record]:
    """Records of several results files or directories (a directory: every *.jsonl below it), in order."""
    records = []
    for path in map(Path, paths):
        files = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
        if path.is_dir() and not files:
            raise ValueError(f"{path}: no *.jsonl results files in this directory")
        for file in files:
            records.extend(read_results(file))
    return records
