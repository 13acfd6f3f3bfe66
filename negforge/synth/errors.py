"""One root exception for negforge; user errors are also ValueErrors and say what to change."""

from __future__ import annotations

from typing import Any


class NegforgeError(Exception):
    """Root of every error negforge raises on purpose."""


class InputError(NegforgeError, ValueError):
    """Bad input data: a malformed record, a missing file, an empty corpus.

    The message names the file and, where there is one, the line number.
    """


class ConfigError(NegforgeError, ValueError):
    """A bad configuration value; the message lists the valid choices."""


class BackendError(NegforgeError):
    """An LLM backend cannot be used at all (connection, missing package, bad model).

    Per-row failures (junk output, a refused request) never raise: the row comes back failed.
    """


class MissingDependencyError(NegforgeError, ImportError):
    """An optional package is not installed; the message says how to install it."""


def validation_message(e: Any, root: str = "") -> str:
    """A pydantic ``ValidationError`` in one line: ``loc: message; loc: message``.

    ``root`` names the whole object where an error has no location (e.g. ``"record"``). Used for
    bad records, bad configs and bad LLM replies alike (the last is sent back as the re-ask).
    """
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or root
        msg = "missing" if err["type"] == "missing" else err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)
