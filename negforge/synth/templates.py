"""Prompt templates are Jinja files under ``prompts/`` (package data), rendered in a sandboxed
environment with ``StrictUndefined``: a missing variable is an error, never an empty string.

A template's identity is its name plus the content hash of the file, which goes into every
negative's provenance and into the LLM cache key. A user's own directory of templates works
the same (``template_dir``).
"""
from __future__ import annotations

import hashlib
import importlib.resources
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from jinja2 import StrictUndefined, TemplateNotFound, UndefinedError
from jinja2.sandbox import SandboxedEnvironment
from jinja2 import FileSystemLoader

from .errors import ConfigError

SUFFIX = ".jinja2"


def builtin_dir() -> Path:
    return Path(str(importlib.resources.files("negforge.prompts")))


@lru_cache(maxsize=8)
def _env(template_dir: str) -> SandboxedEnvironment:
    env = SandboxedEnvironment(loader=FileSystemLoader(template_dir), undefined=StrictUndefined,
                               keep_trailing_newline=False, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["tojson_compact"] = lambda v: __import__("json").dumps(v, ensure_ascii=False)
    return env


def _dir(template_dir: Optional[str | Path]) -> str:
    return str(Path(template_dir) if template_dir else builtin_dir())


def available(template_dir: Optional[str | Path] = None) -> list[str]:
    return sorted(p.name[: -len(SUFFIX)] for p in Path(_dir(template_dir)).glob(f"*{SUFFIX}"))


def template_path(name: str, template_dir: Optional[str | Path] = None) -> Path:
    path = Path(_dir(template_dir)) / f"{name}{SUFFIX}"
    if not path.is_file():
        raise ConfigError(f"no template {name!r} in {_dir(template_dir)}; available: {', '.join(available(template_dir))}")
    return path


def template_hash(*names: str, template_dir: Optional[str | Path] = None) -> str:
    """Content hash (12 hex) over one or more template files, in the order given."""
    h = hashlib.sha256()
    for name in names:
        h.update(name.encode() + b"\x00" + template_path(name, template_dir).read_bytes() + b"\x01")
    return h.hexdigest()[:12]


def render(name: str, template_dir: Optional[str | Path] = None, **variables: Any) -> str:
    """Render ``<name>.jinja2``; raise ConfigError naming the missing variable."""
    template_path(name, template_dir)  # clear error for an unknown name
    try:
        return _env(_dir(template_dir)).get_template(f"{name}{SUFFIX}").render(**variables).strip()
    except UndefinedError as e:
        raise ConfigError(f"template {name!r}: {e.message}; pass it when rendering") from None
    except TemplateNotFound as e:
        raise ConfigError(f"template {name!r} includes missing template {e.name!r}") from None


STEPS = ("analyse", "generate", "reflect")  # the MAR flow's steps, one template each


def complete_sets(template_dir: Optional[str | Path] = None) -> list[str]:
    """Names with a template for every step in ``template_dir`` (None: built in)."""
    have = set(available(template_dir))
    return sorted({n.rsplit("_", 1)[0] for n in have
                   if "_" in n and all(f"{n.rsplit('_', 1)[0]}_{s}" in have for s in STEPS)})


@dataclass
class TemplateSet:
    """``<name>_analyse``, ``<name>_generate``, ``<name>_reflect`` in ``template_dir`` (None: built in)."""

    name: str = "mar"
    template_dir: Optional[str] = None

    def __post_init__(self) -> None:
        have = set(available(self.template_dir))
        missing = [f for f in self.files() if f not in have]
        if missing:
            raise ConfigError(f"no template set {self.name!r} in {_dir(self.template_dir)} (missing "
                              f"{', '.join(m + SUFFIX for m in missing)}); complete sets there: "
                              f"{', '.join(complete_sets(self.template_dir)) or 'none'}")
        self.hash = template_hash(*self.files(), template_dir=self.template_dir)

    def files(self) -> list[str]:
        return [f"{self.name}_{s}" for s in STEPS]

    def render(self, step: str, **variables: Any) -> str:
        return render(f"{self.name}_{step}", self.template_dir, **variables)
