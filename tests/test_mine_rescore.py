"""Cross-encoder rescoring in mining (MineConfig.cross_encoder), as sentence-transformers'
mine_hard_negatives(cross_encoder=...): a real CrossEncoder built from the bundled MiniLM (its head is
random, so the mechanics are under test, not the model's judgement) rescoring real BM25 candidates."""

from __future__ import annotations

import pytest

from negforge.synth.config import MineConfig
from negforge.synth.data import load_beir, records_from_beir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def beir(tiny_beir):
    return load_beir(tiny_beir, "train")


@pytest.fixture(scope="module")
def ce_path(tmp_path_factory, encoder_path):
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("ce") / "minilm-ce"
    CrossEncoder(encoder_path, num_labels=1, max_length=96, device="cpu").save(str(path))
    return str(path)


def _mine(beir, tmp_path, **kw):
    from negforge.mixers.mine import mine_records

    cfg = MineConfig(sources=["bm25"], num_negatives=3, range_max=8, cache_dir=str(tmp_path), **kw)
    return mine_records(records_from_beir(beir, limit=5), beir, cfg, show_progress=False)


def test_rescored_candidates_are_ordered_by_the_cross_encoder(beir, ce_path, tmp_path):
    import torch
    from sentence_transformers import CrossEncoder

    plain, _ = _mine(beir, tmp_path)
    out, report = _mine(beir, tmp_path, cross_encoder=ce_path)
    assert report.miners["bm25"].rescored > 0 and "cross-encoder rescored" in report.table()
    ce = CrossEncoder(ce_path, device="cpu")
    sig = torch.nn.Sigmoid()
    for r, p in zip(out, plain):
        assert not {n.doc_id for n in r.negatives} & r.positive_ids()
        probs = [n.scores["cross_encoder"] for n in r.negatives]
        assert probs == sorted(probs, reverse=True) and len(probs) == 3
        direct = ce.predict([(r.query, n.full_text) for n in r.negatives], activation_fn=sig)
        assert probs == pytest.approx([float(x) for x in direct], abs=1e-5)
        pos = min(float(x) for x in ce.predict([(r.query, q.full_text) for q in r.positives], activation_fn=sig))
        assert all(n.scores["cross_encoder_pos"] == pytest.approx(pos, abs=1e-5) for n in r.negatives)
        # the miner's own score and rank are kept beside the cross-encoder's
        window = {d: s for n in p.negatives for d, s in [(n.doc_id, n.scores["bm25"])]}
        for n in r.negatives:
            assert n.scores["bm25"] > 0 and n.provenance.extra["miner_rank"] >= 1
            if n.doc_id in window:
                assert n.scores["bm25"] == pytest.approx(window[n.doc_id], abs=1e-5)


def test_relative_margin_and_max_score_apply_to_cross_encoder_scores_for_bm25(beir, ce_path, tmp_path):
    out, _ = _mine(beir, tmp_path, cross_encoder=ce_path)
    probs = sorted(n.scores["cross_encoder"] for r in out for n in r.negatives)
    cap = probs[len(probs) // 2]
    capped, rep = _mine(beir, tmp_path, cross_encoder=ce_path, max_score=cap)
    assert rep.miners["bm25"].removed["max_score"] > 0
    assert all(n.scores["cross_encoder"] <= cap for r in capped for n in r.negatives)
    margin, rep = _mine(beir, tmp_path, cross_encoder=ce_path, relative_margin=0.0)
    for r in margin:  # nothing above the (lowest) positive's P(relevant) survives
        assert all(n.scores["cross_encoder"] <= n.scores["cross_encoder_pos"] for n in r.negatives)
    plain, rep0 = _mine(beir, tmp_path, max_score=cap)  # without rescoring BM25 has no score window
    assert rep0.miners["bm25"].removed["max_score"] == 0
