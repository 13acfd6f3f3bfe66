"""``open_backend(cfg, cache_dir)``: the one way stages get an LLM backend.

With ``backend="openai"`` and no ``base_url`` (nor ``$OPENAI_BASE_URL``, see :mod:`.endpoint`) it starts the bundled-model
:class:`~negforge.synth.backends.server.LocalServer` and stops it afterwards; with ``cache_dir`` it wraps the
backend in the on-disk :class:`~negforge.synth.cache.CachedBackend` (``cache_dir=None`` is ``--no-cache``).
"""
from __future__ import annotations

import logging
import os
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator, Optional

from ..config import LLMConfig
from . import BACKENDS
from .base import Backend
from .endpoint import resolve_endpoint
from .usage import usage_line

log = logging.getLogger(__name__)

# llama.cpp gives every parallel slot its own n_ctx of KV cache: more slots than this only cost memory.
LOCAL_MAX_PARALLEL = 16


def _gguf_identity(path: str) -> str:
    try:
        return f"{Path(path).name}:{os.path.getsize(path)}"
    except OSError:
        return Path(path).name


@contextmanager
def open_backend(cfg: LLMConfig, cache_dir: Optional[str] = None) -> Iterator[Backend]:
    with ExitStack() as stack:
        cfg = resolve_endpoint(cfg)  # OPENAI_BASE_URL / NEGFORGE_MODEL / the server's /v1/models
        model_key = cfg.model
        if cfg.backend == "openai":
            from .openai_backend import OpenAIBackend

            base_url = cfg.base_url
            if base_url is None:
                from .server import LocalServer

                n_parallel = min(cfg.concurrency, LOCAL_MAX_PARALLEL)
                srv = stack.enter_context(LocalServer(cfg.gguf, n_ctx=cfg.n_ctx, n_parallel=n_parallel))
                base_url = srv.base_url
                # The served name is free text; the cache must miss when the GGUF file changes.
                model_key = f"{cfg.model}@{_gguf_identity(srv.gguf)}"
            backend: Backend = OpenAIBackend(cfg, base_url)
        else:
            backend = BACKENDS.get(cfg.backend)(cfg)
        stack.callback(backend.close)
        if cache_dir is not None:
            from ..cache import CachedBackend, CompletionCache

            backend = CachedBackend(backend, CompletionCache(cache_dir), model_key)
            stack.callback(backend.cache.close)
        stack.callback(lambda: log.info("LLM usage (%s): %s", cfg.model, usage_line(backend.usage)))  # type: ignore
        yield backend
