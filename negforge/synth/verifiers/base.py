"""The verifier contract and the positive-aware margin rule the model-based verifiers share.

A verifier sees a batch of (record, negative) pairs that no earlier verifier has rejected and
returns one :class:`Check` per pair, same order. :func:`negforge.synth.verifiers.verify_records` writes the
check's scores into ``negative.scores``, turns a failed check into a rejected verdict and counts
everything; verifiers themselves never touch verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Protocol, runtime_checkable

from ..config import VerifyConfig
from ..data import Corpus, Qrels
from ..schema import Negative, Record

Pair = tuple[Record, Negative]


@dataclass
class Check:
    """One verifier's outcome for one negative."""

    passed: bool
    reason: str  # a human sentence with the numbers, e.g. "cosine 0.83 > 0.95 × positive 0.85"
    scores: dict[str, float] = field(default_factory=dict)  # merged into negative.scores
    note: Optional[str] = None  # a counted special outcome, e.g. "judge reply unparseable"
    # A rejection that says "this is probably relevant" (verify.fn_action relabels or counts it); False for
    # rejections of another kind: off-topic, or a copy of a positive.
    false_negative: bool = True


@dataclass
class VerifyContext:
    """What every verifier is built from."""

    cfg: VerifyConfig
    qrels: Optional[Qrels] = None
    corpus: Optional[Corpus] = None
    show_progress: bool = True


@runtime_checkable
class Verifier(Protocol):
    name: str  # registry name; also the key of its score in negative.scores and the verdict rule

    def check(self, pairs: list[Pair]) -> list[Check]:
        """One Check per pair, same length, same order."""
        ...


def positive_aware(
    name: str, score: float, pos_score: float, perc_pos: float, abs_margin: float, what: str = "score"
) -> Check:
    """NV-Retriever TopK-PercPos plus an absolute margin, on any "higher = more relevant" score.

    Rejected when ``score > pos_score * perc_pos`` (the ratio rule) or when
    ``pos_score - score < abs_margin`` (the margin rule). Both comparisons are strict, so a score
    exactly at the threshold is kept. The ratio rule needs a positive reference: when
    ``pos_score <= 0`` it falls back to ``score > pos_score`` (a negative that outscores the
    positive is always dropped).
    """
    scores = {name: score, f"{name}_pos": pos_score}
    if pos_score > 0:
        limit = pos_score * perc_pos
        ratio = f"{what} {score:.4f} {{}} {perc_pos:g} × positive {pos_score:.4f} = {limit:.4f}"
    else:
        limit = pos_score
        ratio = f"{what} {score:.4f} {{}} positive {pos_score:.4f} (ratio rule needs a positive score > 0)"
    if score > limit:
        return Check(False, ratio.format(">"), scores)
    gap = pos_score - score
    if gap < abs_margin:
        return Check(
            False,
            f"{what} {score:.4f} is only {gap:.4f} below positive {pos_score:.4f} (margin {abs_margin:g} required)",
            scores,
        )
    return Check(True, ratio.format("≤") + (f", gap {gap:.4f} ≥ {abs_margin:g}" if abs_margin else ""), scores)
