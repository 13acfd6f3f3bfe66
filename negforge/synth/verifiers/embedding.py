"""The embedding verifier: a positive-aware margin with the training encoder.

``scores["embedding"]`` is cos(query, negative) and ``scores["embedding_pos"]`` is the record's
positive score: the **highest** cos(query, positive) over the record's positives (the easiest
positive sets the bar, so a negative is never compared against a weaker reference than the one
the training loss will see). The negative is dropped when ``score > pos × perc_pos`` or
``pos - score < abs_margin`` (see :func:`negforge.synth.verifiers.base.positive_aware`), and, for the
sources in ``min_perc_pos_sources`` (LLM-written ones by default), when ``score < pos × min_perc_pos``:
a passage that far from the query is off-topic and too easy to teach the model anything.

Passages whose ``doc_id`` is in the corpus (with the same text) take their vector from the cached
corpus matrix (:func:`negforge.mixers.embeddings.corpus_embeddings`, shared with mining and evaluation);
queries, generated passages and passages from outside the corpus go through
:func:`negforge.mixers.embeddings.encode_texts`.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import numpy as np

from ..data import Corpus
from ..schema import Passage
from .base import Check, Pair, VerifyContext, positive_aware

log = logging.getLogger(__name__)


class PassageVectors:
    """Vectors for queries and passages, each text encoded at most once per call."""

    def __init__(
        self,
        encoder: str,
        corpus: Optional[Corpus],
        cache_dir: str,
        batch_size: int,
        show_progress: bool = False,
        backend: str = "torch",
        precision: str = "fp32",
        max_seq_length: int = 256,
        processes: int = 1,
    ):
        self.encoder, self.corpus, self.cache_dir, self.processes = encoder, corpus, cache_dir, processes
        self.runtime: dict[str, Any] = {"backend": backend, "precision": precision}
        self.batch_size, self.show_progress = batch_size, show_progress
        self.max_seq_length = max_seq_length  # in the corpus cache key: the same as mine's to share its cache
        self._corpus_matrix: Optional[np.ndarray] = None

    def _corpus_row(self, p: Passage) -> Optional[int]:
        c = self.corpus
        if c is None or p.doc_id is None or p.doc_id not in c:
            return None
        i = c.index(p.doc_id)
        return i if c.texts[i] == p.text else None

    def _matrix(self) -> np.ndarray:
        if self._corpus_matrix is None:
            from negforge.mixers.embeddings import corpus_embeddings

            if self.corpus is None:
                raise ValueError("passage vectors from the corpus cache need a corpus")
            self._corpus_matrix = corpus_embeddings(
                self.corpus,
                self.encoder,
                self.cache_dir,
                self.batch_size,
                self.max_seq_length,
                show_progress=self.show_progress,
                processes=self.processes,
                **self.runtime,
            )
        return self._corpus_matrix

    def encode(self, queries: list[str], passages: list[Passage]) -> tuple[np.ndarray, np.ndarray]:
        """(query vectors, passage vectors), rows in input order, L2-normalised."""
        from negforge.mixers.embeddings import encode_texts

        rows = [self._corpus_row(p) for p in passages]
        texts = list(dict.fromkeys(queries + [p.full_text for p, r in zip(passages, rows) if r is None]))
        log.info(
            "embedding verifier: encoding %d texts; %d passages from the corpus cache",
            len(texts),
            sum(r is not None for r in rows),
        )
        vecs = encode_texts(
            texts,
            self.encoder,
            self.batch_size,
            self.max_seq_length,
            show_progress=self.show_progress,
            cache_dir=self.cache_dir,
            **self.runtime,
        )
        at = {t: i for i, t in enumerate(texts)}
        q = vecs[[at[t] for t in queries]] if queries else vecs[:0]
        p = np.zeros((len(passages), vecs.shape[1]), dtype=np.float32)
        free = [i for i, r in enumerate(rows) if r is None]
        if free:
            p[free] = vecs[[at[passages[i].full_text] for i in free]]
        cached = [i for i, r in enumerate(rows) if r is not None]
        if cached:
            p[cached] = np.asarray(self._matrix()[[r for r in rows if r is not None]])
        return q, p


class EmbeddingVerifier:
    name = "embedding"

    def __init__(self, ctx: VerifyContext):
        self.cfg = ctx.cfg
        enc = ctx.cfg.encoder
        self.vectors = PassageVectors(
            enc.model,
            ctx.corpus,
            enc.cache_dir,
            enc.batch_size,
            ctx.show_progress,
            enc.backend,
            enc.precision,
            enc.max_seq_length,
            enc.processes,
        )

    def check(self, pairs: list[Pair]) -> list[Check]:
        if not pairs:
            return []
        records = list({r.id: r for r, _ in pairs}.values())
        positives = [(r.id, p) for r in records for p in r.positives]
        q, pv = self.vectors.encode([r.query for r in records], [p for _, p in positives] + [n for _, n in pairs])
        qi = {r.id: i for i, r in enumerate(records)}
        pos_vecs, neg_vecs = pv[: len(positives)], pv[len(positives) :]
        pos_score: dict[str, float] = {}
        for (rid, _), v in zip(positives, pos_vecs):
            s = float(np.dot(q[qi[rid]], v))
            pos_score[rid] = max(pos_score.get(rid, -np.inf), s)
        out = []
        for (record, neg), v in zip(pairs, neg_vecs):
            score = float(np.dot(q[qi[record.id]], v))
            check = positive_aware(
                self.name, score, pos_score[record.id], self.cfg.perc_pos, self.cfg.abs_margin, what="cosine"
            )
            out.append(self._off_topic(check, neg.source, score, pos_score[record.id]))
        return out

    def _off_topic(self, check: Check, source: str, score: float, pos: float) -> Check:
        floor = self.cfg.min_perc_pos
        if not check.passed or floor is None or source not in self.cfg.min_perc_pos_sources or pos <= 0:
            return check
        limit = pos * floor
        if score < limit:
            return Check(
                False,
                f"off-topic: cosine {score:.4f} < {floor:g} × positive {pos:.4f} = {limit:.4f}",
                check.scores,
                note="off-topic",
                false_negative=False,
            )
        return Check(True, f"{check.reason}, ≥ {floor:g} × positive (on topic)", check.scores)
