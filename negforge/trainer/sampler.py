"""Batches in which no query meets one of its own positives as an in-batch negative.

With in-batch negatives, every text of the batch is a negative for every other query of the batch. On
data where documents are relevant to several queries (NFCorpus: a median of 16 per test query) a plain
shuffle, or sentence-transformers' no-duplicates sampler (it only stops the same *text* appearing
twice), puts query A beside query B whose positive or hard negative is also a positive of A: a false
in-batch negative. :class:`QueryAwareBatchSampler` fills each batch greedily from a seeded shuffle
(seed + epoch) and defers a row when

* one of its texts (query, positives, negatives; by text and by doc id) is already in the batch
  (duplicates, as the no-duplicates sampler), or is a positive of a query already in the batch, or
* a text already in the batch is a positive of its own query (any of them, not only the ones it carries).

Deferred rows start the next batch, so every row is used once per epoch. With ``positive_rule =
"sample"`` and several epochs the dataset holds one block of rows per epoch and epoch e reads block e
(:class:`negforge.trainer.positives.RowKeys.block`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Optional

from sentence_transformers.base.sampler import DefaultBatchSampler

from negforge.synth.seeding import text_rng

from .positives import RowKeys


def _hardness(rows: Sequence[RowKeys]) -> list[int]:
    """log2 of how many (row, key) clashes each row can have: its texts in others' positives and back."""
    in_own: Counter = Counter()
    in_uses: Counter = Counter()
    seen_own: set[int] = set()
    for r in rows:
        in_uses.update(r.uses)
        if id(r.own) not in seen_own:  # rows of one record share their positive set
            seen_own.add(id(r.own))
            in_own.update(r.own)
    return [int(math.log2(1 + sum(in_own[k] for k in r.uses) + sum(in_uses[k] for k in r.own))) for r in rows]


class QueryAwareBatchSampler(DefaultBatchSampler):
    """Batches without duplicates and without false in-batch negatives (see the module docstring).

    Built by the trainer as ``QueryAwareBatchSampler(dataset, batch_size=..., drop_last=..., seed=...,
    rows=[RowKeys per dataset row])``.
    """

    def __init__(
        self,
        dataset,
        batch_size: int,
        drop_last: bool,
        valid_label_columns=None,
        generator=None,
        seed: int = 0,
        rows: Optional[Sequence[RowKeys]] = None,
    ) -> None:
        super().__init__(
            dataset,
            batch_size=batch_size,
            drop_last=drop_last,
            valid_label_columns=valid_label_columns,
            generator=generator,
            seed=seed,
        )
        if rows is None or len(rows) != len(dataset):
            raise ValueError(
                f"QueryAwareBatchSampler needs one RowKeys per dataset row ({len(dataset)}), "
                f"got {None if rows is None else len(rows)}"
            )
        self.rows = list(rows)
        self.blocks = max(r.block for r in self.rows) + 1 if self.rows else 1
        self.deferred = 0  # rows moved to a later batch in the last epoch (a measure of how crowded the data is)
        self.hardness = _hardness(self.rows)

    def _block_rows(self) -> list[int]:
        b = self.epoch % self.blocks
        return [i for i, r in enumerate(self.rows) if r.block == b]

    def __len__(self) -> int:
        n = len(self._block_rows())
        return n // self.batch_size if self.drop_last else (n + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        rows = self._block_rows()
        order = text_rng(self.seed, self.epoch).sample(rows, len(rows))
        # Rows that clash with many others go first (shuffled within each power-of-two class), so that a
        # group of queries sharing their positives is spread over the batches instead of left to the end.
        order.sort(key=lambda i: -self.hardness[i])
        self.deferred = 0
        while order:
            batch: list[int] = []
            used: set = set()
            forbidden: set = set()
            later: list[int] = []
            for k, i in enumerate(order):
                if len(batch) == self.batch_size:
                    later.extend(order[k:])
                    break
                r = self.rows[i]
                if not r.uses.isdisjoint(used) or not r.uses.isdisjoint(forbidden) or not r.own.isdisjoint(used):
                    later.append(i)
                    self.deferred += 1
                    continue
                batch.append(i)
                used |= r.uses
                forbidden |= r.own
            if len(batch) == self.batch_size or (batch and not self.drop_last):
                yield batch
            order = later
