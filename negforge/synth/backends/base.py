"""The backend contract: a batch of conversations in, a batch of completions out, same order.

A failed row comes back with ``ok=False`` and an ``error``; only configuration or connection
failures raise :class:`~negforge.synth.errors.BackendError`. Chat templates are the server's / engine's
job, never ours.

Every backend has a ``usage`` (:class:`~negforge.synth.backends.usage.Usage`), ``close()`` and is a
context manager (:class:`Backend`). :class:`BaseBackend` does the bookkeeping once: params checked
before any call, the empty batch, the same-length rule, every row counted in ``usage`` and the
batch's wall time; a backend implements only :meth:`BaseBackend._generate` (and ``close`` where it
holds something). New backends register by name in :data:`negforge.synth.backends.BACKENDS`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional, Protocol, runtime_checkable

from pydantic import BaseModel

from ..errors import BackendError
from ..params import GenParams
from .usage import Usage

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": str}
Conversation = list[Message]


class Completion(BaseModel):
    text: Optional[str] = None  # None when the row failed
    error: Optional[str] = None
    prompt_tokens: int = 0  # sent (the server's count)
    cached_prompt_tokens: int = 0  # of prompt_tokens, taken from the server's prompt cache (not computed)
    completion_tokens: int = 0
    cached: bool = False  # served from the on-disk cache: no tokens spent
    finish_reason: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.text is not None and self.error is None


@runtime_checkable
class Backend(Protocol):
    usage: Usage  # every row returned, counted (shared with a cache wrapper)

    @property
    def name(self) -> str:
        """Registry name, e.g. "openai"."""
        ...

    @property
    def model(self) -> str:
        """Model name as the server / engine knows it."""
        ...

    @property
    def cache_model(self) -> str:
        """The model's identity in cache keys (e.g. a local server's GGUF file, not only its served name)."""
        ...

    def generate(self, conversations: list[Conversation], params: GenParams) -> list[Completion]:
        """One Completion per conversation, same length, same order."""
        ...

    def close(self) -> None:
        """Release what the backend holds (connections, an engine, a server); safe to call twice."""
        ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> None: ...


class BaseBackend:
    """The bookkeeping every backend shares (see the module doc). Subclasses set ``name`` and
    implement :meth:`_generate`; they may override :meth:`check_params` and :meth:`close`."""

    name: ClassVar[str] = ""

    def __init__(self, model: str, usage: Optional[Usage] = None):
        self.model = model
        self.usage = usage if usage is not None else Usage()

    @property
    def cache_model(self) -> str:
        """The model's name in cache keys: what must change when the replies would change."""
        return self.model

    def check_params(self, params: GenParams) -> None:
        """Raise a ConfigError for params this backend cannot honour, before anything is sent."""

    def generate(self, conversations: list[Conversation], params: GenParams) -> list[Completion]:
        self.check_params(params)
        if not conversations:
            return []
        with self.usage.busy():
            rows = self._generate(conversations, params)
        if len(rows) != len(conversations):  # the engine / server broke the contract
            raise BackendError(
                f"the {self.name} backend returned {len(rows)} completions for {len(conversations)} conversations"
            )
        for row in rows:
            self.usage.record(row)
        self._after_batch(rows)
        return rows

    def _generate(self, conversations: list[Conversation], params: GenParams) -> list[Completion]:
        """One Completion per conversation, same order (not yet counted in ``usage``)."""
        raise NotImplementedError

    def _after_batch(self, rows: list[Completion]) -> None:
        """A hook after the rows are counted: raise BackendError here when the batch shows the backend
        cannot be used at all (e.g. every row refused for the key or the model)."""

    def close(self) -> None:
        pass

    def __enter__(self) -> BaseBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
