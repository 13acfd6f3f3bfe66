"""The backend contract: a batch of conversations in, a batch of completions out, same order.

A failed row comes back with ``ok=False`` and an ``error``; only configuration or connection
failures raise :class:`~negforge.synth.errors.BackendError`. Chat templates are the server's / engine's
job, never ours.
"""
from __future__ import annotations

from typing import Optional, Protocol, runtime_checkable

from pydantic import BaseModel

from ..params import GenParams

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": str}
Conversation = list[Message]


class Completion(BaseModel):
    text: Optional[str] = None  # None when the row failed
    error: Optional[str] = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False  # served from the on-disk cache: no tokens spent
    finish_reason: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.text is not None and self.error is None


@runtime_checkable
class Backend(Protocol):
    name: str  # registry name, e.g. "openai"
    model: str  # model name as the server / engine knows it

    def generate(self, conversations: list[Conversation], params: GenParams) -> list[Completion]:
        """One Completion per conversation, same length, same order."""
        ...

    def close(self) -> None: ...
