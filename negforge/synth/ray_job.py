"""``negforge generate --ray``: the generation job on a Ray cluster (many machines, many GPUs).

The driver (the process running :func:`~negforge.synth.job.run_generate_job`) keeps everything that makes
the job resumable: the output lock, the records already done, the failures file and the summary. It
makes a Ray dataset of the pending records and maps it, ``generate.batch_size`` records a batch, over a
pool of ``ray.actors`` actors (:class:`GenerateActor`). Each actor opens **one** backend in its
constructor from ``generate.llm`` and keeps it: a vLLM engine on the GPUs Ray gave it
(``ray.gpus_per_actor``, the engine's ``tensor_parallel_size``), or an OpenAI client to one server
(actor *i* gets ``ray.base_urls[i % n]``; empty: ``llm.base_url``). A batch runs through the stage
function :func:`~negforge.synth.generate.generate_records`, the same flow and prompts as one process, with
the job's corpus profile (computed once, by the driver or, when the LLM must describe the corpus, by one
Ray task). A row whose LLM work failed comes back marked failed (with its step and error); an exception in
a batch marks that batch's rows failed (step ``batch``), never the dataset. A dead actor (a crashed engine)
is restarted by Ray Data and its batches retried.

Only the driver writes: it appends each batch's records as the batch comes back (one fsynced line per
record) and checkpoints the failures and summary, so a driver killed at any point (``kill -9``) loses at
most the batches in flight; the rerun skips the records in the output and redoes the others (the LLM
cache replays the calls that had finished). No record is written twice: ids are checked as they come.

Cluster: ``ray.address``, else ``$RAY_ADDRESS``, else a local cluster for the job (``ray.num_cpus``).
Every node needs negforge installed (``pip install 'negforge[ray]'``) and, for the LLM cache and corpus
profile, the same ``cache_dir`` path (a shared file system, or per node: a rerun then may recompute).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from .errors import ConfigError
from .gen_report import FailedRecord, GenerateReport
from .schema import Record

if TYPE_CHECKING:
    from .config import GenerateConfig
    from .profile import CorpusProfile

log = logging.getLogger(__name__)

_SUMMED = ("records_done", "records_failed", "drafts", "analysis_failed", "analysis_filler", "revisions", "repaired")


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError("--ray needs Ray Data: pip install 'negforge[ray]' (or 'ray[data]')") from None
    return ray


def actor_config(cfg: GenerateConfig) -> GenerateConfig:
    """What an actor runs with: no selection (the driver selected), paths made absolute (workers' cwd differs)."""

    def absolute(p: Optional[str]) -> Optional[str]:
        return str(Path(p).resolve()) if p else p

    update: dict[str, Any] = {
        "limit": None,
        "shard": 0,
        "num_shards": 1,
        "cache_dir": absolute(cfg.cache_dir),
        "template_dir": absolute(cfg.template_dir),
        "ray": cfg.ray.model_copy(update={"enabled": False}),
    }
    if Path(cfg.template).is_dir():
        update["template"] = absolute(cfg.template)
    if cfg.profile.corpus:
        update["profile"] = cfg.profile.model_copy(update={"corpus": absolute(cfg.profile.corpus)})
    return cfg.model_copy(update=update)


def merge_report(into: GenerateReport, part: GenerateReport, failed: Sequence[FailedRecord]) -> None:
    """Add one batch's counts (an actor's report) to the job's report."""
    for k in _SUMMED:
        if k != "records_failed":
            setattr(into, k, getattr(into, k) + getattr(part, k))
    for k in ("status", "reasons", "reasks"):
        getattr(into, k).update(getattr(part, k))
    for f in failed:
        into.add_failure(f)
    for k, v in part.usage.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "completion_tokens_per_s":
            into.usage[k] = into.usage.get(k, 0) + v


class GenerateActor:
    """One backend, opened once; ``__call__`` runs a batch of records (numpy batch of JSON strings)."""

    def __init__(self, cfg_json: str, profile_json: Optional[str], picker: Any = None):
        from .config import GenerateConfig
        from .generate import open_generation_backend
        from .profile import CorpusProfile

        cfg = GenerateConfig.model_validate_json(cfg_json)
        urls = cfg.ray.base_urls
        if urls:
            import ray

            i = ray.get(picker.next.remote()) if picker is not None else 0
            cfg = cfg.model_copy(update={"llm": cfg.llm.model_copy(update={"base_url": urls[i % len(urls)]})})
        self.cfg = cfg
        self.profile = CorpusProfile.model_validate_json(profile_json) if profile_json else None
        self.stack = ExitStack()
        self.backend = open_generation_backend(cfg, self.stack)
        log.info("ray actor %d: backend %s at %s", os.getpid(), cfg.llm.backend, cfg.llm.base_url)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from .generate import generate_records

        records = [Record.model_validate_json(s) for s in batch["record"]]
        try:
            done, report = generate_records(
                records, None, self.cfg, backend=self.backend, show_progress=False, profile=self.profile
            )
            failed = list(report.failed)
        except Exception as e:  # the batch's rows come back failed, the dataset goes on
            first = str(e).splitlines()[0][:300] if str(e) else ""
            done, report = [], GenerateReport()
            failed = [FailedRecord(id=r.id, step="batch", error=f"{type(e).__name__}: {first}") for r in records]
        by_id = {r.id: r.model_dump_json() for r in done}
        why = {f.id: f.model_dump_json() for f in failed}
        rows = [r.id for r in records]
        return {
            "id": rows,
            "record": [by_id.get(i, "") for i in rows],
            "failed": [why.get(i, "") for i in rows],
            "report": [report.model_dump_json() if n == 0 else "" for n in range(len(rows))],
        }

    def __del__(self) -> None:
        try:
            self.stack.close()
        except Exception:  # noqa: BLE001  # the process is going away
            pass


class _Picker:
    """Hands actor i its number, so the actors spread over ``ray.base_urls``."""

    def __init__(self) -> None:
        self.n = -1

    def next(self) -> int:
        self.n += 1
        return self.n


def _describe_profile(cfg_json: str, records_json: list[str]) -> tuple[str, dict[str, Any]]:
    """The corpus profile with the LLM's description, and the usage of that call (one Ray task with an
    actor's resources)."""
    from .config import GenerateConfig
    from .generate import open_generation_backend
    from .profile import corpus_profile

    cfg = GenerateConfig.model_validate_json(cfg_json)
    records = [Record.model_validate_json(s) for s in records_json]
    with ExitStack() as stack:
        backend = open_generation_backend(cfg, stack)
        profile = corpus_profile(cfg.profile, records, backend, cfg.llm.params, cfg.cache_dir)
        usage = getattr(backend, "usage", None)
        return profile.model_dump_json(), usage.to_dict() if usage is not None else {}


class RayRunner:
    """The ``runner`` of :func:`~negforge.synth.job.run_generate_job` for ``generate.ray.enabled``."""

    def __init__(self, cfg: GenerateConfig):
        self.cfg = cfg
        self.ray = _ray()

    def _connect(self) -> bool:
        """Join (or start) the cluster; True when this call started Ray (and so shuts it down)."""
        ray = self.ray
        if ray.is_initialized():
            return False
        address = self.cfg.ray.address or os.environ.get("RAY_ADDRESS")
        opts: dict[str, Any] = {"logging_level": logging.WARNING, "configure_logging": False}
        logging.getLogger("ray.data").setLevel(max(logging.WARNING, logging.getLogger("ray.data").level))
        if address:
            ray.init(address=address, **opts)
        else:
            ray.init(num_cpus=self.cfg.ray.num_cpus, include_dashboard=False, **opts)
        return True

    def _resources(self) -> dict[str, Any]:
        r = self.cfg.ray
        return {"num_cpus": r.cpus_per_actor, "num_gpus": r.gpus_per_actor}

    def profile(self, acfg: GenerateConfig, records: Sequence[Record], report: GenerateReport) -> CorpusProfile:
        """The job's corpus profile, as one process would build it (see :mod:`negforge.synth.profile`); the
        LLM call that describes the corpus is counted in ``report``."""
        from .profile import CorpusProfile, _cache_path, corpus_profile

        p = acfg.profile
        prof = corpus_profile(p, records, None, cache_dir=acfg.cache_dir, model=acfg.llm.model)
        stored = _cache_path(acfg.cache_dir, prof.key)
        if p.description or not p.describe_with_llm or (stored is not None and stored.is_file()):
            return prof
        task = self.ray.remote(_describe_profile).options(**self._resources())
        out, usage = self.ray.get(task.remote(acfg.model_dump_json(), [r.model_dump_json() for r in records]))
        merge_report(report, GenerateReport(usage=usage), [])
        return CorpusProfile.model_validate_json(out)

    def __call__(
        self,
        pending: Sequence[Record],
        report: GenerateReport,
        on_batch: Callable[[list[Record], list[FailedRecord]], None],
        show_progress: bool,
        records: Sequence[Record],
    ) -> None:
        from tqdm.auto import tqdm

        ray = self.ray
        started = self._connect()
        try:
            acfg = actor_config(self.cfg)
            profile = self.profile(acfg, records, report)
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = False
            ctx.enable_auto_log_stats = False
            picker = ray.remote(_Picker).options(num_cpus=0).remote() if acfg.ray.base_urls else None
            ds = ray.data.from_items([{"record": r.model_dump_json()} for r in pending])
            ds = ds.map_batches(
                GenerateActor,
                batch_size=acfg.batch_size,
                batch_format="numpy",
                fn_constructor_args=(acfg.model_dump_json(), profile.model_dump_json(), picker),
                compute=ray.data.ActorPoolStrategy(size=acfg.ray.actors),
                **self._resources(),
            )
            self._collect(ds, pending, report, on_batch, show_progress, tqdm)
        finally:
            if started:
                ray.shutdown()

    @staticmethod
    def _collect(
        ds: Any,
        pending: Sequence[Record],
        report: GenerateReport,
        on_batch: Callable[[list[Record], list[FailedRecord]], None],
        show_progress: bool,
        tqdm: Any,
    ) -> None:
        """Write each block as it comes back; every pending id exactly once, else an error."""
        left = {r.id for r in pending}
        with tqdm(total=len(pending), desc="generate (ray)", unit="rec", disable=not show_progress) as bar:
            for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
                done, failed = [], []
                for rid, rec, why, rep in zip(b["id"], b["record"], b["failed"], b["report"]):
                    if rid not in left:
                        raise RuntimeError(f"ray: record {rid!r} came back twice or was never sent")
                    left.discard(rid)
                    if rec:
                        done.append(Record.model_validate_json(rec))
                    else:
                        failed.append(FailedRecord.model_validate_json(why))
                    if rep:
                        merge_report(report, GenerateReport.model_validate_json(rep), [])
                for f in failed:
                    report.add_failure(f)
                on_batch(done, failed)
                bar.set_postfix(kept=report.status["kept"], failed=report.records_failed, refresh=False)
                bar.update(len(done) + len(failed))
        if left:
            raise RuntimeError(f"ray: {len(left)} records never came back (e.g. {sorted(left)[0]!r})")
