"""On-disk completion cache: sqlite3 in WAL mode, one row per key, committed per batch.

The key is the sha256 of (model, ``GenParams.cache_key()``, the conversation's messages). The
rendered template (and so its hash) is inside the messages, so editing a template misses the
cache; so does any change of sampling params. A sampled completion is replayed for the same
seed, which is what makes a killed job resumable at no token cost. Only ok completions are stored.

Crash safety: each ``put_many`` is one sqlite transaction; a process killed with ``kill -9``
loses at most the batch it had not committed, never corrupts the file. Several processes (shards)
may share one cache directory: sqlite serialises their writes (``busy_timeout``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Optional, cast

from .backends.base import Backend, BaseBackend, Completion, Conversation
from .errors import ConfigError
from .params import GenParams

log = logging.getLogger(__name__)

CACHE_FILE = "completions.sqlite"
_SCHEMA = """CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY, model TEXT NOT NULL, text TEXT NOT NULL, prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL, finish_reason TEXT, created REAL NOT NULL)"""


def cache_key(model: str, params: GenParams, conversation: Conversation) -> str:
    blob = json.dumps([model, params.cache_key(), conversation], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CompletionCache:
    """``cache_dir/completions.sqlite``; thread-safe; ``get_many`` / ``put_many`` by key."""

    def __init__(self, cache_dir: str | Path):
        self.path = Path(cache_dir) / CACHE_FILE
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # created here so the umask decides its mode (sqlite's own default is 0644, and its -wal/-shm
            # files copy the database file's mode)
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666))
            self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(
                f"cannot open the LLM cache at {self.path}: {e}; set cache_dir to a writable "
                "folder or disable the cache (--no-cache)"
            ) from None
        self._lock = threading.Lock()

    def get_many(self, keys: list[str]) -> dict[str, Completion]:
        found: dict[str, Completion] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for i in range(0, len(unique), 500):  # stay under sqlite's variable limit
                chunk = unique[i : i + 500]
                rows = self._db.execute(
                    f"SELECT key, text, finish_reason FROM completions WHERE key IN ({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                for key, text, finish in rows:
                    found[key] = Completion(text=text, finish_reason=finish, cached=True)
        return found

    def put_many(self, model: str, items: list[tuple[str, Completion]]) -> int:
        """Store the ok completions of ``items`` in one transaction; returns how many were stored."""
        rows = [
            (k, model, c.text, c.prompt_tokens, c.completion_tokens, c.finish_reason, time.time())
            for k, c in items
            if c.ok and not c.cached
        ]
        if rows:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany("INSERT OR REPLACE INTO completions VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        return len(rows)

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachedBackend(BaseBackend):
    """Wraps a backend: hits come back with ``cached=True`` and no tokens; misses go to the inner
    backend in one batch and its ok completions are stored. Shares the inner backend's ``usage``
    (the inner backend counts the misses, this one the hits)."""

    def __init__(self, inner: Backend, cache: CompletionCache, model_key: Optional[str] = None):
        super().__init__(inner.model, inner.usage)
        self.inner, self.cache = inner, cache
        self.name = inner.name  # type: ignore[misc]  # the wrapped backend's name, per instance
        # What identifies the model for the cache: a local server's GGUF file, not only the served name.
        self.model_key = model_key or inner.cache_model

    @property
    def cache_model(self) -> str:
        return self.model_key

    def generate(self, conversations: list[Conversation], params: GenParams) -> list[Completion]:
        with self.usage.busy():  # the inner backend's time is inside (counted once)
            return self._generate_cached(conversations, params)

    def _generate_cached(self, conversations: list[Conversation], params: GenParams) -> list[Completion]:
        keys = [cache_key(self.model_key, params, c) for c in conversations]
        hits = self.cache.get_many(keys)
        out: list[Optional[Completion]] = [hits.get(k) for k in keys]
        miss = [i for i, c in enumerate(out) if c is None]
        if miss:
            fresh = self.inner.generate([conversations[i] for i in miss], params)
            for i, c in zip(miss, fresh):
                out[i] = c
            stored = self.cache.put_many(self.model_key, [(keys[i], c) for i, c in zip(miss, fresh)])
            log.debug("cache: %d hits, %d misses, %d stored", len(conversations) - len(miss), len(miss), stored)
        for key in keys:
            if key in hits:
                self.usage.record(hits[key])
        return cast(list[Completion], out)  # every miss was filled

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            self.cache.close()
