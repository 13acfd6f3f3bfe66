"""Multi-positive losses against direct reference formulas (values and gradients), and against
sentence-transformers' MultipleNegativesRankingLoss where theory says they coincide (|P| = 1)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from negforge.synth.errors import ConfigError
from negforge.trainer.losses import LOSSES, build_loss, is_multi_positive
from negforge.trainer.losses.jointlh import JointLHLoss
from negforge.trainer.losses.lsepair import LSEPairLoss
from negforge.trainer.losses.rand1lh import Rand1LHLoss
from negforge.trainer.losses.summarglh import SumMargLHLoss

SCALE = 20.0


def _batch(labels: list[list[int]], n_neg: int, dim: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    b, m = len(labels), len(labels[0])
    emb = [torch.randn(b, dim, generator=g, dtype=torch.float64) for _ in range(1 + m + n_neg)]
    return emb, torch.tensor(labels)


def _leaves(emb, dtype):
    return [e.detach().clone().to(dtype).requires_grad_(True) for e in emb]


def _sets(emb, labels, i):
    """Reference candidate sets for query i, written out slot by slot: (q, P_i, N_i)."""
    b, m = labels.shape
    n_neg = len(emb) - 1 - m
    pos, neg = [], []
    for k in range(b):
        for j in range(m):
            if labels[k, j]:
                (pos if k == i else neg).append(emb[1 + j][k])
        for j in range(n_neg):
            neg.append(emb[1 + m + j][k])
    return emb[0][i], pos, neg


def _s(q, d):
    return F.cosine_similarity(q, d, dim=0) * SCALE


def ref_summarg(q, pos, neg):
    sp = [torch.exp(_s(q, p)) for p in pos]
    sn = [torch.exp(_s(q, n)) for n in neg]
    return -torch.log(sum(sp) / (sum(sp) + sum(sn)))


def ref_joint_all(q, pos, neg):
    z = sum(torch.exp(_s(q, d)) for d in pos + neg)
    return sum(-torch.log(torch.exp(_s(q, p)) / z) for p in pos)


def ref_joint_each(q, pos, neg):
    zn = sum(torch.exp(_s(q, n)) for n in neg)
    return sum(-torch.log(torch.exp(_s(q, p)) / (torch.exp(_s(q, p)) + zn)) for p in pos)


def ref_lsepair(q, pos, neg):
    return torch.log(1 + sum(torch.exp(_s(q, n) - _s(q, p)) for n in neg for p in pos))


def ref_infonce(q, p, neg):
    return -torch.log(torch.exp(_s(q, p)) / (torch.exp(_s(q, p)) + sum(torch.exp(_s(q, n)) for n in neg)))


def _reference(fn, emb, labels):
    return torch.stack([fn(*_sets(emb, labels, i)) for i in range(labels.shape[0])]).mean()


def _compare(ours_fn, ref_fn, emb, labels):
    a, b = _leaves(emb, torch.float32), _leaves(emb, torch.float64)
    ours, ref = ours_fn(a, labels), ref_fn(b, labels)
    ours.backward()
    ref.backward()
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-5)
    for x, y in zip(a, b):
        torch.testing.assert_close(x.grad.double(), y.grad, rtol=1e-4, atol=1e-5)
    return ours.item()


MULTI = [[1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 0, 0]]


@pytest.mark.parametrize(
    "loss_cls,kwargs,ref",
    [
        (SumMargLHLoss, {}, ref_summarg),
        (JointLHLoss, {}, ref_joint_all),
        (JointLHLoss, {"denominator": "each"}, ref_joint_each),
        (LSEPairLoss, {}, ref_lsepair),
    ],
    ids=["summarglh", "jointlh-all", "jointlh-each", "lsepair"],
)
@pytest.mark.parametrize("n_neg", [0, 2])
def test_multi_positive_matches_reference(loss_cls, kwargs, ref, n_neg):
    emb, labels = _batch(MULTI, n_neg)
    loss = loss_cls(None, scale=SCALE, **kwargs)
    value = _compare(
        lambda e, lab: loss.compute_loss_from_embeddings(e, lab), lambda e, lab: _reference(ref, e, lab), emb, labels
    )
    assert value > 0


def test_rand1lh_matches_reference_with_its_draws():
    emb, labels = _batch(MULTI, 2, seed=1)
    drawn = Rand1LHLoss(None, scale=SCALE, seed=7).sample_positives(labels)  # same seed: same first draw
    assert all(labels[i, j] for i, j in enumerate(drawn.tolist()))

    def ref(e, lab):
        out = []
        for i in range(lab.shape[0]):
            q, _, neg = _sets(e, lab, i)  # the query's other positives are not negatives
            out.append(ref_infonce(q, e[1 + int(drawn[i])][i], neg))
        return torch.stack(out).mean()

    loss = Rand1LHLoss(None, scale=SCALE, seed=7)
    _compare(lambda e, lab: loss.compute_loss_from_embeddings(e, lab), ref, emb, labels)


def test_rand1lh_draws_are_seeded_and_cover_all_positives():
    labels = torch.tensor(MULTI)
    a, b = Rand1LHLoss(None, seed=3), Rand1LHLoss(None, seed=3)
    draws_a = torch.stack([a.sample_positives(labels) for _ in range(50)])
    draws_b = torch.stack([b.sample_positives(labels) for _ in range(50)])
    assert torch.equal(draws_a, draws_b)
    assert set(draws_a[:, 0].tolist()) == {0, 1, 2}  # query 0 has three positives, all get drawn
    assert set(draws_a[:, 1].tolist()) == {0}  # query 1 has one: padded slots are never drawn


@pytest.mark.parametrize("n_neg", [0, 3])
def test_one_positive_all_losses_equal_infonce_and_sentence_transformers_mnrl(n_neg):
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    emb, labels = _batch([[1]] * 5, n_neg, seed=2)
    losses = [
        SumMargLHLoss(None, scale=SCALE),
        JointLHLoss(None, scale=SCALE),
        JointLHLoss(None, scale=SCALE, denominator="each"),
        LSEPairLoss(None, scale=SCALE),
        Rand1LHLoss(None, scale=SCALE),
    ]
    mnrl = MultipleNegativesRankingLoss(None, scale=SCALE)
    ref_leaves = _leaves(emb, torch.float32)
    ref = mnrl.compute_loss_from_embeddings(ref_leaves, None)
    ref.backward()
    # and the textbook formula
    infonce = _reference(lambda q, pos, neg: ref_infonce(q, pos[0], neg), _leaves(emb, torch.float64), labels)
    assert ref.item() == pytest.approx(infonce.item(), rel=1e-5)
    for loss in losses:
        leaves = _leaves(emb, torch.float32)
        value = loss.compute_loss_from_embeddings(leaves, labels)
        value.backward()
        assert value.item() == pytest.approx(ref.item(), rel=1e-5), type(loss).__name__
        for x, y in zip(leaves, ref_leaves):
            torch.testing.assert_close(x.grad, y.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("loss_cls", [SumMargLHLoss, JointLHLoss, LSEPairLoss, Rand1LHLoss])
def test_padded_positive_slots_are_ignored(loss_cls):
    emb, labels = _batch(MULTI, 1, seed=3)
    leaves = _leaves(emb, torch.float32)
    base = loss_cls(None).compute_loss_from_embeddings(leaves, labels)
    base.backward()
    # slot 3 of query 1 is padding: moving it changes nothing and it gets no gradient
    assert torch.all(leaves[3].grad[1] == 0)
    moved = [e.detach().clone().float() for e in emb]
    moved[3][1] = torch.randn(8) * 10
    assert loss_cls(None).compute_loss_from_embeddings(moved, labels).item() == pytest.approx(base.item(), rel=1e-6)


def test_losses_stay_finite_without_any_negative():
    emb, labels = _batch([[1, 1]], 0, seed=4)  # one query, no in-batch or hard negative
    for cls in (SumMargLHLoss, JointLHLoss, LSEPairLoss, Rand1LHLoss):
        leaves = _leaves(emb, torch.float32)
        value = cls(None).compute_loss_from_embeddings(leaves, labels)
        value.backward()
        assert math.isfinite(value.item()) and all(torch.isfinite(x.grad).all() for x in leaves)
    assert LSEPairLoss(None).compute_loss_from_embeddings(_leaves(emb, torch.float32), labels).item() == 0.0


def test_bad_labels_are_reported():
    emb, _ = _batch([[1, 1]] * 2, 1)
    with pytest.raises(ValueError, match="at least one real positive"):
        SumMargLHLoss(None).compute_loss_from_embeddings(emb, torch.tensor([[1, 0], [0, 0]]))
    with pytest.raises(ValueError, match="label"):
        SumMargLHLoss(None).compute_loss_from_embeddings(emb, None)
    with pytest.raises(ValueError, match="denominator"):
        JointLHLoss(None, denominator="some")
    with pytest.raises(ValueError, match="scale"):
        LSEPairLoss(None, scale=0)


def test_registry_names_and_errors():
    assert LOSSES.names() == ["cached_mnrl", "jointlh", "lsepair", "mnrl", "mnrl_xbm", "rand1lh", "summarglh"]
    assert is_multi_positive("jointlh") and not is_multi_positive("mnrl")
    with pytest.raises(ConfigError, match="valid: cached_mnrl, jointlh"):
        build_loss("infonce", None)
    loss = build_loss("rand1lh", None, scale=10.0, seed=5)
    assert loss.scale == 10.0 and loss.seed == 5 and loss.temperature == pytest.approx(0.1)
