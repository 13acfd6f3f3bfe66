"""Cross-encoder rescoring of mined candidates (``MineConfig.cross_encoder``).

As sentence-transformers' ``mine_hard_negatives(cross_encoder=...)``: every candidate a miner
returned (its top ``range_max`` + positives) is scored by the cross-encoder, the record's positives
too, and the candidates are re-ordered by that score. The miner's score rules then work on it:
``max_score`` drops a candidate with P(relevant) above it, ``relative_margin`` one above
``pos - |pos| * margin`` where ``pos`` is the **lowest** positive P(relevant) (the harder positive,
as sentence-transformers does). They apply to every source (BM25 and click too), since all now
share one scale.

Scores are sigmoid probabilities (:func:`negforge.synth.verifiers.cross_encoder.predict_probs`).
The mined negative keeps the miner's own score under its source name and gets
``scores["cross_encoder"]`` and ``scores["cross_encoder_pos"]``; ``provenance.extra`` holds its
``miner_rank`` (1-based, in the miner's list) beside the rescored ``rank``.
"""

from __future__ import annotations

import logging

from negforge.synth.data import Corpus
from negforge.synth.schema import Record

log = logging.getLogger(__name__)

SCORE = "cross_encoder"


def rescore(
    records: list[Record],
    rankings: list,
    corpus: Corpus,
    positive_rows: list[set[int]],
    model_path: str,
    source: str,
    batch_size: int = 64,
    show_progress: bool = False,
) -> list:
    """New rankings: each candidate row scored by the cross-encoder at ``model_path``, best first.

    ``positive_rows[i]`` are record i's labelled-positive corpus rows: they are not scored (the mining
    rules remove them anyway) and stay at the top of the list so the rules still count them.
    """
    from negforge.synth.verifiers.cross_encoder import load_cross_encoder, predict_probs

    from .mine import Ranking

    model = load_cross_encoder(model_path)
    full = corpus.full_texts()
    todo: list[tuple[str, str]] = []
    for r, ranking, pos_rows in zip(records, rankings, positive_rows):
        todo += [(r.query, p.full_text) for p in r.positives]
        todo += [(r.query, full[int(row)]) for row in ranking.rows if int(row) >= 0 and int(row) not in pos_rows]
    unique = list(dict.fromkeys(todo))
    log.info("cross-encoder rescoring: %d (query, passage) pairs for %d records", len(unique), len(records))
    prob = dict(zip(unique, predict_probs(model, unique, batch_size, show_progress)))
    out = []
    for r, ranking, pos_rows in zip(records, rankings, positive_rows):
        pos = min(prob[(r.query, p.full_text)] for p in r.positives)
        top, scored = [], []
        for rank, (row, score) in enumerate(zip(ranking.rows, ranking.scores), start=1):
            row = int(row)
            if row < 0:
                continue
            info = {"miner_rank": rank, **(ranking.info[rank - 1] if ranking.info else {})}
            if row in pos_rows:
                top.append((row, float("inf"), float(score), info))
            else:
                scored.append((row, prob[(r.query, full[row])], float(score), info))
        scored.sort(key=lambda x: -x[1])  # stable: ties keep the miner's order
        rows = top + scored
        out.append(
            Ranking(
                rows=[x[0] for x in rows],
                scores=[x[1] for x in rows],
                positive_score=pos,
                info=[x[3] for x in rows],
                score_name=SCORE,
                extra_scores=[{source: round(x[2], 6), f"{SCORE}_pos": round(pos, 6)} for x in rows],
            )
        )
    return out
