"""The progress bar of a batched LLM job: it moves per finished request, not per batch, and its clock ticks.

The flow finishes records a batch at a time (analyse, then generate, then reflect, each over the
whole batch), so a bar counting records alone stands still for minutes. :class:`JobProgress`
counts records on the bar (``generate 3/8 rec``) and moves the bar within a batch as its requests finish
(from the backend's ``usage`` counters, which every backend bumps per returned row), so the
percentage, the rate and the ETA are live from the first request. A ticker thread redraws the bar
every ``interval`` seconds, so the elapsed time runs even while a slow request is in flight.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Optional

BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]"  # tqdm puts ", " before postfix


class JobProgress:
    """``with JobProgress(n, per_record, calls=..., tokens=...) as p:``, then per batch ``p.start_batch(k)``
    and ``p.finish_batch(done, failed)``.

    ``calls`` and ``tokens`` return the job's finished requests and completion tokens so far;
    ``per_record`` is the number of requests one record needs (a first estimate; after each batch the
    bar uses what the records so far took, re-asks included);
    ``kept`` returns the drafts kept so far.
    """

    def __init__(
        self,
        total: int,
        per_record: float,
        calls: Callable[[], int],
        tokens: Callable[[], int] = lambda: 0,
        kept: Optional[Callable[[], int]] = None,
        desc: str = "generate",
        disable: bool = False,
        interval: float = 0.5,
        file: Any = None,
    ):
        self.total, self.per_record = total, max(1.0, per_record)
        self.calls, self.tokens, self.kept = calls, tokens, kept
        self.desc, self.disable, self.interval, self.file = desc, disable, interval, file
        self.records = self.failed = 0
        self._batch, self._calls0, self._shown = 0, 0, 0.0
        self._seen_calls = self._seen_records = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._bar: Any = None
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> JobProgress:
        from tqdm.auto import tqdm

        self._t0 = time.perf_counter()
        self._bar = tqdm(
            total=self.total,
            desc=self.desc,
            disable=self.disable,
            dynamic_ncols=True,
            mininterval=self.interval,
            bar_format=BAR_FORMAT,
            file=self.file,
        )
        self._draw()
        if not self.disable:
            self._thread = threading.Thread(target=self._tick, name="negforge-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._draw()
            self._bar.close()

    def start_batch(self, n: int) -> None:
        with self._lock:
            self._batch, self._calls0 = n, self._safe(self.calls)

    def finish_batch(self, done: int, failed: int = 0) -> None:
        with self._lock:
            calls = self._safe(self.calls) - self._calls0
            if self._batch and calls > 0:  # what a record took so far, for the next batch's estimate
                self._seen_calls += calls
                self._seen_records += self._batch
                self.per_record = max(1.0, self._seen_calls / self._seen_records)
            self.records += done + failed
            self.failed += failed
            self._batch = 0
            self._draw()

    # -- drawing --------------------------------------------------------------------------------
    @staticmethod
    def _safe(fn: Optional[Callable[[], int]]) -> int:
        try:
            return int(fn()) if fn is not None else 0
        except Exception:  # noqa: BLE001 - a counter must never break the job
            return 0

    def _position(self) -> float:
        """Records finished, plus the running batch's share of its expected requests (below 1)."""
        if not self._batch:
            return float(self.records)
        share = (self._safe(self.calls) - self._calls0) / (self._batch * self.per_record)
        return self.records + self._batch * min(max(share, 0.0), 0.99)

    def postfix(self) -> str:
        elapsed = time.perf_counter() - self._t0
        tok_s = self._safe(self.tokens) / elapsed if elapsed > 0 else 0.0
        parts = [f"{self._safe(self.calls)} req", f"{tok_s:.1f} tok/s"]
        if self.kept is not None:
            parts.append(f"{self._safe(self.kept)} kept")
        if self.failed:
            parts.append(f"{self.failed} failed")
        return ", ".join(parts)

    def _draw(self) -> None:  # under self._lock
        pos = self._position()
        if pos > self._shown:
            self._bar.update(pos - self._shown)  # update, not n=: keeps tqdm's rate and ETA right
            self._shown = pos
        self._bar.set_description_str(f"{self.desc} {self.records}/{self.total} rec", refresh=False)
        self._bar.set_postfix_str(self.postfix(), refresh=False)
        self._bar.refresh()

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                self._draw()
