"""Batch-job machinery for generation: record selection and sharding, the resumable batch loop
with progress, the job summary, and merging shard outputs.

Resume: finished records are appended to the output with :class:`~negforge.synth.io.RecordAppender`
(one fsynced write per record), so a job killed at any point (``kill -9`` included) restarts
where it stopped: ids already in the output are skipped. With the LLM cache on, the restarted
job replays every request it had already made, so its output equals an uninterrupted run's.

Failures: a record whose LLM work failed (after the backend's retries) is never appended. It is
listed with its error in ``OUT.failures.jsonl`` (one JSON object per row: id, step, error) and the
next run on the same output retries exactly those rows (they are not in the output; the cache
replays their calls that had succeeded). ``OUT.summary.json`` accumulates over runs: totals, the
config fingerprint, and every run's report. A job whose failed fraction passes
``generate.max_failed_fraction`` ends with :class:`TooManyFailures` (the CLI's exit 3).

Guards (:func:`run_generate_job`): the output is locked while written (``OUT.lock``; a second job
fails at once); resuming checks the stored config fingerprint (flow, template set hash, model,
params, seed, ...) and names the fields that differ (``fresh=True`` starts over); an input that
is the output is an error.

Sharding: a record belongs to shard ``stable_seed(id) % num_shards``: the same split on every
machine, whatever the input order. ``merge_outputs`` joins the shard files and refuses two
different records under one id.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from .attributes import stable_seed
from .errors import ConfigError, InputError, NegforgeError
from .gen_report import FailedRecord, GenerateReport, accumulate
from .io import RecordAppender, iter_jsonl, iter_records, read_text, write_json, write_lines, write_records
from .outputs import OutputLock, clean_stale_temps
from .schema import Record

if TYPE_CHECKING:
    from .backends.base import Backend
    from .config import GenerateConfig

log = logging.getLogger(__name__)


def shard_of(record_id: str, num_shards: int) -> int:
    return stable_seed("shard", record_id) % num_shards


def select_records(
    records: Sequence[Record], limit: Optional[int] = None, shard: int = 0, num_shards: int = 1
) -> list[Record]:
    """The first ``limit`` records, then those of shard ``shard`` (of ``num_shards``)."""
    if not 0 <= shard < num_shards:
        raise ConfigError(f"shard {shard} is out of range: use 0 <= shard < num_shards ({num_shards})")
    chosen = list(records[:limit] if limit else records)
    if num_shards > 1:
        chosen = [r for r in chosen if shard_of(r.id, num_shards) == shard]
    return chosen


JobSummary = GenerateReport  # the old name


def run_batches(
    todo: Sequence[Record],
    batch_size: int,
    process: Callable[[list[Record]], tuple[list[Record], list[FailedRecord]]],
    write: Callable[[list[Record], list[FailedRecord]], None],
    show_progress: bool = True,
    tokens: Callable[[], int] = lambda: 0,
    kept: Callable[[], int] = lambda: 0,
    calls: Callable[[], int] = lambda: 0,
    per_record: float = 1.0,
) -> int:
    """Process ``todo`` in batches and ``write`` each batch's (done records in input order, failed ones)
    as soon as the batch is finished. The bar (:class:`~negforge.synth.progress.JobProgress`) moves with
    every finished request (``calls``; ``per_record`` requests expected per record), with a live clock,
    ETA, completion tokens/s, the drafts kept and the records failed. Returns the number of records done."""
    from .progress import JobProgress

    written = 0
    with JobProgress(len(todo), per_record, calls=calls, tokens=tokens, kept=kept, disable=not show_progress) as bar:
        for start in range(0, len(todo), batch_size):
            batch = list(todo[start : start + batch_size])
            bar.start_batch(len(batch))
            out, bad = process(batch)
            back = {r.id for r in out} | {f.id for f in bad}
            if back != {r.id for r in batch} or len(out) + len(bad) != len(batch):
                raise RuntimeError("a batch came back with other records than it was given")
            write(out, bad)
            written += len(out)
            bar.finish_batch(len(out), len(bad))
    return written


def merge_outputs(
    out_path: str | os.PathLike, shard_files: Iterable[str | os.PathLike], order: Optional[Sequence[str]] = None
) -> int:
    """Join shard outputs into ``out_path`` (written atomically); returns the record count.

    The same id in two files is fine when the records are identical, an InputError otherwise.
    Records come out in ``order`` (ids, e.g. the input's; others after, in file order) or in
    the order the files list them.
    """
    merged: dict[str, Record] = {}
    where: dict[str, str] = {}
    files = [Path(f) for f in shard_files]
    if not files:
        raise InputError("merge: give at least one shard file")
    if Path(out_path).resolve() in {f.resolve() for f in files}:
        raise InputError(f"merge: the output {out_path} is also an input; write to a new file")
    for f in files:
        for r in iter_records(f):
            if r.id in merged:
                if merged[r.id] != r:
                    raise InputError(
                        f"merge: record {r.id!r} differs between {where[r.id]} and {f}; "
                        "these shards were not made by the same job (same input and config)"
                    )
                continue
            merged[r.id], where[r.id] = r, str(f)
    ids = list(merged)
    if order is not None:
        rank = {rid: i for i, rid in enumerate(order)}
        ids.sort(key=lambda rid: rank.get(rid, len(rank)))  # stable: unknown ids keep file order
    return write_records(out_path, (merged[i] for i in ids))


# -- the resumable job around generate_records -------------------------------------------------------------
class TooManyFailures(NegforgeError):
    """More records failed than ``generate.max_failed_fraction`` allows; the report says which and why."""

    exit_code = 3  # the CLI's exit status: not a user error (2), the job ran but did not finish its records

    def __init__(self, message: str, report: GenerateReport):
        super().__init__(message)
        self.report = report


def failures_path(out: str | os.PathLike) -> Path:
    return Path(f"{out}.failures.jsonl")


def summary_path(out: str | os.PathLike) -> Path:
    return Path(f"{out}.summary.json")


def fingerprint(cfg: GenerateConfig) -> dict[str, Any]:
    """What decides a record's negatives: a resumed job must use the same, or its output mixes two configs."""
    from .templates import TemplateSet

    llm = cfg.llm
    fp = {
        "flow": getattr(cfg, "flow", "mar"),
        "template": cfg.template,
        "template_hash": TemplateSet(cfg.template, cfg.template_dir).hash,
        "backend": llm.backend,
        "model": llm.model,
        "params": llm.params.model_dump(mode="json"),
        "seed": cfg.seed,
        "num_negatives": cfg.num_negatives,
        "reflection_rounds": cfg.reflection_rounds,
        "max_reasks": cfg.max_reasks,
        "max_prompt_words": cfg.max_prompt_words,
    }
    if getattr(cfg, "profile", None) is not None:  # the corpus profile goes into the prompts
        fp["profile"] = cfg.profile.model_dump(mode="json")
    if llm.backend == "openai" and llm.base_url is None:
        fp["gguf"] = llm.gguf  # the local server's model file
    return fp


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v and k in ("params", "profile"):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def fingerprint_diff(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    a, b = _flat(stored), _flat(current)
    return [f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _read_summary(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        state = json.loads(read_text(path))
    except ValueError as e:
        raise InputError(f"{path}: not valid JSON ({e}); move it away or rerun with --fresh") from None
    return state if isinstance(state, dict) else {}


def _read_failures(path: Path) -> dict[str, FailedRecord]:
    if not path.exists():
        return {}
    out = {}
    for lineno, obj in iter_jsonl(path):
        try:
            f = FailedRecord.model_validate(obj)
        except ValueError:
            raise InputError(f"{path}:{lineno}: not a failures row (id, step, error)") from None
        out[f.id] = f
    return out


def _check_resume(out: Path, state: dict[str, Any], fp: dict[str, Any], has_records: bool) -> None:
    stored = state.get("fingerprint")
    if stored is None:
        if has_records:
            raise ConfigError(
                f"{out} has records but no config fingerprint in {summary_path(out)} (made by an "
                "older negforge or another tool): resuming could mix two configs; rerun with --fresh "
                "to start over or write to a new output"
            )
        return
    diff = fingerprint_diff(stored, fp)
    if diff:
        raise ConfigError(
            f"{out} was made with another config ({'; '.join(diff)}): resuming would mix two configs "
            "in one output; rerun with --fresh to start over (removes the output, its failures and "
            "summary) or write to a new output"
        )


def run_generate_job(
    records: Sequence[Record],
    cfg: GenerateConfig,
    out_path: str | os.PathLike,
    backend: Optional[Backend] = None,
    show_progress: bool = True,
    fresh: bool = False,
    input_path: Optional[str | os.PathLike] = None,
    input_dropped: Optional[dict[str, int]] = None,
    runner: Optional[Callable[..., None]] = None,
) -> GenerateReport:
    """:func:`~negforge.synth.generate.generate_records` into ``out_path``, resumable, locked, with a
    failures file and an accumulated summary (see the module doc). Returns this run's report; raises
    :class:`TooManyFailures` (after writing everything) when the failed fraction passes the threshold.

    ``runner(pending, report, on_batch, show_progress, records)`` replaces the in-process flow (it must count
    into ``report`` and hand every pending record to ``on_batch`` once, done or failed); with
    ``cfg.ray.enabled`` it is :class:`negforge.synth.ray_job.RayRunner` (the records in a pool of Ray actors)."""
    from contextlib import ExitStack

    from .generate import open_generation_backend, run_flow

    t0 = time.perf_counter()
    out = Path(out_path)
    if input_path is not None and Path(input_path).resolve() == out.resolve():
        raise InputError(f"{out}: the input is also the output; write the negatives to a new file")
    fails_file, summ_file = failures_path(out), summary_path(out)
    with OutputLock(out):
        clean_stale_temps(out.parent)
        if fresh:
            for p in (out, fails_file, summ_file):
                p.unlink(missing_ok=True)
        state = _read_summary(summ_file)
        fp = fingerprint(cfg)
        todo = select_records(records, cfg.limit, cfg.shard, cfg.num_shards)
        report = GenerateReport(out_path=str(out), records_total=len(todo), input_dropped=dict(input_dropped or {}))
        runs = [r for r in state.get("runs", []) if isinstance(r, dict)]
        with RecordAppender(out) as app, ExitStack() as stack:
            _check_resume(out, state, fp, bool(app.done))
            pending = [r for r in todo if r.id not in app.done]
            retried = {r.id for r in pending}
            # failures of earlier runs that this run does not retry (other shard / limit) stay listed
            failures = {k: v for k, v in _read_failures(fails_file).items() if k not in app.done and k not in retried}
            report.records_skipped = len(todo) - len(pending)
            if report.records_skipped:
                log.info("%s: %d of %d records already done; resuming", out, report.records_skipped, len(todo))

            def checkpoint() -> None:
                report.wall_s = time.perf_counter() - t0
                if failures:
                    write_lines(fails_file, (f.model_dump_json() + "\n" for f in failures.values()))
                else:
                    fails_file.unlink(missing_ok=True)
                total = accumulate(runs + [report.to_dict()], fp)
                total["records_failed"], total["records_in_output"] = len(failures), len(app.done)
                write_json(summ_file, total)

            def on_batch(done: list[Record], failed: list[FailedRecord]) -> None:
                for r in done:
                    app.append(r)
                failures.update((f.id, f) for f in failed)
                checkpoint()

            checkpoint()  # the fingerprint is on disk before the first record
            try:
                if pending and (runner is not None or cfg.ray.enabled):
                    if runner is None:
                        if backend is not None:
                            raise ConfigError(
                                "generate.ray.enabled runs the flow in Ray actors that open their "
                                "own backends from generate.llm: do not pass a backend object"
                            )
                        from .ray_job import RayRunner

                        runner = RayRunner(cfg)
                    runner(pending, report, on_batch, show_progress, records)
                elif pending:
                    b = open_generation_backend(cfg, stack, backend)
                    run_flow(pending, cfg, b, report, on_batch, show_progress, profile_records=records)
            except BaseException as e:
                report.outcome = f"aborted: {str(e).splitlines()[0][:300] if str(e) else type(e).__name__}"
                checkpoint()
                raise
            over = report.failed_fraction > cfg.max_failed_fraction
            report.outcome = "failures" if over else "ok"
            checkpoint()
    log.info("generate: %s", report.sentence())
    if over:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(report.failure_kinds.items()))
        raise TooManyFailures(
            f"{report.records_failed} of {report.records_done + report.records_failed} records failed ({kinds}), more "
            f"than generate.max_failed_fraction={cfg.max_failed_fraction}; they are listed with their errors in "
            f"{fails_file} and are not in {out}: fix the server and rerun the same command to retry exactly them",
            report,
        )
    if report.records_failed:
        log.warning(
            "%d records failed (listed in %s); rerun the same command to retry them", report.records_failed, fails_file
        )
    return report
