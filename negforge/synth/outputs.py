"""Rules every output file follows: one permission rule, temp files that never outlive their job,
an advisory lock per output being written, and content digests for stage stamps.

* **Permissions**: every file negforge writes gets ``0o666 & ~umask`` (what ``open()`` gives), whether it
  was written atomically through a temp file, appended, or is a cache; folders ``0o777 & ~umask``.
* **Temp files** are named ``.NAME.<pid>.<random>.tmp`` beside their target. :func:`clean_stale_temps`
  (run when a writer starts) removes those whose process is gone, and the ones of the old format
  (no pid) older than an hour; a job's own temp files go on any exit Python sees (exceptions,
  Ctrl-C, SIGTERM through the CLI); a ``kill -9`` leaves them for the next start.
* **Locks**: :class:`OutputLock` holds ``OUT.lock`` (owner pid, host, start time) with ``flock`` for as
  long as the output is written. A second job on the same output fails at once, naming the owner;
  the lock of a process that died (``kill -9`` included) is released by the kernel and taken over.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Optional

from .errors import NegforgeError

log = logging.getLogger(__name__)

STALE_LEGACY_TEMP_S = 3600.0


class OutputLockedError(NegforgeError):
    """Another live job is writing this output."""


def umask() -> int:
    """The process umask now: from /proc on Linux (no side effect); elsewhere by setting and restoring it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    return 0o666 & ~umask()


def dir_mode() -> int:
    return 0o777 & ~umask()


def apply_file_mode(path: str | os.PathLike, fd: Optional[int] = None) -> None:
    """Give a file the umask rule's mode (``mkstemp`` makes 0600 files whatever the umask)."""
    if fd is not None:
        os.fchmod(fd, file_mode())
    else:
        os.chmod(path, file_mode())


def apply_dir_mode(path: str | os.PathLike) -> None:
    """``mkdtemp`` makes 0700 folders: give a folder that is to become an output the umask rule's mode."""
    os.chmod(path, dir_mode())


def temp_prefix(target: str | os.PathLike) -> str:
    return f".{Path(target).name}.{os.getpid()}."


_TEMP = re.compile(r"^\.(?P<name>.+?)\.(?:(?P<pid>\d+)\.)?[A-Za-z0-9_]+\.tmp$")
_TEMP_PID = re.compile(r"^\.(?P<name>.+?)\.tmp(?P<pid>\d+)$")  # mixers' caches: .NAME.tmp<pid>


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def clean_stale_temps(folder: str | os.PathLike) -> int:
    """Remove temp files and folders in ``folder`` left by processes that are gone; returns how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    now = time.time()
    for p in folder.iterdir():
        m = _TEMP.match(p.name) or _TEMP_PID.match(p.name)
        if not m:
            continue
        pid = m.group("pid")
        try:
            if pid is not None:
                if int(pid) == os.getpid() or pid_alive(int(pid)):
                    continue
            elif now - p.lstat().st_mtime < STALE_LEGACY_TEMP_S:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed += 1
        except FileNotFoundError:
            continue
        except OSError as e:
            log.warning("could not remove the stale temp file %s: %s", p, e)
    if removed:
        log.info("%s: removed %d temp file(s) left by a job that crashed", folder, removed)
    return removed


def file_digest(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class OutputLock:
    """``with OutputLock(out): ...``: the advisory lock ``OUT.lock`` (or ``lock_path``) for one writer."""

    def __init__(self, target: str | os.PathLike, lock_path: Optional[str | os.PathLike] = None):
        self.target = Path(target)
        self.path = Path(lock_path) if lock_path else self.target.with_name(self.target.name + ".lock")
        self._fd = -1

    def _owner(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                o = self._owner()
                raise OutputLockedError(
                    f"{self.target} is being written by another job (pid {o.get('pid', '?')} on "
                    f"{o.get('host', '?')}, since {o.get('started', '?')}; lock file {self.path}): wait for it "
                    "to finish or write to another output"
                ) from None
            try:  # the file may have been unlinked by its last owner between our open and our flock
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            old = self._owner()
            if old.get("pid") and old.get("pid") != os.getpid():
                log.warning("%s: taking over the lock of pid %s, which is gone", self.target, old["pid"])
            info = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "output": str(self.target),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
            self._fd = fd
            return self
        raise OutputLockedError(f"{self.target}: could not take the lock {self.path} (it keeps changing)")

    def release(self) -> None:
        if self._fd < 0:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
