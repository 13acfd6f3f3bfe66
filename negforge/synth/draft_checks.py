"""Cheap text checks on a generated draft, run before any model sees it."""
from __future__ import annotations

from .schema import Record, normalise_text

COPY_NGRAM, COPY_SHARE = 8, 0.5  # a draft sharing >= half its word 8-grams with a positive copies it


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = normalise_text(text).split()
    return {tuple(words[i:i + n]) for i in range(max(0, len(words) - n + 1))}


def copies_positive(text: str, record: Record) -> bool:
    """True when the draft is a positive, or shares at least half of its word 8-grams with one."""
    mine = _ngrams(text, COPY_NGRAM)
    for p in record.positives:
        if normalise_text(text) == normalise_text(p.text):
            return True
        if mine and len(mine & _ngrams(p.full_text, COPY_NGRAM)) >= COPY_SHARE * len(mine):
            return True
    return False


# A passage that talks about the task instead of a study: SmolLM2-135M wrote "The passage is hard yet does
# not answer the query." for most drafts of 6 SciFact queries; no abstract says these things.
META_PHRASES = ("<the passage>", "the query", "hard negative", "json", "this passage", "the passage is",
                "the relevant passage")


def talks_about_the_task(text: str) -> bool:
    low = " ".join(text.lower().split())
    return any(p in low for p in META_PHRASES)
