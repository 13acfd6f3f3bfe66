"""``negforge run``: the whole path on one dataset, stage by stage, each output kept on disk.

    train queries ─┬─ first N ── generate (LLM) ─┐
                   └──────────────────────────────┴─ mine (BM25, dense) ─ verify ─ mix ─ train
    test queries ─────────────────────────────── evaluate base ─────────────── evaluate fine-tuned

Every stage writes its records under ``out_dir`` and a ``<stage>.done.json`` stamp holding the
hash of its config and input and the sha256 of the output it stamps; a rerun reuses a stage whose
stamp matches both (the key, and the output file as it is now) and redoes it otherwise. The old stamp
is removed before a stage writes, so a kill between output and stamp never leaves an output under
another config's stamp. Generation also resumes record by record inside the stage, and is stamped
only when no record failed (a rerun retries the failed ones). ``out_dir/run.lock`` keeps a second
run off the same folder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from pydantic import Field

from .config import RunConfig
from .data import load_beir, records_from_beir
from .io import read_records, write_json, write_records
from .outputs import OutputLock, file_digest
from .reports import PathStr, Report
from .schema import Record

log = logging.getLogger(__name__)


class RunResult(Report):
    out_dir: PathStr
    timings: dict[str, float] = Field(default_factory=dict, serialization_alias="timings_s")
    summaries: dict[str, Any] = Field(default_factory=dict)
    metrics_before: dict[str, float] = Field(default_factory=dict)
    metrics_after: dict[str, float] = Field(default_factory=dict)
    model_path: Optional[str] = None


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode() + b"\x00")
    return h.hexdigest()[:16]


class _Stages:
    """Runs named stages with timing and stamp-based reuse."""

    def __init__(self, out_dir: Path, result: RunResult, fresh: bool):
        self.out_dir, self.result, self.fresh = out_dir, result, fresh

    def records(self, name: str, key: str, fn: Callable[[], tuple[list[Record], Any]]) -> list[Record]:
        out, stamp = self.out_dir / f"{name}.jsonl", self.out_dir / f"{name}.done.json"
        if not self.fresh and out.exists() and stamp.exists():
            try:
                saved = json.loads(stamp.read_text())
            except ValueError:
                saved = {}
            if saved.get("key") == key and saved.get("sha256") == file_digest(out):
                log.info("stage %s: reusing %s (config and input unchanged)", name, out)
                self.result.summaries[name] = saved.get("summary")
                self.result.timings[name] = 0.0
                return read_records(out)
            if saved.get("key") == key:
                log.warning(
                    "stage %s: %s does not match its stamp %s (written by another run, or changed since); "
                    "redoing the stage",
                    name,
                    out,
                    stamp,
                )
        t = time.perf_counter()
        records, summary = fn()
        self.result.timings[name] = round(time.perf_counter() - t, 1)
        stamp.unlink(missing_ok=True)  # no window where the new output sits under the old stamp
        write_records(out, records)
        complete = not getattr(summary, "records_failed", 0)  # failed LLM records: redo (retry them) next run
        summary = summary.to_dict() if hasattr(summary, "to_dict") else summary
        self.result.summaries[name] = summary
        if complete:
            write_json(stamp, {"key": key, "sha256": file_digest(out), "records": len(records), "summary": summary})
        else:
            log.warning("stage %s: not stamped: some records failed; the next run retries them", name)
        return records

    def timed(self, name: str, fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        value = fn()
        self.result.timings[name] = round(time.perf_counter() - t, 1)
        return value


def _shortcut(verified: list[Record], train: Any, cfg: RunConfig, out_dir: Path) -> dict[str, Any]:
    from .shortcut import shortcut_records

    enc = cfg.verify.encoder
    _, report = shortcut_records(
        verified,
        train,
        enc.model,
        max_per_source=SHORTCUT_PER_SOURCE,
        seed=cfg.mix.seed,
        runtime={"backend": enc.backend, "precision": enc.precision},
    )
    report.write_json(out_dir / "shortcut.json")
    return report.to_dict()


SHORTCUT_PER_SOURCE = 100  # negatives per source in the run's shortcut check (encoded: keep the run short)


def run_pipeline(cfg: RunConfig, fresh: bool = False, show_progress: bool = True) -> RunResult:
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with OutputLock(out_dir, lock_path=out_dir / "run.lock"):
        return _run(cfg, out_dir, fresh, show_progress)


def _run(cfg: RunConfig, out_dir: Path, fresh: bool, show_progress: bool) -> RunResult:
    from negforge.mixers.hybrid import mix_records
    from negforge.mixers.mine import mine_records
    from negforge.trainer.evaluate import evaluate_model
    from negforge.trainer.train import train_model

    from .errors import InputError
    from .job import run_generate_job
    from .verifiers import verify_records

    result = RunResult(out_dir=out_dir)
    stages = _Stages(out_dir, result, fresh)
    write_json(out_dir / "config.json", cfg.model_dump(mode="json"))

    train = load_beir(cfg.data, cfg.train_split)
    test = load_beir(cfg.data, cfg.eval.split)
    records = records_from_beir(train)
    if not records:
        raise InputError(f"{cfg.data}: no train query has a relevant document in the corpus; nothing to run on")
    data_key = _digest(train.need_corpus("run").fingerprint(), sorted(train.need_qrels("run").items()))
    n_llm = len(records) if cfg.llm_queries is None else min(cfg.llm_queries, len(records))
    log.info("%d train queries; the LLM stage writes negatives for %d of them", len(records), n_llm)

    # 1. generate: resumable record by record (RecordAppender) into generated.partial.jsonl
    gen_key = _digest(data_key, n_llm, cfg.generate.model_dump(mode="json"))

    def _generate():
        partial = out_dir / f"generated.{gen_key}.partial.jsonl"
        from .profile import with_corpus

        gcfg = with_corpus(cfg.generate, Path(cfg.data))  # the prompts see this corpus's profile
        summary = run_generate_job(records[:n_llm], gcfg, partial, show_progress=show_progress)
        by_id = {r.id: r for r in read_records(partial)}
        return [by_id.get(r.id, r) for r in records], summary

    if n_llm:
        generated = stages.records("generated", gen_key, _generate)
        # (with the generated file's digest: a generate stage that retried failed records changes what mining sees)
        mine_key = _digest(gen_key, file_digest(out_dir / "generated.jsonl"), cfg.mine.model_dump(mode="json"))
    else:  # llm_queries 0: no LLM stage, mined negatives only
        generated = records
        mine_key = _digest(data_key, "no generation", cfg.mine.model_dump(mode="json"))

    # 2. mine BM25 + dense negatives for every train query
    mined = stages.records(
        "mined", mine_key, lambda: mine_records(generated, train, cfg.mine, show_progress=show_progress)
    )

    # 3. verify every negative (all sources alike)
    ver_key = _digest(mine_key, cfg.verify.model_dump(mode="json"))
    verified = stages.records(
        "verified", ver_key, lambda: verify_records(mined, train, cfg.verify, show_progress=show_progress)
    )

    # 3b. shortcut check: can a classifier tell each source's kept negatives from real documents?
    if cfg.shortcut_check:
        result.summaries["shortcut"] = stages.timed("shortcut", lambda: _shortcut(verified, train, cfg, out_dir))

    # 4. base model on the test split
    result.metrics_before = stages.timed(
        "eval_before", lambda: evaluate_model(cfg.train.encoder, test, cfg.eval, show_progress)
    )

    # 5. mix (one draw per epoch) and train; epoch e continues from epoch e-1's model; with
    # refresh_every_epochs N, the dense negatives are mined again by the model trained so far after
    # epochs N, 2N, ... (then verified), and the next epochs mix from that pool
    encoder = cfg.train.encoder
    train_summaries: list[dict[str, Any]] = []
    refreshes: list[dict[str, Any]] = []
    pool, pool_key = verified, ver_key
    t_train = 0.0
    for epoch in range(cfg.mix.epochs):
        if cfg.refresh_every_epochs and epoch and epoch % cfg.refresh_every_epochs == 0:
            pool, pool_key, rep = _refresh(stages, pool, pool_key, train, cfg, encoder, epoch, show_progress)
            refreshes.append(rep)
        name = "mixed" if cfg.mix.epochs == 1 else f"mixed.epoch{epoch}"
        mixed = stages.records(
            name,
            _digest(pool_key, cfg.mix.model_dump(mode="json"), epoch),
            functools.partial(mix_records, pool, train, cfg.mix, epoch=epoch),
        )
        tcfg = cfg.train.model_copy(
            update={
                "encoder": encoder,
                "output_dir": str(out_dir / "model")
                if epoch == cfg.mix.epochs - 1
                else str(out_dir / f"model.epoch{epoch}"),
                "epochs": cfg.train.epochs if cfg.mix.epochs == 1 else 1,
            }
        )
        t = time.perf_counter()
        res = train_model(mixed, tcfg, show_progress)
        t_train += time.perf_counter() - t
        train_summaries.append(res.to_dict())
        encoder = str(res.model_path)
    if refreshes:
        result.summaries["refresh"] = refreshes
    result.timings["train"] = round(t_train, 1)
    result.summaries["train"] = train_summaries
    result.model_path = encoder

    # 6. fine-tuned model on the test split
    result.metrics_after = stages.timed("eval_after", lambda: evaluate_model(encoder, test, cfg.eval, show_progress))
    write_json(out_dir / "metrics.json", result.to_dict())

    # 7. the report (report/report.md + PNGs): loss per logged step, metrics before/after, the verifier's
    # summary, cosine histograms per negative source before/after (the corpus embeddings come from eval's cache)
    if cfg.report:
        stages.timed("report", lambda: _write_report(out_dir, verified, test, cfg, show_progress))
        write_json(out_dir / "metrics.json", result.to_dict())
    return result


def _refresh(
    stages: _Stages,
    pool: list[Record],
    pool_key: str,
    train: Any,
    cfg: RunConfig,
    model: str,
    epoch: int,
    show_progress: bool,
) -> tuple[list[Record], str, dict[str, Any]]:
    """The pool with its dense negatives mined again by ``model`` and verified (two stamped stages whose
    keys hold the model's content hash: a model trained again to other weights never reuses them)."""
    from negforge.mixers.mine import mine_records

    from . import refresh
    from .verifiers import verify_records

    sha = refresh.model_sha256(model)
    mcfg = refresh.refresh_mine_config(cfg.mine, model)
    mine_key = _digest(pool_key, cfg.mine.model_dump(mode="json"), sha, epoch)

    def _mine() -> tuple[list[Record], Any]:
        refresh.forget_loaded_encoders()
        mined, report = mine_records(refresh.without_dense(pool), train, mcfg, show_progress=show_progress)
        return refresh.stamp_provenance(mined, epoch, sha), report

    mined = stages.records(f"mined.refresh{epoch}", mine_key, _mine)
    ver_key = _digest(mine_key, cfg.verify.model_dump(mode="json"))
    verified = stages.records(
        f"verified.refresh{epoch}",
        ver_key,
        lambda: verify_records(mined, train, cfg.verify, show_progress=show_progress),
    )
    rep = refresh.refresh_counts(pool, verified, epoch, model, sha)
    log.info(
        "refresh after epoch %d with %s: %d dense negatives (%d the same documents as before), %d kept",
        epoch,
        model,
        rep.dense_after,
        rep.same_doc_as_before,
        rep.kept_after,
    )
    return verified, ver_key, rep.to_dict()


def _write_report(out_dir: Path, records: list[Record], test: Any, cfg: RunConfig, show_progress: bool) -> None:
    from negforge.trainer.report import build_report, run_inputs

    from .errors import NegforgeError

    try:
        enc = cfg.eval.encoder
        inp = run_inputs(
            out_dir,
            records,
            corpus=test.corpus,
            cache_dir=enc.cache_dir,
            max_seq_length=enc.max_seq_length,
            batch_size=enc.batch_size,
            backend=enc.backend,
            precision=enc.precision,
        )
        md = build_report(out_dir / "report", inp, show_progress)
    except (ImportError, OSError, NegforgeError) as e:  # the run's results stand without the report
        log.warning(
            "the report could not be written (%s: %s); `negforge report %s` retries it", type(e).__name__, e, out_dir
        )
        return
    log.info("report: %s", md)
