"""JointLH: joint likelihood of all positives under one softmax."""

from __future__ import annotations

from torch import Tensor

from .base import MultiPositiveLoss, masked_logsumexp


class JointLHLoss(MultiPositiveLoss):
    """Joint likelihood of the query's positives P (candidates and N as in ``base``).

    With ``denominator="all"`` (the default) each positive is one independent draw from a single
    softmax over every candidate, and the loss is the negative log of their joint probability::

        L = Σ_{p∈P} −log( e^{s_p} / Σ_{d∈P∪N} e^{s_d} )

    This is the multi-label softmax cross-entropy (SupCon's L_out, the "joint likelihood" of the
    multi-positive retrieval literature): its optimum spreads the probability mass evenly over the
    positives, so positives also compete with each other. ``denominator="each"`` gives the variant
    in which each positive competes only with the negatives::

        L = Σ_{p∈P} −log( e^{s_p} / (e^{s_p} + Σ_{n∈N} e^{s_n}) )

    Both sum over positives (the log of a product of likelihoods). With |P| = 1 both are InfoNCE.

    Args:
        model: the SentenceTransformer being trained.
        scale: 1 / temperature; cosine similarities are multiplied by it.
        similarity_fct: similarity of query and document embeddings (default: cosine).
        denominator: "all" (P ∪ N) or "each" ({p} ∪ N).
    """

    def __init__(self, model, scale: float = 20.0, similarity_fct=None, denominator: str = "all") -> None:
        super().__init__(model, scale, similarity_fct)
        if denominator not in ("all", "each"):
            raise ValueError(f"denominator must be 'all' or 'each', got {denominator!r}")
        self.denominator = denominator

    def per_query(self, scores: Tensor, pos: Tensor, cand: Tensor) -> Tensor:
        pos_f = pos.float()
        if self.denominator == "all":
            log_z = masked_logsumexp(scores, cand).unsqueeze(1)  # (B, 1): one softmax for all positives
        else:
            log_n = masked_logsumexp(scores, cand & ~pos).unsqueeze(1)
            log_z = scores.logaddexp(log_n)  # (B, C): e^{s_p} + Σ_N e^{s_n} for every column p
        return ((log_z - scores) * pos_f).sum(dim=1)

    def get_config_dict(self) -> dict:
        return {**super().get_config_dict(), "denominator": self.denominator}
