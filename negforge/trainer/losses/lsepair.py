"""LSEPair: log-sum-exp over every (negative, positive) pair."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .base import MultiPositiveLoss, masked_logsumexp


class LSEPairLoss(MultiPositiveLoss):
    """Pairwise log-sum-exp loss over the query's positives P and negatives N (as in ``base``)::

        L = log( 1 + Σ_{n∈N} Σ_{p∈P} e^{s_n − s_p} )

    a smooth maximum of the margin violations s_n − s_p, so the hardest (negative, positive) pair
    dominates: every positive must beat every negative, without positives competing with each other.
    Computed as softplus(logΣ_N e^{s_n} + logΣ_P e^{−s_p}), since the double sum factorises.
    With |P| = 1 it is InfoNCE: log(1 + Σ_n e^{s_n − s_p}) = −log softmax_p.

    Args:
        model: the SentenceTransformer being trained.
        scale: 1 / temperature; cosine similarities are multiplied by it.
        similarity_fct: similarity of query and document embeddings (default: cosine).
    """

    def per_query(self, scores: Tensor, pos: Tensor, cand: Tensor) -> Tensor:
        return F.softplus(masked_logsumexp(scores, cand & ~pos) + masked_logsumexp(-scores, pos))
