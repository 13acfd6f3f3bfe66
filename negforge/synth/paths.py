"""Where negforge keeps its caches: ``$NEGFORGE_CACHE_DIR``, else ``$XDG_CACHE_HOME/negforge``, else
``~/.cache/negforge`` (never the current directory, so a run from elsewhere reuses the same caches)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    if os.environ.get("NEGFORGE_CACHE_DIR"):
        return Path(os.environ["NEGFORGE_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "negforge"


def cache_path(*parts: str) -> str:
    """``cache_root() / parts`` as a string (the form the configs hold), e.g. ``cache_path("llm")``."""
    return str(cache_root().joinpath(*parts))
