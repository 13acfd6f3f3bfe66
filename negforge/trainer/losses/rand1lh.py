"""Rand1LH: InfoNCE with one positive drawn at random per query and step."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import MultiPositiveLoss, candidate_scores, masked_logsumexp


class Rand1LHLoss(MultiPositiveLoss):
    """InfoNCE with one positive p̂ drawn uniformly from the query's real positives at every step::

        L = −log( e^{s_p̂} / (e^{s_p̂} + Σ_{n∈N} e^{s_n}) )

    The query's other positives are left out of the candidate set (they are not negatives). The
    draws come from a generator seeded with ``seed`` and advance with every call, so a run is
    reproducible from the start (a resumed run restarts the sequence). With |P| = 1 it is InfoNCE.

    Args:
        model: the SentenceTransformer being trained.
        scale: 1 / temperature; cosine similarities are multiplied by it.
        similarity_fct: similarity of query and document embeddings (default: cosine).
        seed: seed of the positive draws.
    """

    def __init__(self, model, scale: float = 20.0, similarity_fct=None, seed: int = 0) -> None:
        super().__init__(model, scale, similarity_fct)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def sample_positives(self, labels: Tensor) -> Tensor:
        """(B,) index of the positive slot drawn for each row (uniform over the real slots)."""
        return torch.multinomial(labels.detach().float().cpu(), 1, generator=self.generator).squeeze(1)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        scores, pos, cand = candidate_scores(list(embeddings), labels, self.scale, self.similarity_fct)
        batch = scores.size(0)
        rows = torch.arange(batch, device=scores.device)
        picked = self.sample_positives(labels).to(scores.device) * batch + rows
        keep = torch.zeros_like(pos)
        keep[rows, picked] = True
        cand = cand & ~(pos & ~keep)  # the other own positives are neither positive nor negative
        return (masked_logsumexp(scores, cand) - scores[rows, picked]).mean()

    def per_query(self, scores: Tensor, pos: Tensor, cand: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError("Rand1LH samples per call; use compute_loss_from_embeddings")

    def get_config_dict(self) -> dict:
        return {**super().get_config_dict(), "seed": self.seed}
