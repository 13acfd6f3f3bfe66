"""Query-view entropy maximisation: an optional term against source-dependent shortcuts.

CausalNeg (arXiv 2606.01304) reports that a retriever trained on LLM-written negatives can learn to push
them all to one end of the similarity range (by their style) instead of ranking them by meaning; its
remedy spreads a query's generated negatives across the similarity range by maximising the entropy of
the query's view of them. For query i with hard negatives d_i1 .. d_in (the ``negative_1..n`` columns)
and s_ij = scale * cos(q_i, d_ij)::

    p_ij = exp(s_ij) / sum_k exp(s_ik)          (the query's softmax over its own hard negatives)
    H_i  = -sum_j p_ij log p_ij / log n          (normalised to [0, 1])
    loss = base_loss - weight * mean_i H_i

so no single negative takes all of the query's attention. The columns do not say which negative came
from which source: the term covers all of a query's hard negatives (mix LLM negatives only, e.g.
``mix.ratios={llm: 1}``, to apply it to generated ones alone). With fewer than two hard negatives the
term is 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn


def query_view_entropy(queries: Tensor, negatives: list[Tensor], scale: float = 20.0) -> Tensor:
    """Mean over the batch of H_i (see the module doc); ``negatives``: n tensors of shape (B, d)."""
    if len(negatives) < 2:
        return queries.new_zeros(())
    q = nn.functional.normalize(queries, dim=-1)
    d = nn.functional.normalize(torch.stack(negatives, dim=1), dim=-1)  # (B, n, d)
    s = torch.einsum("bd,bnd->bn", q, d).float() * scale
    logp = s.log_softmax(dim=1)
    h = -(logp.exp() * logp).sum(dim=1) / math.log(len(negatives))
    return h.mean()


class QueryViewEntropyLoss(nn.Module):
    """``base`` (any loss with ``compute_loss_from_embeddings``) minus ``weight`` times the query-view entropy."""

    def __init__(self, base: nn.Module, weight: float = 0.1, scale: float = 20.0) -> None:
        super().__init__()
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        self.base: Any = base  # a loss with compute_loss_from_embeddings and .model
        self.weight, self.scale = weight, scale
        self.model: nn.Module = base.model  # type: ignore[assignment]
        self.multi_positive = bool(getattr(base, "multi_positive", False))

    def negatives_of(self, embeddings: list[Tensor], labels: Any) -> list[Tensor]:
        """The hard-negative columns: after anchor + positive, or after anchor + m positive slots."""
        first = 1 + (labels.size(1) if self.multi_positive else 1)
        return list(embeddings[first:])

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Any) -> Tensor:
        base = self.base.compute_loss_from_embeddings(embeddings, labels)
        if not self.weight:
            return base
        return base - self.weight * query_view_entropy(embeddings[0], self.negatives_of(embeddings, labels), self.scale)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        from sentence_transformers.base.losses.merged_forward import embed_columns

        return self.compute_loss_from_embeddings(embed_columns(self.model, sentence_features), labels)

    def get_config_dict(self) -> dict[str, Any]:
        inner: dict[str, Any] = getattr(self.base, "get_config_dict", lambda: {})()
        return {"base": type(self.base).__name__, **inner, "entropy_weight": self.weight}
