"""A scripted fake backend for unit tests of parsing and retries (never for quality claims); tests only.

``ScriptedBackend(reply_fn)`` calls ``reply_fn(conversation)`` for each row: a ``str`` is the
completion text, an ``Exception`` makes the row come back failed with that reason, a
:class:`Completion` is returned as is. Tokens are counted as whitespace-separated words so
usage accounting can be tested too. Every conversation and params seen are kept in ``.seen``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Union

from negforge.synth.backends.base import BaseBackend, Completion, Conversation
from negforge.synth.params import GenParams

Reply = Union[str, Exception, Completion]


def _words(conv: Conversation) -> int:
    return sum(len(m.get("content", "").split()) for m in conv)


class ScriptedBackend(BaseBackend):
    name = "scripted"

    def __init__(self, reply_fn: Callable[[Conversation], Reply], model: str = "scripted"):
        super().__init__(model)
        self.reply_fn = reply_fn
        self.seen: list[tuple[Conversation, GenParams]] = []
        self.batches: list[int] = []  # size of each generate() call

    @classmethod
    def sequence(cls, replies: Iterable[Reply], model: str = "scripted") -> ScriptedBackend:
        """Replies handed out in call order; running out is a test bug and raises."""
        it = iter(replies)

        def next_reply(conv: Conversation) -> Reply:
            try:
                return next(it)
            except StopIteration:
                raise AssertionError("ScriptedBackend ran out of scripted replies") from None

        return cls(next_reply, model)

    def _generate(self, conversations: list[Conversation], params: GenParams) -> list[Completion]:
        self.batches.append(len(conversations))
        out = []
        for conv in conversations:
            self.seen.append((conv, params))
            reply = self.reply_fn(conv)
            if isinstance(reply, Completion):
                c = reply
            elif isinstance(reply, Exception):
                c = Completion(error=f"{type(reply).__name__}: {reply}")
            elif isinstance(reply, str):
                c = Completion(
                    text=reply, prompt_tokens=_words(conv), completion_tokens=len(reply.split()), finish_reason="stop"
                )
            else:
                raise TypeError(f"reply_fn must return str, Exception or Completion, not {type(reply).__name__}")
            out.append(c)
        return out
