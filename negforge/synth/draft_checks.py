"""Cheap text checks on a generated draft, run before any model sees it. A template set's
``space.yaml`` (``draft_checks:``) gives the phrases and the copy threshold."""

from __future__ import annotations

from collections.abc import Iterable

from .schema import Record, normalise_text

COPY_NGRAM, COPY_SHARE = 8, 0.5  # a draft sharing >= half its word 8-grams with a positive copies it


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = normalise_text(text).split()
    return {tuple(words[i : i + n]) for i in range(max(0, len(words) - n + 1))}


def copies_positive(text: str, record: Record, share: float = COPY_SHARE) -> bool:
    """True when the draft is a positive, or shares at least ``share`` of its word 8-grams with one."""
    mine = _ngrams(text, COPY_NGRAM)
    for p in record.positives:
        if normalise_text(text) == normalise_text(p.text):
            return True
        if mine and len(mine & _ngrams(p.full_text, COPY_NGRAM)) >= share * len(mine):
            return True
    return False


def talks_about_the_task(text: str, phrases: Iterable[str]) -> bool:
    """True when the draft contains one of ``phrases`` (lower case): it talks about the task, e.g. SmolLM2-135M's
    "The passage is hard yet does not answer the query.", instead of being a document."""
    low = " ".join(text.lower().split())
    return any(p in low for p in phrases)
