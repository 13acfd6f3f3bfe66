"""JSONL in and out, with errors that name the file and line, and crash-safe writes.

* :func:`read_records` validates every line against :class:`~negforge.synth.schema.Record`.
* :func:`write_records` writes a whole file atomically (temp file + ``os.replace``): a crash
  leaves the old file or the new one, never half of one.
* :class:`RecordAppender` appends one record per ``os.write`` and fsyncs, so a job killed at
  any point (``kill -9`` included) leaves only whole records; on reopening, a torn last line
  (power loss) is cut off and the ids already written are known, so a restart skips them.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from pydantic import ValidationError

from .errors import InputError, validation_message
from .schema import Record

log = logging.getLogger(__name__)


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; raise InputError naming file:line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    with path.open("r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def iter_records(path: str | os.PathLike) -> Iterator[Record]:
    for lineno, obj in iter_jsonl(path):
        try:
            yield Record.model_validate(obj)
        except ValidationError as e:
            raise InputError(f"{path}:{lineno}: invalid record ({validation_message(e, root='record')})") from None


def read_records(path: str | os.PathLike) -> list[Record]:
    """Read and validate a whole records file first: a bad line fails before any work starts."""
    records = list(iter_records(path))
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InputError(f"{path}: record id {dup!r} appears more than once")
    return records


def dumps(record: Record) -> str:
    return record.model_dump_json(exclude_none=False) + "\n"


def write_records(path: str | os.PathLike, records: Iterable[Record]) -> int:
    """Write records to ``path`` atomically; returns the count written."""
    return write_lines(path, (dumps(r) for r in records))


def write_lines(path: str | os.PathLike, lines: Iterable[str]) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    n = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for line in lines:
                f.write(line)
                n += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_lines(path, [json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"])


class RecordAppender:
    """Append-only, crash-safe record writer used by resumable jobs.

    >>> with RecordAppender(out) as w:          # doctest: +SKIP
    ...     for r in todo:
    ...         if r.id not in w.done: w.append(r)
    """

    def __init__(self, path: str | os.PathLike, fsync: bool = True):
        self.path = Path(path)
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: set[str] = self._recover()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _recover(self) -> set[str]:
        """Ids of whole records already in the file; cut a torn trailing line."""
        if not self.path.exists():
            return set()
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            log.warning("%s: cutting a torn last line (%d bytes) left by a crash", self.path, len(data) - end)
            with self.path.open("r+b") as f:
                f.truncate(end)
        done = set()
        for lineno, line in enumerate(data[:end].splitlines(), start=1):
            if line.strip():
                try:
                    done.add(json.loads(line)["id"])
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise InputError(f"{self.path}:{lineno}: existing output line is not a record; "
                                     "move the file away or pass a new output path") from None
        return done

    def append(self, record: Record) -> None:
        if record.id in self.done:
            raise ValueError(f"record {record.id!r} already written to {self.path}")
        os.write(self._fd, dumps(record).encode("utf-8"))
        if self.fsync:
            os.fsync(self._fd)
        self.done.add(record.id)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "RecordAppender":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
