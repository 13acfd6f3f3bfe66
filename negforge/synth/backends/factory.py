"""``open_backend(cfg, cache_dir)``: the one way stages get an LLM backend.

It resolves the endpoint (``llm.base_url``, else ``$OPENAI_BASE_URL``, see :mod:`.endpoint`), then
builds the backend registered as ``cfg.backend`` (:data:`negforge.synth.backends.BACKENDS`: ``local``
starts the bundled-model server and stops it on close, ``openai`` talks to ``base_url``, ``vllm``
loads the engine); with ``cache_dir`` it wraps the backend in the on-disk
:class:`~negforge.synth.cache.CachedBackend` (``cache_dir=None`` is ``--no-cache``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Optional

from ..config import LLMConfig
from . import BACKENDS
from .base import Backend
from .endpoint import resolve_endpoint
from .usage import usage_line

log = logging.getLogger(__name__)


@contextmanager
def open_backend(cfg: LLMConfig, cache_dir: Optional[str] = None) -> Iterator[Backend]:
    with ExitStack() as stack:
        cfg = resolve_endpoint(cfg)  # OPENAI_BASE_URL / NEGFORGE_MODEL / the server's /v1/models
        backend: Backend = stack.enter_context(BACKENDS.create(cfg.backend, cfg))
        if cache_dir is not None:
            from ..cache import CachedBackend, CompletionCache

            cached = CachedBackend(backend, CompletionCache(cache_dir))
            stack.callback(cached.cache.close)
            backend = cached
        stack.callback(lambda: log.info("LLM usage (%s): %s", cfg.model, usage_line(backend.usage)))
        yield backend
