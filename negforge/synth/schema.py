"""The one record schema that flows through generate -> verify -> mine -> mix -> train.

Every stage reads and writes :class:`Record` as JSONL. A record holds one query, its
positives and any number of negatives; each negative carries where it came from
(:class:`Provenance`), the scores the verifiers gave it and its :class:`Verdict`.
Flattening to trainer columns happens only at the export edge (``trainer.export``).
"""

from __future__ import annotations

import hashlib
from enum import Enum
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = 1


class Source(str, Enum):
    llm = "llm"
    bm25 = "bm25"
    dense = "dense"
    click = "click"
    random = "random"
    imported = "imported"  # negatives that came with the input file (FlagEmbedding "neg")


class Status(str, Enum):
    kept = "kept"
    rejected = "rejected"


def join_title_text(title: str, text: str) -> str:
    """Title and text as encoders and BM25 see them (BEIR convention): ``"title text"``, or the text alone."""
    return f"{title} {text}".strip() if title else text


def content_doc_id(text: str) -> str:
    """A doc id from a passage's content (``"h"`` + 16 hex digits of its sha1), for passages without one."""
    return "h" + hashlib.sha1(text.encode()).hexdigest()[:16]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Passage(_Model):
    """A document: a corpus passage (with ``doc_id``) or a generated one (``doc_id`` None)."""

    text: str
    title: str = ""
    doc_id: Optional[str] = None
    # The qrels grade (> 0) of a positive taken from judged data; None (left out of the JSON) otherwise.
    grade: Optional[int] = Field(None, exclude_if=lambda v: v is None)
    # Set on a positive that a verifier moved here from the negatives (verify.fn_action=relabel); not written when None.
    relabelled: Optional[Relabel] = Field(None, exclude_if=lambda v: v is None)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("passage text is empty")
        return v

    @property
    def full_text(self) -> str:
        """Title and text as encoders and BM25 see them (:func:`join_title_text`)."""
        return join_title_text(self.title, self.text)


class Provenance(_Model):
    """Where a negative came from: enough to reproduce or audit it."""

    model: Optional[str] = None  # LLM or encoder name; None for BM25/click
    template: Optional[str] = None  # prompt template name
    template_hash: Optional[str] = None  # content hash of the rendered template files
    attributes: dict[str, Any] = Field(default_factory=dict)  # sampled controls + query attribute flipped
    seed: Optional[int] = None
    rank: Optional[int] = None  # rank in the miner's result list (1-based)
    rounds: Optional[int] = None  # reflection rounds taken (LLM only)
    extra: dict[str, Any] = Field(default_factory=dict)


class Relabel(_Model):
    """Why a positive was a negative before: the verifier that flagged it as a false negative, and its scores."""

    source: Source  # where the negative came from (bm25, dense, llm, ...)
    rule: str  # the verifier that flagged it, e.g. "cross_encoder"
    score: Optional[float] = None  # that verifier's score for it (e.g. P(relevant)); None for the qrels rule
    positive_score: Optional[float] = None  # the record's positive score on the same scale
    reason: str
    provenance: Provenance = Field(default_factory=Provenance)  # the negative's provenance, kept


Passage.model_rebuild()


class Verdict(_Model):
    status: Status
    rule: str  # the verifier rule that decided, e.g. "qrels", "embedding_margin", "llm_judge"
    reason: str  # one human sentence: why kept or dropped


class Negative(Passage):
    source: Source
    provenance: Provenance = Field(default_factory=Provenance)
    scores: dict[str, float] = Field(default_factory=dict)  # e.g. {"bm25": 12.1, "embedding": 0.61}
    verdict: Optional[Verdict] = None  # None until verified

    @property
    def kept(self) -> bool:
        """True when verified and kept. Unverified negatives count as not kept."""
        return self.verdict is not None and self.verdict.status == Status.kept


class Record(_Model):
    schema_version: int = SCHEMA_VERSION
    id: str
    query: str
    positives: list[Passage]
    negatives: list[Negative] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("schema_version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v > SCHEMA_VERSION:
            raise ValueError(f"schema_version {v} is newer than this negforge ({SCHEMA_VERSION}); upgrade negforge")
        return v

    @field_validator("query")
    @classmethod
    def _query(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("query is empty")
        return v

    @field_validator("positives")
    @classmethod
    def _has_positive(cls, v: list[Passage]) -> list[Passage]:
        if not v:
            raise ValueError("record has no positive passage")
        return v

    def negatives_from(self, source: Source | str) -> list[Negative]:
        s = Source(source)
        return [n for n in self.negatives if n.source == s]

    def positive_ids(self) -> set[str]:
        return {p.doc_id for p in self.positives if p.doc_id is not None}

    def positive_texts(self) -> set[str]:
        """The positives' normalised texts, with and without title: what a copy of a positive matches."""
        return {normalise_text(p.full_text) for p in self.positives} | {normalise_text(p.text) for p in self.positives}

    def key(self) -> str:
        """Stable content key of the record's inputs (query + positives), for caches and resume."""
        h = hashlib.sha256(self.query.encode())
        for p in self.positives:
            h.update(b"\x00" + p.full_text.encode())
        return h.hexdigest()[:16]


class _Fold(dict):
    """str.translate table: an alphanumeric character -> its lower case, anything else -> a space
    (filled on first sight of each character)."""

    def __missing__(self, code: int) -> str:
        c = chr(code)
        self[code] = out = c.lower() if c.isalnum() else " "
        return out


_FOLD = _Fold()
_ASCII_FOLD = bytes(ord(chr(i).lower()) if chr(i).isalnum() else 32 for i in range(128)) + bytes(128)


def normalise_text(text: str) -> str:
    """Lower-case, collapse whitespace, drop punctuation: the key for exact-duplicate checks.

    Per character: ``c.lower() if c.isalnum() else " "``, then whitespace runs become one space
    (ASCII text through a byte table, the rest through a cached character table: same result)."""
    if text.isascii():
        return " ".join(text.encode().translate(_ASCII_FOLD).decode().split())
    return " ".join(text.translate(_FOLD).split())


_NOT_ALNUM = bytes(i for i in range(128) if not chr(i).isalnum())
_TO_ASCII = ("\u0130", "\u212a")  # the only non-ASCII alphanumerics whose lower case holds an ASCII one (İ, K)


def ascii_alnum_count(text: str) -> int:
    """ASCII letters and digits in ``normalise_text(text)``, counted without normalising (a few µs):
    texts with different counts cannot normalise to the same string (a cheap exact pre-check)."""
    return len(text.encode("ascii", "ignore").translate(None, _NOT_ALNUM)) + sum(text.count(c) for c in _TO_ASCII)
