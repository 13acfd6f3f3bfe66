"""The generation bar: it moves per finished request inside a batch, its clock ticks while a request
is in flight, and it counts records, requests, tokens/s, kept and failed."""

from __future__ import annotations

import io
import re
import threading

from negforge.synth.progress import JobProgress


class Counter:
    def __init__(self) -> None:
        self.n = 0
        self.lock = threading.Lock()

    def add(self, k: int = 1) -> None:
        with self.lock:
            self.n += k


def _frames(text: str) -> list[str]:
    return [f for f in re.split(r"[\r\n]", text) if "%|" in f]


def test_bar_moves_per_request_and_the_clock_ticks():
    calls, tokens, buf = Counter(), Counter(), io.StringIO()
    gate = [threading.Event() for _ in range(6)]
    seen = []
    with JobProgress(
        4, per_record=3, calls=lambda: calls.n, tokens=lambda: tokens.n, kept=lambda: 2, interval=0.02, file=buf
    ) as p:
        p.start_batch(2)  # 2 records x 3 requests
        for i in range(6):
            calls.add()
            tokens.add(10)
            gate[i].wait(0.15)  # a request "in flight": only the ticker draws meanwhile
            seen.append(_frames(buf.getvalue())[-1])
        p.finish_batch(2)
        p.start_batch(2)
        calls.add(6)
        p.finish_batch(1, failed=1)
    frames = _frames(buf.getvalue())
    pct = [int(re.match(r"generate \d+/4 rec:\s+(\d+)%", f).group(1)) for f in seen]
    assert pct == sorted(pct) and 0 < pct[0] < pct[-1] <= 50, pct  # moved inside the first batch, before any record
    assert all("0/4 rec" in f for f in seen) and "6 req" in seen[-1] and "2 kept" in seen[-1]
    clocks = {re.search(r"\[(\d\d:\d\d)<", f).group(1) for f in frames}
    assert len(frames) > 12  # the ticker redrew between requests
    assert "100%" in frames[-1] and "4/4 rec" in frames[-1] and "12 req" in frames[-1] and "1 failed" in frames[-1]
    assert "tok/s" in frames[-1] and clocks


def test_disabled_bar_draws_nothing():
    buf = io.StringIO()
    with JobProgress(2, per_record=1, calls=lambda: 0, disable=True, file=buf) as p:
        p.start_batch(2)
        p.finish_batch(2)
    assert buf.getvalue() == ""


def test_the_estimate_learns_what_a_record_takes():
    calls, buf = Counter(), io.StringIO()
    with JobProgress(4, per_record=2, calls=lambda: calls.n, interval=10, file=buf) as p:
        p.start_batch(2)
        calls.add(10)  # re-asks: 5 requests per record, not 2
        p.finish_batch(2)
        assert p.per_record == 5
        p.start_batch(2)
        calls.add(5)  # half of the second batch's 10
        assert p._position() == 2 + 2 * 0.5
        p.finish_batch(2)
