"""The memory-bank loss (mnrl_xbm): its value and gradients against a reference formula, the bank's FIFO
order and size, false negatives left out by passage identity, no gradient into the bank, the momentum
encoder's update, the config errors, and a real few-step training run on tests/data/tiny-beir."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from negforge.synth.errors import ConfigError
from negforge.trainer.losses import build_loss
from negforge.trainer.losses.memory_bank import MemoryBank, feature_keys
from negforge.trainer.losses.mnrl_xbm import MNRLMemoryBankLoss

SCALE = 20.0


def _emb(b: int, cols: int, dim: int = 8, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, dim, generator=g, dtype=torch.float64) for _ in range(cols)]


def _s(q, d):
    return F.cosine_similarity(q, d, dim=0) * SCALE


def reference(emb, bank, bank_keys, pos_keys, known=None):
    """The formula written out: −s(q_i, p_i) + log(Σ_batch docs e^s + Σ_{bank entries not a positive of i} e^s)."""
    q, docs = emb[0], torch.cat(emb[1:])
    out = []
    for i in range(q.size(0)):
        own = {int(pos_keys[i])} | set(known.get(i, ())) if known else {int(pos_keys[i])}
        terms = [_s(q[i], d) for d in docs] + [_s(q[i], m) for m, k in zip(bank, bank_keys) if int(k) not in own]
        out.append(torch.logsumexp(torch.stack(terms), 0) - _s(q[i], emb[1][i]))
    return torch.stack(out).mean()


def _loss_with_bank(bank: torch.Tensor, keys: torch.Tensor, capacity: int = 16) -> MNRLMemoryBankLoss:
    loss = MNRLMemoryBankLoss(None, scale=SCALE, queue_size=capacity)
    loss.bank.push(bank, keys)
    return loss


def test_loss_equals_reference_over_batch_hard_and_bank_negatives():
    emb = _emb(4, 3)  # queries, positives, one hard negative
    (bank,) = _emb(10, 1, seed=1)
    keys = torch.arange(100, 110)
    pos_keys = torch.tensor([1, 2, 3, 4])
    loss = _loss_with_bank(bank.float(), keys)
    ours_leaves = [e.float().requires_grad_(True) for e in emb]
    ref_leaves = [e.clone().requires_grad_(True) for e in emb]
    ours = loss.compute_loss_from_embeddings(ours_leaves, None, torch.tensor([7, 8, 9, 10]), pos_keys)
    ref = reference(ref_leaves, bank, keys, pos_keys)
    ours.backward()
    ref.backward()
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    for a, b in zip(ours_leaves, ref_leaves):
        torch.testing.assert_close(a.grad.double(), b.grad, rtol=1e-4, atol=1e-5)
    # the bank adds negatives: the loss is higher than without it (every exp term is > 0)
    plain = MNRLMemoryBankLoss(None, scale=SCALE, queue_size=16).compute_loss_from_embeddings(
        [e.float() for e in emb], None
    )
    assert ours.item() > plain.item()
    assert loss.scored == 4 * 10 and loss.excluded == 0


def test_empty_bank_is_sentence_transformers_mnrl():
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    emb = [e.float() for e in _emb(5, 4, seed=2)]
    ours = MNRLMemoryBankLoss(None, scale=SCALE, queue_size=8).compute_loss_from_embeddings(emb, None)
    theirs = MultipleNegativesRankingLoss(None, scale=SCALE).compute_loss_from_embeddings(emb, None)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)


def test_bank_is_fifo_and_keeps_its_size():
    bank = MemoryBank(5)
    assert len(bank) == 0 and bank.embeddings.numel() == 0
    rows = torch.arange(12, dtype=torch.float32).unsqueeze(1).repeat(1, 2)
    bank.push(rows[:3], torch.arange(3))
    assert len(bank) == 3 and bank.keys.tolist() == [0, 1, 2]
    bank.push(rows[3:7], torch.arange(3, 7))
    assert len(bank) == 5 and bank.pushed == 7
    assert bank.keys.tolist() == [2, 3, 4, 5, 6]  # oldest first; 0 and 1 went out first
    assert bank.embeddings[:, 0].tolist() == [2.0, 3.0, 4.0, 5.0, 6.0]
    bank.push(rows[5:12], torch.arange(5, 12))  # more than the capacity at once: the last 5 stay
    assert bank.keys.tolist() == [7, 8, 9, 10, 11] and len(bank) == 5 and bank.pushed == 14
    emb, keys = bank.entries()
    assert sorted(keys.tolist()) == [7, 8, 9, 10, 11] and emb.shape == (5, 2)
    with pytest.raises(ValueError, match="keys"):
        bank.push(rows[:2], torch.arange(3))
    empty = MemoryBank(0)
    empty.push(rows, torch.arange(12))
    assert len(empty) == 0


def test_a_positive_of_the_query_in_the_bank_is_not_its_negative():
    emb = _emb(3, 2, seed=3)
    (bank,) = _emb(4, 1, seed=4)
    # entry 0 is query 0's positive (same key), entry 2 another known positive of query 1
    keys = torch.tensor([11, 50, 60, 70])
    pos_keys, query_keys = torch.tensor([11, 12, 13]), torch.tensor([900, 901, 902])
    loss = _loss_with_bank(bank.float(), keys)
    loss.known_positives = {901: torch.tensor([12, 60])}
    value = loss.compute_loss_from_embeddings([e.float() for e in emb], None, query_keys, pos_keys)
    ref = reference(emb, bank, keys, pos_keys, known={1: [60]})
    assert value.item() == pytest.approx(ref.item(), rel=1e-5)
    assert loss.excluded == 2 and loss.scored == 3 * 4 - 2
    # make the two entries near-copies of queries 0 and 1: left out for those rows, counted for the others
    moved = bank.clone()
    moved[0], moved[2] = emb[0][0] * 5, emb[0][1] * 5
    again = _loss_with_bank(moved.float(), keys)
    again.known_positives = loss.known_positives
    value2 = again.compute_loss_from_embeddings([e.float() for e in emb], None, query_keys, pos_keys)
    assert value2.item() == pytest.approx(reference(emb, moved, keys, pos_keys, known={1: [60]}).item(), rel=1e-5)
    # without the identities the same bank counts them as negatives of their own queries: a much higher loss
    blind = _loss_with_bank(moved.float(), keys).compute_loss_from_embeddings([e.float() for e in emb], None)
    assert blind.item() > value2.item() + 1.0


# ---- the forward path on a toy encoder (token ids -> mean of embeddings) --------------------------


class ToyEncoder(nn.Module):
    def __init__(self, vocab: int = 128, dim: int = 8):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(vocab, dim)

    def forward(self, features):
        ids, mask = features["input_ids"], features["attention_mask"].unsqueeze(-1).float()
        return {"sentence_embedding": (self.emb(ids) * mask).sum(1) / mask.sum(1)}


def _feats(rows: list[list[int]], pad_to: int = 0) -> dict[str, torch.Tensor]:
    width = max(pad_to, max(len(r) for r in rows))
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return {"input_ids": ids, "attention_mask": mask}


def _batch(offset: int) -> list[dict[str, torch.Tensor]]:
    queries = [[1, 2], [3, 4], [5, 6]]
    positives = [[10 + offset, 11], [12 + offset, 13, 14], [15 + offset]]
    negatives = [[20 + offset], [21 + offset, 22], [23 + offset, 24, 25]]
    return [_feats(queries), _feats(positives), _feats(negatives)]


def test_keys_ignore_padding_and_tell_passages_apart():
    a, b = feature_keys(_feats([[5, 6, 7], [5, 6]])), feature_keys(_feats([[5, 6]], pad_to=6))
    assert a[1] == b[0] and a[0] != a[1]


def _passages(model, feats):
    """The model's embeddings of a batch's passage columns (positives, then negatives), without gradient."""
    with torch.no_grad():
        return torch.cat([model(f)["sentence_embedding"] for f in feats[1:]])


def test_forward_pushes_detached_passages_and_no_gradient_reaches_the_bank():
    model = ToyEncoder()
    loss = MNRLMemoryBankLoss(model, scale=SCALE, queue_size=8)
    loss(_batch(0)).backward()
    assert len(loss.bank) == 6 and loss.bank.pushed == 6 and loss.steps == 1  # 3 positives + 3 negatives
    bank, keys = (t.clone() for t in loss.bank.entries())
    assert bank.grad_fn is None and not bank.requires_grad
    torch.testing.assert_close(bank, _passages(model, _batch(0)))  # XBM: the model's own embeddings
    assert keys.tolist() == torch.cat([feature_keys(f) for f in _batch(0)[1:]]).tolist()
    model.zero_grad()
    loss(_batch(30)).backward()  # would fail ("backward through the graph a second time") if not detached
    grad = model.emb.weight.grad.clone()
    assert len(loss.bank) == 8 and loss.bank.pushed == 12  # FIFO: capacity 8
    # the same step against a bank of plain constants gives the same gradient: the bank is not in the graph
    model.zero_grad()
    const = MNRLMemoryBankLoss(model, scale=SCALE, queue_size=8)
    const.bank.push(bank, keys)
    const(_batch(30)).backward()
    torch.testing.assert_close(model.emb.weight.grad, grad)
    # evaluation forwards (model.eval()) push nothing
    model.eval()
    with torch.no_grad():
        loss(_batch(60))
    assert loss.bank.pushed == 12 and loss.steps == 2


def test_momentum_encoder_fills_the_bank_and_moves_towards_the_model():
    model = ToyEncoder()
    loss = MNRLMemoryBankLoss(model, scale=SCALE, queue_size=32, momentum=0.5)
    loss(_batch(0)).backward()
    (enc,) = loss._momentum
    torch.testing.assert_close(enc.emb.weight, model.emb.weight)  # first made from the model
    assert not any(p.requires_grad for p in enc.parameters())
    assert all(p is not q for p in loss.parameters() for q in enc.parameters())  # not trained, not saved
    before = enc.emb.weight.clone()
    with torch.no_grad():
        model.emb.weight.add_(1.0)  # an optimizer step
    loss(_batch(30))
    torch.testing.assert_close(enc.emb.weight, 0.5 * before + 0.5 * model.emb.weight)
    # what entered the bank at step 2 is the momentum copy's embedding, not the model's
    bank = loss.bank.embeddings
    with torch.no_grad():
        expected = torch.cat([enc(f)["sentence_embedding"] for f in _batch(30)[1:]])
    torch.testing.assert_close(bank[6:], expected)


def test_config_errors_name_what_to_change():
    with pytest.raises(ConfigError, match="memory bank of loss mnrl_xbm, not mnrl"):
        build_loss("mnrl", None, queue_size=64)
    with pytest.raises(ConfigError, match="GradCache with a memory bank is not supported"):
        build_loss("cached_mnrl", None, queue_size=64)
    with pytest.raises(ConfigError, match="not mnrl_xbm"):
        build_loss("mnrl_xbm", None, queue_size=64, entropy_weight=0.1)
    with pytest.raises(ValueError, match="momentum"):
        MNRLMemoryBankLoss(None, momentum=1.0)
    loss = build_loss("mnrl_xbm", None, queue_size=64, momentum=0.9)
    assert (loss.queue_size, loss.momentum, loss.bank.capacity) == (64, 0.9, 64)


# ---- a real run: the bundled MiniLM on tests/data/tiny-beir -------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_real_training_run_fills_the_bank(generic_beir, encoder_path, tmp_path, momentum):
    from test_train import bm25_records

    from negforge.synth.config import TrainConfig
    from negforge.synth.data import load_beir, records_from_beir
    from negforge.trainer.train import load_result, train_model

    data = load_beir(generic_beir, "train")
    records = bm25_records(data, records_from_beir(data), k=1)
    cfg = TrainConfig(
        loss="mnrl_xbm",
        queue_size=8,
        momentum=momentum,
        batch_size=4,
        epochs=2,
        max_steps=3,
        max_seq_length=64,
        lr=1e-4,
        warmup_ratio=0.0,
        num_hard_negatives=1,
        output_dir=str(tmp_path / "model"),
    )
    res = train_model(records, cfg, show_progress=False)
    mb = res.memory_bank
    assert res.steps == 3 and all(x["loss"] > 0 for x in res.losses)
    # each step pushes its rows' positive and negative (the query-aware sampler may defer a row to a later batch)
    assert mb["filled"] == 8 and mb["steps"] == 3 and 8 < mb["pushed"] <= 3 * 4 * 2 and mb["pushed"] % 2 == 0
    # queries with two positives meet their other positive in the bank: it is left out, not a negative
    assert mb["excluded_false_negatives"] > 0
    assert load_result(res.model_path)["memory_bank"] == mb
