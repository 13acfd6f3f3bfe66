"""The query-view entropy term, checked against its formula computed by hand (numpy), and wired into
build_loss around mnrl and a multi-positive loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from negforge.trainer.losses import build_loss
from negforge.trainer.losses.entropy import QueryViewEntropyLoss, query_view_entropy


def _reference(q: np.ndarray, negs: list[np.ndarray], scale: float) -> float:
    """H_i = -sum_j p_ij log p_ij / log n, p_i = softmax_j(scale * cos(q_i, d_ij)); mean over i."""
    hs = []
    for i in range(len(q)):
        s = np.array([scale * q[i] @ d[i] / (np.linalg.norm(q[i]) * np.linalg.norm(d[i])) for d in negs])
        p = np.exp(s - s.max())
        p /= p.sum()
        hs.append(-(p * np.log(p)).sum() / math.log(len(negs)))
    return float(np.mean(hs))


def test_entropy_matches_the_formula():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(5, 8, generator=g, dtype=torch.float64)
    negs = [torch.randn(5, 8, generator=g, dtype=torch.float64) for _ in range(4)]
    for scale in (1.0, 20.0):
        got = float(query_view_entropy(q, negs, scale))
        assert got == pytest.approx(_reference(q.numpy(), [n.numpy() for n in negs], scale), rel=1e-5)
    # bounds: equal similarities -> 1; one negative far closer than the rest -> near 0; one negative -> 0
    same = [q.clone() * (k + 1) for k in range(3)]
    assert float(query_view_entropy(q, same, 20.0)) == pytest.approx(1.0, abs=1e-6)
    peaked = [q.clone()] + [-q.clone() for _ in range(3)]
    assert float(query_view_entropy(q, peaked, 20.0)) < 1e-6
    assert float(query_view_entropy(q, negs[:1])) == 0.0


def test_gradient_spreads_the_negatives():
    """One step of gradient ascent on H moves the closest negative away and the farthest closer."""
    q = torch.tensor([[1.0, 0.0]])
    near, far = torch.tensor([[0.9, 0.1]], requires_grad=True), torch.tensor([[0.1, 0.9]], requires_grad=True)
    h = query_view_entropy(q, [near, far], scale=5.0)
    (-h).backward()
    cos = lambda d: float(torch.nn.functional.cosine_similarity(q, d))  # noqa: E731
    before = cos(near) - cos(far)
    with torch.no_grad():
        n2, f2 = near - 0.1 * near.grad, far - 0.1 * far.grad
    assert cos(n2) - cos(f2) < before


class _Model(torch.nn.Module):
    pass


@pytest.mark.parametrize("name, labels", [("mnrl", None), ("jointlh", torch.tensor([[1, 0], [1, 1], [1, 0]]))])
def test_build_loss_adds_the_term(name, labels):
    g = torch.Generator().manual_seed(1)
    m = 1 if labels is None else labels.size(1)
    emb = [torch.randn(3, 6, generator=g) for _ in range(1 + m + 3)]  # anchor, positives, 3 hard negatives
    plain = build_loss(name, _Model(), scale=20.0)
    wrapped = build_loss(name, _Model(), scale=20.0, entropy_weight=0.5)
    assert isinstance(wrapped, QueryViewEntropyLoss) and not isinstance(plain, QueryViewEntropyLoss)
    expected = float(plain.compute_loss_from_embeddings(emb, labels)) - 0.5 * float(
        query_view_entropy(emb[0], emb[1 + m :], 20.0)
    )
    assert float(wrapped.compute_loss_from_embeddings(emb, labels)) == pytest.approx(expected, rel=1e-5)
    from negforge.synth.errors import ConfigError

    with pytest.raises(ConfigError, match="not cached_mnrl"):
        build_loss("cached_mnrl", _Model(), entropy_weight=0.1)
