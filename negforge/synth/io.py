"""JSONL in and out, with errors that name the file and line, and crash-safe writes.

* :func:`read_records` validates every line against :class:`~negforge.synth.schema.Record`.
* :func:`write_records` writes a whole file atomically (temp file + ``os.replace``): a crash
  leaves the old file or the new one, never half of one.
* :class:`RecordAppender` appends one record per ``os.write`` and fsyncs, so a job killed at
  any point (``kill -9`` included) leaves only whole records; on reopening, a torn last line
  (power loss) is cut off and the ids already written are known, so a restart skips them.
* :func:`write_record_sets` writes several files as one unit (``mix --epochs``).

Every file gets the umask's mode and temp files never outlive their job (:mod:`negforge.synth.outputs`);
bytes that are not UTF-8 and duplicate ids are input errors naming the file and line.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .errors import InputError, validation_message
from .outputs import apply_file_mode, clean_stale_temps, file_digest, temp_prefix
from .schema import Record

log = logging.getLogger(__name__)


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; raise InputError naming file:line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            line = decode_line(raw, path, lineno)
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def decode_line(raw: bytes, path: str | os.PathLike, lineno: int) -> str:
    """One line as text; bytes that are not UTF-8 are an InputError naming file, line and column."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(
            f"{path}:{lineno}: not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
            "re-encode the file as UTF-8"
        ) from None


def read_text(path: str | os.PathLike) -> str:
    """A whole text file as UTF-8, or an InputError naming the line of the first bad byte."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        lineno = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise InputError(
            f"{path}:{lineno}: not UTF-8 (byte 0x{data[e.start]:02x} at column {col}); re-encode the file as UTF-8"
        ) from None


def check_unique_ids(ids: Iterable[tuple[str, Any]], path: str | os.PathLike, what: str = "record id") -> None:
    """``ids``: (id, line) pairs; the second use of an id is an InputError naming both lines."""
    first: dict[str, Any] = {}
    for rid, lineno in ids:
        if rid in first:
            raise InputError(
                f"{path}:{lineno}: {what} {rid!r} appears again (first at line {first[rid]}); ids must be unique"
            )
        first[rid] = lineno


def iter_numbered_records(path: str | os.PathLike) -> Iterator[tuple[int, Record]]:
    for lineno, obj in iter_jsonl(path):
        try:
            yield lineno, Record.model_validate(obj)
        except ValidationError as e:
            raise InputError(f"{path}:{lineno}: invalid record ({validation_message(e, root='record')})") from None


def iter_records(path: str | os.PathLike) -> Iterator[Record]:
    for _, r in iter_numbered_records(path):
        yield r


def read_records(path: str | os.PathLike) -> list[Record]:
    """Read and validate a whole records file first: a bad line or a repeated id fails before any work."""
    numbered = list(iter_numbered_records(path))
    check_unique_ids(((r.id, n) for n, r in numbered), path)
    return [r for _, r in numbered]


def dumps(record: Record) -> str:
    return record.model_dump_json(exclude_none=False) + "\n"


def write_records(path: str | os.PathLike, records: Iterable[Record]) -> int:
    """Write records to ``path`` atomically; returns the count written."""
    return write_lines(path, (dumps(r) for r in records))


def _write_temp(path: Path, lines: Iterable[str]) -> tuple[str, int]:
    """``lines`` into a fsynced temp file beside ``path`` (the umask's mode); returns (temp path, count)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent)
    n = 0
    try:
        apply_file_mode(tmp, fd)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for line in lines:
                f.write(line)
                n += 1
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp, n


def write_lines(path: str | os.PathLike, lines: Iterable[str]) -> int:
    path = Path(path)
    tmp, n = _write_temp(path, lines)
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n


def write_record_sets(sets: Mapping[Any, Iterable[Record]], manifest: str | os.PathLike) -> dict[str, int]:
    """Write several record files as one unit: all go to temp files first, then each is moved into place,
    then ``manifest`` (JSON: each file's record count and sha256) is written last. A job killed before the
    moves leaves the old set whole; a reader can check the files against the manifest (:func:`check_record_sets`)."""
    temps: list[tuple[str, Path, int]] = []
    try:
        for path, records in sets.items():
            tmp, n = _write_temp(Path(path), (dumps(r) for r in records))
            temps.append((tmp, Path(path), n))
        Path(manifest).unlink(missing_ok=True)  # the old manifest no longer describes the files
        for tmp, path, _ in temps:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _, _ in temps:
            Path(tmp).unlink(missing_ok=True)
        raise
    files = {str(p): {"records": n, "sha256": file_digest(p)} for _, p, n in temps}
    write_json(manifest, {"files": files})
    return {str(p): n for _, p, n in temps}


def check_record_sets(manifest: str | os.PathLike) -> None:
    """InputError unless every file in ``manifest`` exists with the digest it was written with."""
    try:
        files = json.loads(read_text(manifest))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"{manifest}: missing or not a record-set manifest; write the set again") from None
    for path, info in files.items():
        if not Path(path).is_file() or file_digest(path) != info["sha256"]:
            raise InputError(
                f"{path}: does not match {manifest} (a job was killed while writing the set, or the "
                "file was changed since); write the set again"
            )


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
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # the umask decides

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
        done: dict[str, int] = {}
        for lineno, raw in enumerate(data[:end].splitlines(), start=1):
            line = decode_line(raw, self.path, lineno)
            if line.strip():
                try:
                    rid = json.loads(line)["id"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise InputError(
                        f"{self.path}:{lineno}: existing output line is not a record; "
                        "move the file away or pass a new output path"
                    ) from None
                if rid in done:
                    raise InputError(
                        f"{self.path}:{lineno}: record id {rid!r} is already at line {done[rid]} "
                        "of this output (written twice); move the file away or dedupe it"
                    )
                done[rid] = lineno
        return set(done)

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

    def __enter__(self) -> RecordAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
