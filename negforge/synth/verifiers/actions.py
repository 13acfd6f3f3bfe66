"""What a likely false negative becomes once the verifiers have flagged it (``VerifyConfig.fn_action``).

A *likely false negative* is a negative a verifier rejected with ``Check.false_negative`` (the
passage looks relevant: a qrels grade > 0, a positive-aware score rule, an LLM judge's yes);
off-topic drafts and copies of a positive are rejected but never relabelled or counted here.

* ``drop`` (default): it keeps its rejected verdict; the mixer and the trainer skip it.
* ``relabel``: it is removed from the negatives and appended to the record's positives as a
  :class:`~negforge.synth.schema.Passage` whose ``relabelled`` names the source, the verifier, its
  score and the positive's score, and keeps the negative's provenance (as RLHN, arXiv 2505.16967,
  turns LLM-flagged false negatives into positives). The multi-positive losses then train on it.
  A document flagged twice (e.g. mined by BM25 and by dense) becomes one positive.
* ``drop_query``: as ``drop``, and a record with more than ``drop_query_over`` likely false
  negatives is removed from the output: its labels are too incomplete to trust.
"""

from __future__ import annotations

import logging

from ..config import VerifyConfig
from ..schema import Negative, Passage, Record, Relabel, normalise_text
from .base import Check
from .report import VerifyReport

log = logging.getLogger(__name__)


def relabelled_positive(n: Negative, rule: str, check: Check) -> Passage:
    """The positive a flagged negative becomes: same text, title and doc id, plus where it came from."""
    return Passage(
        text=n.text,
        title=n.title,
        doc_id=n.doc_id,
        relabelled=Relabel(
            source=n.source,
            rule=rule,
            score=check.scores.get(rule),
            positive_score=check.scores.get(f"{rule}_pos"),
            reason=check.reason,
            provenance=n.provenance,
        ),
    )


def apply_fn_action(
    records: list[Record], flagged: dict[int, tuple[str, Check]], cfg: VerifyConfig, report: VerifyReport
) -> list[Record]:
    """Apply ``cfg.fn_action`` to the negatives in ``flagged`` (``id(negative) -> (rule, check)``); counts go
    into ``report`` (``totals[source]["relabelled"]``, ``dropped_queries``)."""
    report.fn_action = cfg.fn_action
    for r in records:
        for n in r.negatives:
            if id(n) in flagged:
                report.total(_src(n))["likely_fn"] += 1
    if cfg.fn_action == "relabel":
        for r in records:
            moved = [n for n in r.negatives if id(n) in flagged]
            if not moved:
                continue
            for n in moved:  # the same document flagged twice (mined by BM25 and dense) becomes one positive
                if (n.doc_id is None or n.doc_id not in r.positive_ids()) and normalise_text(
                    n.full_text
                ) not in r.positive_texts():
                    r.positives.append(relabelled_positive(n, *flagged[id(n)]))
                    report.total(_src(n))["relabelled"] += 1
            r.negatives = [n for n in r.negatives if id(n) not in flagged]
        log.info("relabel: %d likely false negatives moved into the positives", report.relabelled)
        return records
    if cfg.fn_action == "drop_query":
        out = []
        for r in records:
            k = sum(id(n) in flagged for n in r.negatives)
            if k > cfg.drop_query_over:
                report.dropped_queries.append(r.id)
            else:
                out.append(r)
        log.info(
            "drop_query: %d of %d queries have more than %d likely false negatives; removed",
            len(report.dropped_queries),
            len(records),
            cfg.drop_query_over,
        )
        return out
    return records


def _src(n: Negative) -> str:
    return n.source.value if hasattr(n.source, "value") else str(n.source)
