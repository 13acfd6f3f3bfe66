"""Ask a batch of conversations for replies of a pydantic model, re-asking the ones that fail.

The instructor pattern, batched: every row goes to the backend in one ``generate`` call; a reply
that does not parse (:func:`negforge.synth.parsing.parse_reply`) gets the validation error
appended to its conversation (:func:`~negforge.synth.parsing.reask_message`) and all such rows are
sent again together, up to ``max_reasks`` times. A row whose call failed is not re-asked (the
backend already retried it). Used by every generation step and by the LLM judge.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .backends.base import Backend
from .errors import BackendError
from .params import GenParams
from .parsing import ParseError, parse_reply, reask_message

log = logging.getLogger(__name__)


@dataclass
class Ask:
    """One row: the conversation so far and what came of it."""

    conversation: list[dict[str, str]]
    model: Any  # the pydantic reply model
    fmt: str  # the JSON shape shown in a re-ask
    value: Any = None  # the parsed reply, None when it never parsed
    error: str = ""  # why not, when value is None
    failed_backend: bool = False  # the call itself failed (after the backend's own retries)
    repaired: bool = False  # a reply cut off at max_tokens, closed and trimmed
    reasked: int = 0  # re-asks this row took


def ask_all(backend: Backend, asks: list[Ask], params: GenParams, max_reasks: int, what: str = "ask") -> int:
    """Fill ``value`` (or ``error``) of every ask; returns the number of re-asks sent."""
    pending, sent = asks, 0
    for attempt in range(max_reasks + 1):
        if not pending:
            break
        if attempt:
            sent += len(pending)
        completions = backend.generate([a.conversation for a in pending], params)
        if len(completions) != len(pending):
            raise BackendError(f"backend returned {len(completions)} completions for {len(pending)} conversations")
        retry = []
        for a, c in zip(pending, completions):
            if not c.ok:
                a.error, a.failed_backend = f"backend: {c.error}", True
                continue
            try:
                a.value, a.repaired = parse_reply(c.text or "", a.model, c.finish_reason)
                a.error = ""
            except ParseError as e:
                a.error = str(e)
                a.conversation = a.conversation + [
                    {"role": "assistant", "content": c.text or ""},
                    {"role": "user", "content": reask_message(str(e), a.fmt)},
                ]
                retry.append(a)
        for a in retry:
            a.reasked += attempt < max_reasks
        pending = retry
    for a in pending:
        log.debug("%s: giving up after %d re-asks: %s", what, max_reasks, a.error)
    return sent
