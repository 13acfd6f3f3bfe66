"""Negatives that do not go stale: re-mine the dense negatives with the model being trained (as ANCE).

``negforge run`` with ``refresh_every_epochs: N`` (and ``mix.epochs`` > N) calls these pieces after epochs
N, 2N, ... (:mod:`negforge.synth.pipeline`): the pool's dense negatives are dropped
(:func:`without_dense`), the dense miner ranks the corpus again with the model just trained
(:func:`refresh_mine_config`: the run's mine section with ``sources = [dense]`` and that model as the
encoder; :func:`negforge.mixers.mine.mine_records`), the new negatives are verified
(:func:`negforge.synth.verifiers.verify_records`: negatives that already carry a verdict, i.e. the
LLM, BM25 and click ones, are left as they are unless ``verify.reverify``), and the next epochs mix
from this pool. Each new negative's provenance names the model that mined it (``provenance.model``: the
model folder; ``extra.model_sha256`` its content hash, ``extra.refresh_after_epoch``), and
:func:`refresh_counts` says how much the pool changed.
"""

from __future__ import annotations

from pathlib import Path

from .config import MineConfig
from .reports import Report
from .schema import Negative, Record, Source, Status


class RefreshReport(Report):
    """One refresh: which model mined, and how the dense negatives changed (counts over all records)."""

    after_epoch: int
    model: str
    model_sha256: str
    records: int = 0
    dense_before: int = 0  # dense negatives in the pool before (any verdict)
    dense_after: int = 0  # dense negatives mined by the trained model
    same_doc_as_before: int = 0  # of those, documents that were already a dense negative of the record
    kept_before: int = 0  # dense negatives kept by the verifier, before / after
    kept_after: int = 0
    rejected_after: int = 0
    records_changed: int = 0  # records whose dense negative documents differ


def model_sha256(model: str) -> str:
    """Content hash of a model folder (weights and config; checkpoints and notes skipped)."""
    from negforge.mixers.runtime import content_key

    return content_key(Path(model))


def without_dense(records: list[Record]) -> list[Record]:
    """The records with every dense negative removed (the other sources, and their verdicts, kept)."""
    return [r.model_copy(update={"negatives": [n for n in r.negatives if n.source != Source.dense]}) for r in records]


def refresh_mine_config(cfg: MineConfig, model: str) -> MineConfig:
    """``cfg`` for the dense miner alone with ``model`` as its encoder, its embeddings cached by the model's
    weights (a folder trained again gets new embeddings, never the old model's)."""
    from negforge.trainer.evaluate import embedding_cache_dir

    enc = cfg.encoder.model_copy(
        update={"model": model, "cache_dir": str(embedding_cache_dir(model, cfg.encoder.cache_dir))}
    )
    return cfg.model_copy(update={"sources": ["dense"], "encoder": enc})


def stamp_provenance(records: list[Record], after_epoch: int, sha: str) -> list[Record]:
    """Mark the dense negatives (just mined) with the refresh they come from."""

    def mark(n: Negative) -> Negative:
        if n.source != Source.dense:
            return n
        extra = {**n.provenance.extra, "refresh_after_epoch": after_epoch, "model_sha256": sha}
        return n.model_copy(update={"provenance": n.provenance.model_copy(update={"extra": extra})})

    return [r.model_copy(update={"negatives": [mark(n) for n in r.negatives]}) for r in records]


def _dense(r: Record) -> list[Negative]:
    return [n for n in r.negatives if n.source == Source.dense]


def _kept(negs: list[Negative]) -> int:
    return sum(1 for n in negs if n.verdict is not None and n.verdict.status == Status.kept)


def refresh_counts(before: list[Record], after: list[Record], after_epoch: int, model: str, sha: str) -> RefreshReport:
    """How the dense negatives of ``after`` (the refreshed, verified pool) differ from ``before``'s."""
    rep = RefreshReport(after_epoch=after_epoch, model=model, model_sha256=sha, records=len(after))
    old = {r.id: _dense(r) for r in before}
    for r in after:
        new, prev = _dense(r), old.get(r.id, [])
        prev_docs = {n.doc_id for n in prev}
        rep.dense_before += len(prev)
        rep.dense_after += len(new)
        rep.same_doc_as_before += sum(1 for n in new if n.doc_id in prev_docs)
        rep.kept_before += _kept(prev)
        rep.kept_after += _kept(new)
        rep.rejected_after += sum(1 for n in new if n.verdict is not None and n.verdict.status == Status.rejected)
        rep.records_changed += {n.doc_id for n in new} != prev_docs
    return rep


def forget_loaded_encoders() -> None:
    """Drop the per-process encoder caches, so that a model folder written again in this process is read
    again (the dense miner loads its encoder through them)."""
    from negforge.mixers import embeddings
    from negforge.synth.models import load_encoder

    load_encoder.cache_clear()
    embeddings._runtime_encoder.cache_clear()
