"""A FIFO memory bank of passage embeddings, each with the key of the passage it embeds.

The key of a passage is a 64-bit hash of its token ids as the model sees them (padding left out), so
the loss can tell, from the tokenized batch alone, whether a queued embedding is the same passage as a
positive of a query in the batch (:func:`feature_keys`). The same function keys texts tokenized by the
model outside the trainer (:func:`text_keys`), which is how the trainer hands the loss every known
positive of every query.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch import Tensor


def _hash(ids: Tensor) -> int:
    digest = hashlib.blake2b(ids.to(torch.int64).cpu().numpy().tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def feature_keys(features: dict[str, Any]) -> Tensor:
    """(rows,) int64: one key per row of a tokenized column (``input_ids`` where ``attention_mask`` is 1)."""
    ids = features["input_ids"]
    mask = features.get("attention_mask")
    rows = [ids[i][mask[i].bool()] if mask is not None else ids[i] for i in range(ids.size(0))]
    return torch.tensor([_hash(r) for r in rows], dtype=torch.int64)


def text_keys(model: Any, texts: Sequence[str], batch_size: int = 256) -> list[int]:
    """The keys of ``texts`` as ``model`` tokenizes them for training (its ``preprocess``)."""
    out: list[int] = []
    for start in range(0, len(texts), batch_size):
        out.extend(feature_keys(model.preprocess(list(texts[start : start + batch_size]))).tolist())
    return out


class MemoryBank:
    """The last ``capacity`` embeddings pushed (a ring buffer; the oldest is overwritten first).

    Entries are detached float32 copies: nothing that enters the bank carries a gradient.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self._emb: Optional[Tensor] = None
        self._keys: Optional[Tensor] = None
        self._next = 0  # slot the next entry goes to
        self.pushed = 0  # entries ever pushed

    def __len__(self) -> int:
        return min(self.pushed, self.capacity)

    def push(self, embeddings: Tensor, keys: Tensor) -> None:
        """Append ``embeddings`` (n, d) with their ``keys`` (n,); past capacity the oldest entries go."""
        if embeddings.size(0) != keys.size(0):
            raise ValueError(f"{embeddings.size(0)} embeddings but {keys.size(0)} keys")
        if not self.capacity or not embeddings.size(0):
            return
        emb = embeddings.detach().float()[-self.capacity :]
        keys = keys.to(device=emb.device, dtype=torch.int64)[-self.capacity :]
        if self._emb is None or self._keys is None:
            self._emb = emb.new_zeros(self.capacity, emb.size(1))
            self._keys = keys.new_zeros(self.capacity)
        slots = (self._next + torch.arange(emb.size(0), device=emb.device)) % self.capacity
        self._emb[slots] = emb.to(self._emb.device)
        self._keys[slots] = keys.to(self._keys.device)
        self._next = (self._next + emb.size(0)) % self.capacity
        self.pushed += embeddings.size(0)

    def _order(self) -> Tensor:
        n = len(self)
        start = (self._next - n) % self.capacity if self.capacity else 0
        return (start + torch.arange(n)) % max(self.capacity, 1)

    @property
    def embeddings(self) -> Tensor:
        """(len, d) the entries, oldest first."""
        if self._emb is None:
            return torch.zeros(0, 0)
        return self._emb[self._order().to(self._emb.device)]

    @property
    def keys(self) -> Tensor:
        """(len,) the entries' keys, oldest first."""
        if self._keys is None:
            return torch.zeros(0, dtype=torch.int64)
        return self._keys[self._order().to(self._keys.device)]

    def entries(self) -> tuple[Tensor, Tensor]:
        """(embeddings, keys) of every entry, in storage order (views: no copy); what the loss scores."""
        if self._emb is None or self._keys is None:
            return torch.zeros(0, 0), torch.zeros(0, dtype=torch.int64)
        n = len(self)
        return self._emb[:n], self._keys[:n]

    def clear(self) -> None:
        self._emb = self._keys = None
        self._next = self.pushed = 0
