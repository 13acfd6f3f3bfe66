"""Token usage and cost accounting for one backend (one job).

Every backend owns a :class:`Usage` and records each row it returns. Counts are per row:
``calls`` is how many completions were returned (cached and failed ones included), ``cached``
how many came from the on-disk cache (no tokens, no cost), ``failed`` how many came back with
an error, ``retries`` how many extra HTTP attempts the retry policy made, ``requests`` how many
requests actually reached the wire. Tokens are what the server reported in its ``usage`` field:
``prompt_tokens`` are the prompt tokens *sent*, ``prompt_tokens_cached`` the part of them the server took
from its prompt (prefix) cache, so ``prompt_tokens_computed`` (sent minus cached) is what it had to compute.
``wall_s`` is the time at least one ``generate`` call was running (overlapping calls from several threads
count once: see :meth:`Usage.busy`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import LLMConfig
    from .base import Completion

_COUNTS = (
    "calls",
    "prompt_tokens",
    "prompt_tokens_cached",
    "completion_tokens",
    "cached",
    "retries",
    "failed",
    "requests",
)


@dataclass
class Usage:
    calls: int = 0
    prompt_tokens: int = 0
    prompt_tokens_cached: int = 0  # of prompt_tokens, taken from the server's prompt cache
    completion_tokens: int = 0
    cached: int = 0
    retries: int = 0
    failed: int = 0
    requests: int = 0
    cost: float = 0.0
    wall_s: float = 0.0
    # Prices per 1,000 tokens (from LLMConfig); cost is accumulated as rows are recorded.
    price_per_1k_prompt: float = field(default=0.0, repr=False)
    price_per_1k_completion: float = field(default=0.0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _busy: list[float] = field(default_factory=lambda: [0, 0.0], repr=False, compare=False)  # depth, since

    @classmethod
    def from_config(cls, cfg: LLMConfig) -> Usage:
        return cls(price_per_1k_prompt=cfg.price_per_1k_prompt, price_per_1k_completion=cfg.price_per_1k_completion)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def prompt_tokens_computed(self) -> int:
        """Prompt tokens the server computed: sent minus those it took from its prompt cache."""
        return self.prompt_tokens - self.prompt_tokens_cached

    @contextmanager
    def busy(self) -> Iterator[None]:
        """Count the time inside into ``wall_s`` once, however many threads are inside at the same time
        (and however deeply nested: a cache wrapper around its backend, both sharing this usage)."""
        with self._lock:
            if self._busy[0] == 0:
                self._busy[1] = time.perf_counter()
            self._busy[0] += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy[0] -= 1
                if self._busy[0] == 0:
                    self.wall_s += time.perf_counter() - self._busy[1]

    def price(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.price_per_1k_prompt + completion_tokens * self.price_per_1k_completion) / 1000

    def record(self, completion: Completion) -> None:
        """Count one returned row (its tokens and cost unless it came from the cache)."""
        with self._lock:
            self.calls += 1
            if completion.cached:
                self.cached += 1
                return
            if not completion.ok:
                self.failed += 1
            self.prompt_tokens += completion.prompt_tokens
            self.prompt_tokens_cached += completion.cached_prompt_tokens
            self.completion_tokens += completion.completion_tokens
            self.cost += self.price(completion.prompt_tokens, completion.completion_tokens)

    def add(self, **counts: float) -> None:
        """Thread-safe increments, e.g. ``usage.add(retries=1, requests=1)``."""
        with self._lock:
            for k, v in counts.items():
                if k not in _COUNTS + ("cost", "wall_s"):
                    raise AttributeError(f"Usage has no counter {k!r}")
                setattr(self, k, getattr(self, k) + v)

    def snapshot(self) -> Usage:
        with self._lock:
            return Usage(**{f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("_lock", "_busy")})

    def since(self, before: Usage) -> Usage:
        """The usage accrued after ``before`` (a :meth:`snapshot`): one job's share of a shared backend."""
        now = self.snapshot()
        for k in _COUNTS + ("cost", "wall_s"):
            setattr(now, k, getattr(now, k) - getattr(before, k))
        return now

    def __iadd__(self, other: Usage) -> Usage:
        o = other.snapshot()
        self.add(**{k: getattr(o, k) for k in _COUNTS + ("cost", "wall_s")})
        return self

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            d: dict[str, Any] = {k: getattr(self, k) for k in _COUNTS}
            d["total_tokens"] = self.prompt_tokens + self.completion_tokens
            d["prompt_tokens_computed"] = self.prompt_tokens - self.prompt_tokens_cached
            d["cost"] = round(self.cost, 6)
            d["wall_s"] = round(self.wall_s, 3)
            d["completion_tokens_per_s"] = round(self.completion_tokens / self.wall_s, 2) if self.wall_s > 0 else 0.0
            return d


def usage_line(u: Usage) -> str:
    """One readable sentence for the logs: calls, tokens, cache hits, failures, retries and cost."""
    cost = f", cost {u.cost:.4f}" if u.cost else ""
    return (
        f"{u.calls} calls ({u.cached} cached, {u.failed} failed, {u.retries} retries), "
        f"{u.prompt_tokens:,} prompt ({u.prompt_tokens_computed:,} computed, the rest from the server's prompt cache) "
        f"+ {u.completion_tokens:,} completion tokens in {u.wall_s:.1f} s{cost}"
    )
