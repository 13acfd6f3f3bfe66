"""What the multi-positive contrastive losses share: the batch's candidate scores and masks.

Data layout (built by :func:`negforge.trainer.train.build_columns`): columns ``anchor``, ``positive_1`` ..
``positive_m``, ``negative_1`` .. ``negative_n`` and ``label``, a length-m 0/1 list that marks the
positive slots a record really has. An unused slot repeats ``positive_1`` so that every column holds
text; its mask is 0 and it is left out of every candidate set, for every query in the batch.

For a batch of B queries the candidates are all real positive slots and all hard negatives of the
batch. For query i, with s(q, d) = cos(q, d) × scale (τ = 1/scale):

* P_i: the query's own real positives;
* N_i: every other candidate, i.e. the other queries' positives and hard negatives (in-batch
  negatives) plus the query's own hard negatives.

With one positive per query every loss here reduces to InfoNCE over {p} ∪ N_i, which is what
sentence-transformers' MultipleNegativesRankingLoss computes (``tests/test_losses.py`` checks it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

# Fill value for masked-out scores: exp(NEG - max) is exactly 0 in float32, and unlike -inf it
# keeps gradients finite when a mask row is empty (e.g. no negative at all in a batch of one).
NEG = -1e9


def masked_logsumexp(scores: Tensor, mask: Tensor) -> Tensor:
    """Row-wise log Σ exp(scores) over the entries where ``mask`` is True."""
    return scores.masked_fill(~mask, NEG).logsumexp(dim=1)


def candidate_scores(
    embeddings: list[Tensor], labels: Tensor, scale: float, similarity_fct: Callable[[Tensor, Tensor], Tensor]
) -> tuple[Tensor, Tensor, Tensor]:
    """Scores of every query against every candidate of the batch, and the masks that split them.

    ``embeddings``: [anchors (B, d), positive slot 1 .. m (B, d) each, hard negative 1 .. n (B, d) each];
    ``labels``: (B, m), 1 where the positive slot is real. Candidate column ``j * B + k`` is slot j of
    query k. Returns ``scores`` (B, C) float32, ``pos`` (B, C): own real positives, and ``cand`` (B, C):
    every real candidate (so N_i = cand & ~pos).
    """
    if labels is None:
        raise ValueError("multi-positive losses need the 'label' column (the positive-slot mask)")
    queries = embeddings[0]
    batch, m = queries.size(0), labels.size(1)
    if len(embeddings) < 1 + m:
        raise ValueError(f"label has {m} positive slots but the batch has only {len(embeddings) - 1} text columns")
    labels = labels.to(device=queries.device).bool()
    if labels.shape != (batch, m):
        raise ValueError(f"label must have shape (batch, positives) = ({batch}, {m}), got {tuple(labels.shape)}")
    if not bool(labels.any(dim=1).all()):
        raise ValueError("every row needs at least one real positive (label row of zeros)")
    docs = torch.cat(embeddings[1:], dim=0)
    scores = similarity_fct(queries, docs).float() * scale
    n_cand = docs.size(0)
    slot_real = torch.ones(n_cand, dtype=torch.bool, device=queries.device)
    slot_real[: m * batch] = labels.T.reshape(-1)
    rows = torch.arange(batch, device=queries.device)
    pos = torch.zeros(batch, n_cand, dtype=torch.bool, device=queries.device)
    for j in range(m):
        pos[rows, j * batch + rows] = labels[:, j]
    cand = slot_real.unsqueeze(0).expand(batch, n_cand)
    return scores, pos, cand


class MultiPositiveLoss(nn.Module):
    """Base class: embeds the columns, builds the candidate scores, averages ``per_query`` over the batch.

    Subclasses implement :meth:`per_query` (scores, pos, cand) -> (B,) losses.
    """

    multi_positive = True  # tells the trainer to build the positive_1..m + label layout

    def __init__(
        self,
        model: nn.Module | None,
        scale: float = 20.0,
        similarity_fct: Callable[[Tensor, Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__()
        if not scale > 0:
            raise ValueError(f"scale must be > 0 (it is 1/temperature), got {scale}")
        if similarity_fct is None:
            from sentence_transformers.util import cos_sim

            similarity_fct = cos_sim
        self.model = model
        self.scale = scale
        self.similarity_fct = similarity_fct

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        from sentence_transformers.base.losses.merged_forward import embed_columns

        if self.model is None:
            raise ValueError(f"{type(self).__name__} was built without a model; call compute_loss_from_embeddings")
        return self.compute_loss_from_embeddings(embed_columns(self.model, sentence_features), labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        scores, pos, cand = candidate_scores(list(embeddings), labels, self.scale, self.similarity_fct)
        return self.per_query(scores, pos, cand).mean()

    def per_query(self, scores: Tensor, pos: Tensor, cand: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    @property
    def temperature(self) -> float:
        return 1.0 / self.scale

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "similarity_fct": getattr(self.similarity_fct, "__name__", "custom")}
