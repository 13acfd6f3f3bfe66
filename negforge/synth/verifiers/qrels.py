"""The qrels verifier: certain false negatives, removed whatever any other rule says.

A negative is dropped when

* the qrels mark its ``doc_id`` relevant (score > 0) for the record's query (``record.id`` is the
  query id, as in :func:`negforge.synth.data.records_from_beir`), or
* its ``doc_id`` is one of the record's own positives, or
* its normalised text (:func:`negforge.synth.schema.normalise_text`) equals a positive's: an LLM that
  copied the positive, or the same document under another id.

``scores["qrels"]`` is the qrels grade of the negative's doc for this query (0 when unjudged).
"""

from __future__ import annotations

import logging

from ..schema import normalise_text
from .base import Check, Pair, VerifyContext

log = logging.getLogger(__name__)


class QrelsVerifier:
    name = "qrels"

    def __init__(self, ctx: VerifyContext):
        self.qrels = ctx.qrels
        if self.qrels is None:
            log.warning(
                "qrels verifier: no qrels given; only positives' doc ids and exact text duplicates "
                "are checked (pass --data BEIR_DIR to also use the relevance labels)"
            )

    def check(self, pairs: list[Pair]) -> list[Check]:
        pos_text: dict[str, set[str]] = {}
        out = []
        for record, neg in pairs:
            if record.id not in pos_text:
                pos_text[record.id] = record.positive_texts()
            grade = 0
            if self.qrels is not None and neg.doc_id is not None:
                grade = self.qrels.get(record.id, {}).get(neg.doc_id, 0)
            scores = {self.name: float(grade)}
            if grade > 0:
                out.append(
                    Check(
                        False,
                        f"qrels mark doc {neg.doc_id} relevant (grade {grade}) for query {record.id}",
                        scores,
                        false_negative=neg.doc_id not in record.positive_ids(),
                    )
                )
            elif neg.doc_id is not None and neg.doc_id in record.positive_ids():
                out.append(
                    Check(False, f"doc {neg.doc_id} is one of this record's positives", scores, false_negative=False)
                )
            elif {normalise_text(neg.full_text), normalise_text(neg.text)} & pos_text[record.id]:
                out.append(Check(False, "text equals a positive's (after normalisation)", scores, false_negative=False))
            else:
                out.append(Check(True, "not relevant in the qrels, not a copy of a positive", scores))
        return out
