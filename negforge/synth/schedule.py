"""The order of a flow's LLM calls: lock-step batches, or one chain of calls per record.

* ``lockstep``: each step is one ``backend.generate`` over every row of the batch that needs it
  (:meth:`~negforge.synth.mar.MarFlow.run_batch` as is). Right for an offline vLLM engine, which batches
  the rows and whose prefix cache holds many prefixes at once.
* ``per_record``: each record of the batch runs the whole flow on its own, as a chain of calls sent one
  after another (first step, then its drafts one by one, then their reflections), with
  ``llm.concurrency`` chains side by side. Every call of a record begins with the set's shared prefix
  (:mod:`negforge.synth.templates`), so on a server each call finds that prefix in the prompt cache the
  previous call of the chain left (llama.cpp keeps a slot's last prompt and sends a request to the slot
  whose cached prompt it shares most with; vLLM and OpenAI cache prefixes across requests). In lock-step
  a record's next step comes only after every other record's, by which time its prefix is gone.

Both give the same records, verdicts and counts for the same replies: a record's steps, re-asks and checks
run in the same order either way, only the interleaving with other records differs (tested). ``auto``
(the default) is ``per_record`` for server backends (``openai``, ``local``) and ``lockstep`` for the rest.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .backends.base import Completion, Conversation
from .gen_report import FailedRecord, GenerateReport
from .params import GenParams
from .schema import Record

SERVER_BACKENDS = ("openai", "local")
BatchFn = Callable[[list[Record]], tuple[list[Record], list[FailedRecord]]]


def resolve_schedule(schedule: str, backend: Any) -> str:
    """``lockstep`` or ``per_record`` for ``schedule`` (``auto``: by the backend's registry name)."""
    if schedule != "auto":
        return schedule
    return "per_record" if getattr(backend, "name", "") in SERVER_BACKENDS else "lockstep"


class ChainBackend:
    """A backend seen by one record's chain: a batch of rows is sent one row after another, each row as
    its own call, so the record has one request in flight and each meets the prefix the last one cached."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.usage = inner.usage

    @property
    def name(self) -> str:
        return str(self.inner.name)

    @property
    def model(self) -> str:
        return str(self.inner.model)

    @property
    def cache_model(self) -> str:
        return str(self.inner.cache_model)

    def generate(self, conversations: list[Conversation], params: GenParams) -> list[Completion]:
        out: list[Completion] = []
        for conv in conversations:
            out.extend(self.inner.generate([conv], params))
        return out

    def close(self) -> None:  # the inner backend belongs to the job
        pass

    def __enter__(self) -> ChainBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def merge_counts(into: GenerateReport, part: GenerateReport) -> None:
    """Add one record's counts (its chain's report) to the job's report."""
    for k in ("records_done", "drafts", "analysis_failed", "analysis_filler", "revisions", "repaired"):
        setattr(into, k, getattr(into, k) + getattr(part, k))
    for k in ("status", "reasons", "reasks"):
        getattr(into, k).update(getattr(part, k))
    for f in part.failed:
        into.add_failure(f)


class PerRecord:
    """``process(batch)`` for :func:`~negforge.synth.job.run_batches`: the batch's records as chains, at most
    ``workers`` at a time; returns (done, failed) in input order, as lock-step does. Use as a context manager
    (it holds the thread pool)."""

    def __init__(self, flow: Any, workers: int):
        self.flow, self.workers = flow, max(1, workers)
        self.backend = ChainBackend(flow.backend)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="negforge-chain")

    def _one(self, record: Record) -> tuple[list[Record], list[FailedRecord], GenerateReport]:
        sub = copy.copy(self.flow)  # shares templates, space, profile, params (read-only)
        sub.backend, sub.summary, sub.failed = self.backend, GenerateReport(), {}
        done, failed = sub.run_batch([record])
        return done, failed, sub.summary

    def __call__(self, records: list[Record]) -> tuple[list[Record], list[FailedRecord]]:
        futures = [self._pool.submit(self._one, r) for r in records]
        done: list[Record] = []
        failed: list[FailedRecord] = []
        try:
            for fut in futures:  # input order; the first exception (a dead server) ends the batch
                d, f, part = fut.result()
                done += d
                failed += f
                merge_counts(self.flow.summary, part)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
        return done, failed

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> PerRecord:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def batch_runner(flow: Any, schedule: str, concurrency: int) -> tuple[BatchFn, Callable[[], None]]:
    """The function that runs one batch under ``schedule`` (resolved for the flow's backend), and its closer."""
    if resolve_schedule(schedule, flow.backend) == "lockstep":
        return flow.run_batch, lambda: None
    runner = PerRecord(flow, concurrency)
    return runner, runner.close
