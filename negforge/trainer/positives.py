"""Which positives a training example carries, and what each row puts into a batch.

An example carries up to ``max_positives`` positives of its query (``None``: all), chosen by
``positive_rule`` (:func:`select_positives`):

* ``first``: the record's order;
* ``grade``: highest qrels grade first, ties in the record's order (positives without a grade count as 1);
  the same as ``first`` on ungraded data;
* ``sample``: a draw seeded by (seed, epoch, record id), so every epoch may see other positives of a
  query with many of them; the draw is the same whenever the run is repeated.

:class:`RowKeys` is what :class:`negforge.trainer.sampler.QueryAwareBatchSampler` needs per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from negforge.synth.schema import Passage, Record
from negforge.synth.seeding import text_rng

POSITIVE_RULES = ("first", "grade", "sample")


def select_positives(record: Record, cap: Optional[int], rule: str, seed: int = 0, epoch: int = 0) -> list[Passage]:
    """Up to ``cap`` positives of ``record`` by ``rule`` (see the module docstring)."""
    pos = list(record.positives)
    if rule == "grade":
        pos.sort(key=lambda p: -(p.grade if p.grade is not None else 1))  # stable: ties keep record order
    elif rule == "sample":
        if cap is not None and len(pos) > cap:
            rng = text_rng(seed, epoch, record.id)
            keep = sorted(rng.sample(range(len(pos)), cap))
            pos = [pos[i] for i in keep]
    elif rule != "first":
        raise ValueError(f"positive_rule must be one of {', '.join(POSITIVE_RULES)}; got {rule!r}")
    return pos if cap is None else pos[:cap]


def _keys(passages: Sequence[Passage]) -> set[str]:
    out = set()
    for p in passages:
        out.add("t:" + p.full_text)
        if p.doc_id is not None:
            out.add("d:" + p.doc_id)
    return out


@dataclass(frozen=True)
class RowKeys:
    """What one training row puts into a batch (``uses``) and what its query must not meet (``own``)."""

    uses: frozenset
    own: frozenset
    block: int = 0

    @staticmethod
    def own_of(record: Record) -> frozenset:
        """Every positive of the record's query (by text and doc id) and its id: built once per record."""
        return frozenset(_keys(record.positives) | {"q:" + record.id})

    @classmethod
    def of(
        cls,
        record: Record,
        positives: Sequence[Passage],
        negatives: Sequence[Passage],
        block: int = 0,
        own: Optional[frozenset] = None,
    ) -> RowKeys:
        uses = frozenset(_keys([*positives, *negatives]) | {"t:" + record.query, "q:" + record.id})
        return cls(uses, own if own is not None else cls.own_of(record), block)
