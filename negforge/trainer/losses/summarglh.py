"""SumMargLH: summed marginal likelihood of the positive set."""

from __future__ import annotations

from torch import Tensor

from .base import MultiPositiveLoss, masked_logsumexp


class SumMargLHLoss(MultiPositiveLoss):
    """Summed marginal likelihood over the query's positives P (candidates and N as in ``base``)::

        L = −log( Σ_{p∈P} e^{s_p} / Σ_{d∈P∪N} e^{s_d} )

    The model is rewarded for the probability mass it puts on the positive *set*; how that mass is
    spread across the positives is free, so one easy positive can carry the whole query. With
    |P| = 1 it is InfoNCE.

    Args:
        model: the SentenceTransformer being trained.
        scale: 1 / temperature; cosine similarities are multiplied by it.
        similarity_fct: similarity of query and document embeddings (default: cosine).
    """

    def per_query(self, scores: Tensor, pos: Tensor, cand: Tensor) -> Tensor:
        return masked_logsumexp(scores, cand) - masked_logsumexp(scores, pos)
