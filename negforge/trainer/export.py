"""Flatten records to the layouts trainers read; the only place records lose their schema.

What goes out (:func:`select_for_export`):

* only negatives a verifier **kept**; rejected ones (verifier drops, reflection drops of LLM
  drafts) never leave. A negative no verifier has seen (``verdict`` None: ``negforge mine``
  output, a FlagEmbedding file's own ``neg``) is an error unless ``allow_unverified``;
* a record left with no negative is skipped and counted (FlagEmbedding's loader divides by
  ``len(neg)``, Tevatron's calls ``random.choices`` on it: both crash on an empty list).

Scores (``scores``): ``"auto"`` takes the first verifier score that every exported negative has
together with the record's positive score: ``cross_encoder`` (+ ``cross_encoder_pos``), else
``embedding`` (+ ``embedding_pos``); a name picks that one (an error where a negative lacks it);
``None`` writes none. The positive score is the verifier's highest over the record's positives,
so a record with several positives repeats it for each. Where a format has a place for scores
they go there: FlagEmbedding ``pos_scores``/``neg_scores`` (its knowledge distillation),
sentence-transformers ``scores`` / ``score`` as ``util.mine_hard_negatives(output_scores=True)``
writes them (e.g. ``MarginMSELoss``), Tevatron's legacy passages ``score`` (its distillation
dataset), Parquet ``positive_score``/``negative_score``. Tevatron's id-based format has none.

The layouts are in :mod:`negforge.trainer.export_formats`; :data:`FORMATS` names them and
:data:`ALIASES` the other names users type (``flag``, ``bge``, ``st`` ...).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

from pydantic import Field

from negforge.synth.errors import ConfigError, InputError
from negforge.synth.reports import Report
from negforge.synth.schema import Negative, Record

log = logging.getLogger(__name__)

FORMATS = {
    "sentence-transformers": "datasets folder: anchor, positive, negative_1..n (n-tuple) [+ scores]",
    "sentence-transformers-triplet": "datasets folder: anchor, positive, negative, one row per negative [+ scores]",
    "sentence-transformers-labeled-pair": "datasets folder: anchor, positive (any document), label 1/0 (or score)",
    "sentence-transformers-labeled-list": "datasets folder: anchor, positive [docs], labels [1, 0, ...] (or scores)",
    "flagembedding": "JSONL: query, pos, neg, id [+ pos_scores, neg_scores]",
    "tevatron": "folder: train.jsonl (query_id, query_text, positive/negative_document_ids) + corpus.jsonl",
    "tevatron-legacy": "JSONL: query_id, query, positive_passages, negative_passages [+ score]",
    "parquet": "one row per record: id, query, positive, negative, negative_source, negative_doc_id",
}
ALIASES = {
    "st": "sentence-transformers",
    "sbert": "sentence-transformers",
    "n-tuple": "sentence-transformers",
    "st-ntuple": "sentence-transformers",
    "sentence-transformers-ntuple": "sentence-transformers",
    "st-triplet": "sentence-transformers-triplet",
    "triplet": "sentence-transformers-triplet",
    "triplets": "sentence-transformers-triplet",
    "sentence-transformers-triplets": "sentence-transformers-triplet",
    "st-labeled-pair": "sentence-transformers-labeled-pair",
    "labeled-pair": "sentence-transformers-labeled-pair",
    "st-labeled-list": "sentence-transformers-labeled-list",
    "labeled-list": "sentence-transformers-labeled-list",
    "flag": "flagembedding",
    "flag-embedding": "flagembedding",
    "bge": "flagembedding",
    "fe": "flagembedding",
    "tevatron-ids": "tevatron",
    "tevatron-passages": "tevatron-legacy",
    "tevatron-v1": "tevatron-legacy",
    "pq": "parquet",
}
SCORE_KEYS = ("cross_encoder", "embedding")  # verifier scores stored with a positive score (KEY_pos)


def resolve_format(name: str) -> str:
    """The canonical format name for ``name`` (case, ``_`` and aliases tolerated)."""
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    fmt = key if key in FORMATS else ALIASES.get(key)
    if fmt is None:
        raise ConfigError(
            f"unknown export format {name!r}; valid: {', '.join(FORMATS)} "
            f"(also: {', '.join(sorted(set(ALIASES) - set(FORMATS)))})"
        )
    return fmt


class ExportReport(Report):
    """What an export wrote and what it left out."""

    format: str
    path: str
    records_in: int
    records_written: int = 0
    skipped_no_negative: int = 0  # records left with no negative: left out
    negatives_written: int = 0
    rejected_dropped: int = 0  # negatives a verifier (or the reflection step) rejected
    unverified_written: int = 0  # only with allow_unverified
    score_key: Optional[str] = None  # which score went into the format's score fields
    rows: int = 0  # rows / lines in the main output
    files: list[str] = Field(default_factory=list)  # every file or folder written

    def table(self) -> str:
        return self.summary().replace("; ", "\n")

    def summary(self) -> str:
        parts = [
            f"wrote {self.records_written} of {self.records_in} records ({self.rows} rows, "
            f"{self.negatives_written} negatives) as {self.format} to {self.path}"
        ]
        if self.skipped_no_negative:
            parts.append(f"{self.skipped_no_negative} records with no kept negative left out")
        if self.rejected_dropped:
            parts.append(f"{self.rejected_dropped} rejected negatives left out")
        if self.unverified_written:
            parts.append(f"{self.unverified_written} unverified negatives written (--unverified)")
        parts.append(f"scores: {self.score_key}" if self.score_key else "no scores")
        return "; ".join(parts)


def select_for_export(records: list[Record], report: ExportReport, allow_unverified: bool = False) -> list[Record]:
    """Records with only their exportable negatives; records left with none are skipped (module doc)."""
    unverified = [(r.id, n) for r in records for n in r.negatives if n.verdict is None]
    if unverified and not allow_unverified:
        rid, n = unverified[0]
        n_rec = len({i for i, _ in unverified})
        raise InputError(
            f"{len(unverified)} negatives in {n_rec} records were never verified (e.g. record {rid!r}, "
            f"source {n.source.value}); run `negforge verify` first, or pass --unverified "
            "(allow_unverified=True) to export them as they are"
        )
    out = []
    for r in records:
        negs = [n for n in r.negatives if n.kept or (n.verdict is None and allow_unverified)]
        report.rejected_dropped += sum(n.verdict is not None and not n.kept for n in r.negatives)
        if not negs:
            report.skipped_no_negative += 1
            continue
        report.unverified_written += sum(n.verdict is None for n in negs)
        report.negatives_written += len(negs)
        out.append(r.model_copy(update={"negatives": negs}))
    report.records_written = len(out)
    if report.skipped_no_negative:
        log.warning(
            "export: %d of %d records have no kept negative and are left out", report.skipped_no_negative, len(records)
        )
    if not out:
        raise InputError(
            f"export: none of the {len(records)} records has a kept negative; mine or generate "
            "negatives, then verify (and mix) them first"
        )
    return out


def _has(n: Negative, key: str) -> bool:
    return key in n.scores and f"{key}_pos" in n.scores


def resolve_scores(records: list[Record], scores: Optional[str]) -> Optional[str]:
    """The score key to write (see the module doc), or None."""
    if scores is None or str(scores).lower() in {"none", "no", "false", ""}:
        return None
    if scores == "auto":
        return next((k for k in SCORE_KEYS if all(_has(n, k) for r in records for n in r.negatives)), None)
    for r in records:
        for n in r.negatives:
            if not _has(n, scores):
                raise InputError(
                    f"export --scores {scores}: record {r.id!r} has a {n.source.value} negative without "
                    f"scores[{scores!r}] and scores[{scores + '_pos'!r}] (it has: "
                    f"{', '.join(sorted(n.scores)) or 'none'}); run the {scores} verifier on every "
                    "negative, or pass --scores auto / none"
                )
    return scores


def score_lists(r: Record, key: Optional[str]) -> tuple[Optional[list[float]], Optional[list[float]]]:
    """(positive scores, negative scores) of one record under ``key`` (None, None without a key)."""
    if key is None:
        return None, None
    pos = float(r.negatives[0].scores[f"{key}_pos"])
    return [pos] * len(r.positives), [float(n.scores[key]) for n in r.negatives]


def export_records(
    records: list[Record],
    fmt: str,
    out_path: str | os.PathLike,
    num_negatives: Optional[int] = None,
    allow_unverified: bool = False,
    scores: Optional[str] = "auto",
) -> ExportReport:
    """Write ``records`` as ``fmt`` (a name in :data:`FORMATS` or :data:`ALIASES`) to ``out_path``.

    ``num_negatives`` sets the sentence-transformers n-tuple's negative columns (default: the most
    any record has; a record with fewer repeats its own in order). Returns the :class:`ExportReport`.
    """
    from . import export_formats

    fmt = resolve_format(fmt)
    if num_negatives is not None and num_negatives < 1:
        raise ConfigError(f"num_negatives must be >= 1, got {num_negatives}")
    if not records:
        raise InputError("export: no records to write")
    out = Path(out_path)
    report = ExportReport(format=fmt, path=str(out), records_in=len(records))
    kept = select_for_export(records, report, allow_unverified)
    report.score_key = resolve_scores(kept, scores)
    out.parent.mkdir(parents=True, exist_ok=True)
    export_formats.WRITERS[fmt](kept, out, report, num_negatives=num_negatives)
    log.debug("%s", report.summary())  # the caller shows the report (the CLI prints it)
    return report


def to_dataset(
    records: list[Record],
    fmt: str = "sentence-transformers",
    num_negatives: Optional[int] = None,
    allow_unverified: bool = False,
    scores: Optional[str] = "auto",
):
    """The export as an in-memory ``datasets.Dataset`` (same rules as :func:`export_records`), with
    its :class:`ExportReport`: ``(dataset, report)``. Formats: the sentence-transformers layouts,
    ``flagembedding`` and ``parquet`` (one row per record)."""
    from datasets import Dataset

    from . import export_formats

    fmt = resolve_format(fmt)
    if not records:
        raise InputError("no records to turn into a dataset")
    report = ExportReport(format=fmt, path="<memory>", records_in=len(records))
    kept = select_for_export(records, report, allow_unverified)
    report.score_key = resolve_scores(kept, scores)
    cols = export_formats.dataset_columns(kept, fmt, report.score_key, num_negatives)
    ds = Dataset.from_dict(cols)
    report.rows = len(ds)
    return ds, report
