"""MNRL with a memory bank: passage embeddings of earlier steps as extra negatives (cross-batch memory).

For a batch of B queries with positives p_i and hard negatives (columns ``negative_1..n``), and a bank
M of the last ``queue_size`` passage embeddings pushed (positives and hard negatives of earlier steps),
with s(q, d) = cos(q, d) × scale::

    L_i = −s(q_i, p_i) + log( Σ_{d ∈ batch docs} e^{s(q_i, d)} + Σ_{m ∈ M \\ F_i} e^{s(q_i, m)} )

where the batch docs are every positive and hard negative of the batch (sentence-transformers'
MultipleNegativesRankingLoss) and F_i are the bank entries that are the same passage as a positive of
query i: the row's own positive, and every positive of the query the trainer knows of
(:meth:`MNRLMemoryBankLoss.remember_positives`). Identity is the hash of the passage's token ids
(:mod:`negforge.trainer.losses.memory_bank`). With an empty bank (``queue_size`` 0, or the first step)
the loss is MNRL exactly.

After the loss of a training step is computed, the step's passages enter the bank (FIFO), detached:

* ``momentum`` 0 (XBM, Wang et al. 2020; RocketQA's cross-batch negatives over time): the embeddings the
  trained model just computed;
* ``momentum`` m > 0 (MoCo, He et al. 2020): the embeddings of a momentum copy of the encoder, updated
  before each step as θ_k ← m·θ_k + (1 − m)·θ (one extra forward pass over the passages, no gradient).

Not supported: GradCache (``cached_mnrl``), the multi-positive column layout, and sharing the bank across
processes (each process keeps its own). The bank and the momentum copy are not checkpointed: a resumed
run starts with an empty bank and a momentum copy of the resumed weights.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Optional

import torch
from torch import Tensor, nn

from .base import NEG
from .memory_bank import MemoryBank, feature_keys, text_keys

log = logging.getLogger(__name__)


class MNRLMemoryBankLoss(nn.Module):
    """InfoNCE over in-batch, hard and memory-bank negatives (see the module docstring).

    Args:
        model: the SentenceTransformer being trained (None for computing on given embeddings).
        scale: 1 / temperature.
        queue_size: passage embeddings kept in the bank (0: plain MNRL).
        momentum: 0: the bank holds the trained model's own detached embeddings; in (0, 1): a momentum
            copy of the encoder embeds the passages that enter the bank.
        similarity_fct: similarity of query and passage embeddings (default: cosine).
    """

    multi_positive = False

    def __init__(
        self,
        model: Optional[nn.Module],
        scale: float = 20.0,
        queue_size: int = 256,
        momentum: float = 0.0,
        similarity_fct: Optional[Callable[[Tensor, Tensor], Tensor]] = None,
    ) -> None:
        super().__init__()
        if not scale > 0:
            raise ValueError(f"scale must be > 0 (it is 1/temperature), got {scale}")
        if queue_size < 0:
            raise ValueError(f"queue_size must be >= 0, got {queue_size}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1) (0: no momentum encoder), got {momentum}")
        if similarity_fct is None:
            from sentence_transformers.util import cos_sim

            similarity_fct = cos_sim
        self.model = model
        self.scale, self.queue_size, self.momentum = scale, queue_size, momentum
        self.similarity_fct = similarity_fct
        self.bank = MemoryBank(queue_size)
        self.known_positives: dict[int, Tensor] = {}  # query key -> keys of all its positives
        self._momentum: list[nn.Module] = []  # kept out of the module tree: not trained, not saved
        self.steps = 0  # training forwards
        self.excluded = 0  # bank entries left out as a positive of the row's query, summed over rows and steps
        self.scored = 0  # bank entries scored as negatives, summed over rows and steps
        self.steps_rows = 0  # query rows scored against a non-empty bank

    # ---- the trainer's side -------------------------------------------------------------------
    def remember_positives(self, queries: Sequence[str], positives: Sequence[Sequence[str]]) -> None:
        """Every positive of every query (texts): bank entries that are one of them are never its negatives."""
        if self.model is None:
            raise ValueError("remember_positives needs the model (it tokenizes the texts)")
        flat = [t for ps in positives for t in ps]
        qk, pk = text_keys(self.model, list(queries)), text_keys(self.model, flat)
        at = 0
        for q, ps in zip(qk, positives):
            keys = set(pk[at : at + len(ps)])
            at += len(ps)
            old = self.known_positives.get(q)
            if old is not None:
                keys |= set(old.tolist())
            self.known_positives[q] = torch.tensor(sorted(keys), dtype=torch.int64)

    def stats(self) -> dict[str, Any]:
        """What the bank did: its size, how full it got, how many entries were excluded as false negatives."""
        return {
            "queue_size": self.queue_size,
            "momentum": self.momentum,
            "filled": len(self.bank),
            "pushed": self.bank.pushed,
            "steps": self.steps,
            "excluded_false_negatives": self.excluded,
            "mean_bank_negatives_per_query": round(self.scored / max(1, self.steps_rows), 2),
        }

    # ---- the loss -----------------------------------------------------------------------------
    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Optional[Tensor] = None) -> Tensor:
        from sentence_transformers.base.losses.merged_forward import embed_columns

        if self.model is None:
            raise ValueError("forward needs the model (compute_loss_from_embeddings works without one)")
        features = list(sentence_features)
        if len(features) < 2:
            raise ValueError(f"mnrl_xbm needs (anchor, positive[, negatives]) columns, got {len(features)}")
        embeddings = embed_columns(self.model, features)
        qkeys, dkeys = feature_keys(features[0]), [feature_keys(f) for f in features[1:]]
        loss = self.compute_loss_from_embeddings(embeddings, labels, qkeys, dkeys[0])
        if self.model.training and self.queue_size:
            self.steps += 1
            self.bank.push(torch.cat(self._entering(features[1:], embeddings[1:])), torch.cat(dkeys))
        return loss

    def compute_loss_from_embeddings(
        self,
        embeddings: list[Tensor],
        labels: Optional[Tensor] = None,
        query_keys: Optional[Tensor] = None,
        positive_keys: Optional[Tensor] = None,
    ) -> Tensor:
        """The loss of one batch against the bank as it is now (the bank is not changed here).

        ``embeddings``: [queries (B, d), positives (B, d), hard negatives (B, d) each]; ``query_keys`` /
        ``positive_keys``: (B,) keys for the false-negative exclusion (None: no exclusion)."""
        queries, docs = embeddings[0], torch.cat(list(embeddings[1:]), dim=0)
        batch = queries.size(0)
        rows = torch.arange(batch, device=queries.device)
        scores = self.similarity_fct(queries, docs).float() * self.scale
        bank, bank_keys = self.bank.entries()
        if len(bank):
            bank_scores = self.similarity_fct(queries, bank.to(queries.device)).float() * self.scale
            drop = self._false_negatives(bank_keys, query_keys, positive_keys, batch).to(queries.device)
            if self.model is None or self.model.training:
                self.excluded += int(drop.sum())
                self.scored += int((~drop).sum())
                self.steps_rows += batch
            scores = torch.cat([scores, bank_scores.masked_fill(drop, NEG)], dim=1)
        return (scores.logsumexp(dim=1) - scores[rows, rows]).mean()

    def _false_negatives(
        self, bank_keys: Tensor, query_keys: Optional[Tensor], positive_keys: Optional[Tensor], batch: int
    ) -> Tensor:
        """(B, len(bank)) True where the entry is a positive of the row's query."""
        bank_keys = bank_keys.cpu()
        drop = torch.zeros(batch, bank_keys.size(0), dtype=torch.bool)
        if positive_keys is not None:
            drop |= bank_keys.unsqueeze(0) == positive_keys.cpu().unsqueeze(1)
        if query_keys is not None and self.known_positives:
            for i, q in enumerate(query_keys.tolist()):
                known = self.known_positives.get(q)
                if known is not None:
                    drop[i] |= torch.isin(bank_keys, known)
        return drop

    def _entering(self, features: list[dict[str, Tensor]], embeddings: list[Tensor]) -> list[Tensor]:
        """The embeddings of this step's passages that go into the bank (detached)."""
        if not self.momentum:
            return [e.detach() for e in embeddings]
        from sentence_transformers.base.losses.merged_forward import embed_columns

        encoder = self._momentum_encoder()
        with torch.no_grad():
            return [e.detach() for e in embed_columns(encoder, features, separate_first=False)]

    @torch.no_grad()
    def _momentum_encoder(self) -> nn.Module:
        """The momentum copy, first made from the model's current weights, then moved towards them."""
        model = getattr(self.model, "module", self.model)  # DDP wraps the model
        if model is None:
            raise ValueError("momentum needs the model")
        if not self._momentum:
            enc = copy.deepcopy(model)
            enc.eval()
            for p in enc.parameters():
                p.requires_grad_(False)
            self._momentum.append(enc)
            log.info("memory bank: momentum encoder made (momentum %s)", self.momentum)
            return enc
        enc = self._momentum[0]
        for pk, pq in zip(enc.parameters(), model.parameters()):
            pk.mul_(self.momentum).add_(pq.detach(), alpha=1 - self.momentum)
        for bk, bq in zip(enc.buffers(), model.buffers()):
            bk.copy_(bq)
        return enc

    @property
    def temperature(self) -> float:
        return 1.0 / self.scale

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "queue_size": self.queue_size,
            "momentum": self.momentum,
            "similarity_fct": getattr(self.similarity_fct, "__name__", "custom"),
        }
