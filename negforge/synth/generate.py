"""Multi-attribute self-reflection (MAR) generation of hard negatives.

For a batch of records, three steps, each one ``backend.generate`` call over every row of the
batch that needs it (plus one call per re-ask round), so batching pays on vLLM:

1. **analyse**: the LLM lists the query's attributes (the set's ``space.yaml``: ``query_attributes``)
   and what in the positive answers the query;
2. **generate**: for each of ``num_negatives`` settings sampled per draft (domain, difficulty,
   change or withhold, length matched to the positive, which attribute to flip) one passage
   that keeps the rest but no longer answers the query;
3. **reflect** (``reflection_rounds`` times): the LLM checks each open draft and says keep,
   revise (with the new text; checked again next round, kept after the last) or drop.

Replies are parsed with :mod:`negforge.synth.parsing`; a reply that fails is re-asked with the error
appended (``max_reasks``), then counted and the draft rejected. Drafts the reflection drops stay
on the record with a rejected verdict (rule ``reflection``); drafts with no usable passage are
left out. A record any of whose calls failed at the backend (after the backend's retries) is
*failed*, not done: it comes back as a :class:`~negforge.synth.gen_report.FailedRecord` with the error,
never as a record with fewer negatives. Everything is counted in the
:class:`~negforge.synth.gen_report.GenerateReport`.

:func:`generate_records` is the stage, called like the others: ``(records, dataset, cfg) ->
(records, report)``, the done records in input order. Writing them to a file with resume, a lock
and a failures file is :func:`negforge.synth.job.run_generate_job`.

The prompts come from the template set ``cfg.template`` (:class:`~negforge.synth.templates.TemplateSet`: its
templates, attribute space and draft checks) and receive the corpus profile (:mod:`negforge.synth.profile`).
The set's ``space.yaml`` names its flow (:mod:`negforge.synth.flows`): this module's ``mar`` or ``counterfactual``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any, Optional

from .backends.base import Backend
from .config import GenerateConfig
from .flows import make_flow
from .gen_report import FailedRecord, GenerateReport
from .job import run_batches, select_records
from .profile import CorpusProfile, corpus_profile
from .schedule import batch_runner
from .schema import Record
from .templates import TemplateSet

log = logging.getLogger(__name__)


def run_flow(
    todo: Sequence[Record],
    cfg: GenerateConfig,
    backend: Backend,
    report: GenerateReport,
    on_batch: Callable[[list[Record], list[FailedRecord]], None],
    show_progress: bool = True,
    profile_records: Optional[Sequence[Record]] = None,
    profile: Optional[CorpusProfile] = None,
) -> None:
    """Run the set's flow over ``todo`` batch by batch (no selection; each batch lock-step or as one chain of
    calls per record, ``cfg.schedule``: :mod:`negforge.synth.schedule`), counting into ``report`` and handing
    each batch's (done, failed) to ``on_batch`` as soon as it is finished. The corpus profile is ``profile``
    when given (a Ray actor gets the job's), else built from ``profile_records`` (default ``todo``; a resumed
    job passes all its records, so the profile stays the same)."""
    usage = getattr(backend, "usage", None)
    before = usage.snapshot() if usage is not None else None
    if profile is None:
        profile = corpus_profile(
            cfg.profile,
            list(profile_records if profile_records is not None else todo),
            backend,
            cfg.llm.params,
            cfg.cache_dir,
        )
    flow = make_flow(backend, cfg, report, profile)
    process, close = batch_runner(flow, cfg.schedule, cfg.llm.concurrency)  # lock-step or a chain per record
    try:
        run_batches(
            todo,
            cfg.batch_size,
            process,
            on_batch,
            show_progress,
            tokens=lambda: usage.since(before).completion_tokens if usage is not None else 0,
            kept=lambda: report.status["kept"],
            calls=lambda: usage.since(before).calls if usage is not None else 0,
            per_record=getattr(
                flow,
                "requests_per_record",  # a first guess; the bar learns the rest
                1 + cfg.num_negatives * (1 + cfg.reflection_rounds),
            ),
        )
    finally:
        close()
        if usage is not None:
            report.usage = usage.since(before).to_dict()


def open_generation_backend(cfg: GenerateConfig, stack: ExitStack, backend: Optional[Backend] = None) -> Backend:
    """``backend`` itself, or one opened from ``cfg.llm`` (a local server when no base_url) with the on-disk
    cache in ``cfg.cache_dir``, closed with ``stack``. A bad template set fails before a server starts."""
    TemplateSet(cfg.template, cfg.template_dir)
    if backend is not None:
        return backend
    from .backends.factory import open_backend

    return stack.enter_context(open_backend(cfg.llm, cache_dir=cfg.cache_dir))


def generate_records(
    records: Sequence[Record],
    dataset: Any,
    cfg: GenerateConfig,
    *,
    backend: Optional[Backend] = None,
    show_progress: bool = True,
    profile: Optional[CorpusProfile] = None,
) -> tuple[list[Record], GenerateReport]:
    """Generate LLM negatives for ``records`` (after ``cfg.limit`` and the shard): the stage's shape,
    ``(records, dataset, config) -> (records, report)``.

    Returns the done records (each the input record plus its new ``source="llm"`` negatives), in input
    order, and the report; a record whose LLM work failed is left out of the list and is in
    ``report.failed`` with its error. ``dataset`` is not needed by the flows (None is fine; the corpus
    profile comes from ``cfg.profile``). Without ``backend``, one is opened from ``cfg.llm`` (see
    :func:`open_generation_backend`). For a file that resumes, with a lock and a failures file, use
    :func:`negforge.synth.job.run_generate_job`. ``profile``: the corpus profile to use (default: built from
    ``records`` and ``cfg.profile``).
    """
    from .stages import stage_dataset

    stage_dataset("generate_records", dataset, cfg, GenerateConfig)  # the old (records, cfg, out) call fails here
    t0 = time.perf_counter()
    todo = select_records(records, cfg.limit, cfg.shard, cfg.num_shards)
    report = GenerateReport(records_total=len(todo))
    done: list[Record] = []
    with ExitStack() as stack:
        if todo:
            b = open_generation_backend(cfg, stack, backend)
            run_flow(
                todo,
                cfg,
                b,
                report,
                lambda d, f: done.extend(d),
                show_progress,
                profile_records=records,
                profile=profile,
            )
    report.wall_s = time.perf_counter() - t0
    report.outcome = "ok" if not report.records_failed else "failures"
    log.info("generate: %s", report.sentence())
    return done, report
