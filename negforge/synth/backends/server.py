"""A local OpenAI-compatible server (xllamacpp, llama.cpp inside) that negforge starts and stops.

``backend: local`` (:class:`LocalBackend`, the default) starts it for ``llm.gguf`` and talks to it
through the real ``openai`` client path (:class:`~negforge.synth.backends.openai_backend.OpenAIBackend`);
any other server is ``backend: openai`` with ``llm.base_url``.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING, Optional

from ..errors import BackendError, MissingDependencyError
from ..models import resolve_gguf
from .openai_backend import OpenAIBackend

if TYPE_CHECKING:
    from ..config import LLMConfig

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def auto_threads(max_threads: int = 4) -> int:
    """Threads for llama.cpp: the cores that are idle now (at least 1, at most ``max_threads``).

    llama.cpp's threads meet at a barrier after every layer, so one preempted thread stalls the
    rest: on a busy 2-core machine 2 threads decoded ~0.3 tokens/s where 1 thread did ~7 (measured
    while training ran beside it). Taking only the idle cores avoids that cliff."""
    cores = os.cpu_count() or 2
    try:
        busy = os.getloadavg()[0]
    except OSError:  # not available on this platform
        busy = 0.0
    return max(1, min(max_threads, cores - int(round(busy))))


class LocalServer:
    """``with LocalServer(gguf) as srv: OpenAI(base_url=srv.base_url)``."""

    def __init__(
        self,
        gguf: str = "bundled",
        n_ctx: int = 4096,
        n_parallel: int = 1,
        threads: Optional[int] = None,
        port: Optional[int] = None,
    ):
        self.gguf = resolve_gguf(gguf)
        self.n_ctx, self.n_parallel = n_ctx, n_parallel
        self.threads = threads or auto_threads()
        self.port = port or free_port()
        self._server = None

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise BackendError("local server is not started")
        return self._server.listening_address + "/v1"

    def start(self) -> LocalServer:
        try:
            import xllamacpp
        except ImportError:
            raise MissingDependencyError(
                "the local LLM server needs 'pip install xllamacpp' "
                "(or set llm.base_url to a running OpenAI-compatible server)"
            ) from None
        p = xllamacpp.CommonParams()
        p.model.path = self.gguf
        # llama.cpp splits n_ctx across parallel slots: give each slot the full context.
        p.n_ctx = self.n_ctx * self.n_parallel
        p.n_parallel = self.n_parallel
        p.cpuparams.n_threads = self.threads
        p.cpuparams_batch.n_threads = self.threads
        p.port = self.port
        # llama.cpp logs every slot event to stderr; keep it for --verbose (DEBUG) runs only.
        p.verbosity = 3 if log.isEnabledFor(logging.DEBUG) else 0
        try:
            self._server = xllamacpp.Server(p)
        except Exception as e:  # the C++ side raises plain RuntimeErrors
            raise BackendError(f"could not start the local server for {self.gguf}: {e}") from e
        log.info(
            "local LLM server for %s at %s (%d threads, %d slots)",
            self.gguf,
            self.base_url,
            self.threads,
            self.n_parallel,
        )
        return self

    def stop(self) -> None:
        self._server = None  # xllamacpp stops its loop when the object is released

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# llama.cpp gives every parallel slot its own n_ctx of KV cache: more slots than this only cost memory.
LOCAL_MAX_PARALLEL = 16


def gguf_identity(path: str) -> str:
    """File name and size: what the cache key needs (the served model name is free text)."""
    try:
        return f"{os.path.basename(path)}:{os.path.getsize(path)}"
    except OSError:
        return os.path.basename(path)


class LocalBackend(OpenAIBackend):
    """``backend: local``: a :class:`LocalServer` for ``cfg.gguf``, started here, stopped by :meth:`close`."""

    name = "local"

    def __init__(self, cfg: LLMConfig):
        self.server = LocalServer(cfg.gguf, n_ctx=cfg.n_ctx, n_parallel=min(cfg.concurrency, LOCAL_MAX_PARALLEL))
        self.server.start()
        try:
            super().__init__(cfg, self.server.base_url)
        except BaseException:
            self.server.stop()
            raise

    @property
    def cache_model(self) -> str:
        return f"{self.model}@{gguf_identity(self.server.gguf)}"

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.server.stop()
