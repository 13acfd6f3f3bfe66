"""A small name -> class registry with lazy imports, shared by backends, verifiers, miners, losses.

Entries are "module:attr" strings so that registering a backend never imports its heavy
dependencies; :meth:`Registry.get` imports on first use and lists the valid names on a miss.
"""

from __future__ import annotations

import importlib
from typing import Any, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}

    def register(self, name: str, target: Any) -> None:
        """``target`` is a class/factory or a "package.module:Attr" string imported lazily."""
        self._entries[name] = target

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}")
        target = self._entries[name]
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            target = getattr(importlib.import_module(module), attr)
            self._entries[name] = target
        return target

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        factory: Any = self.get(name)
        return factory(*args, **kwargs)

    def __contains__(self, name: str) -> bool:
        return name in self._entries
