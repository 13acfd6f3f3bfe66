"""verify.fn_action on real model scores: drop (default), relabel (into the positives, with provenance)
and drop_query; and a relabelled positive reaching a multi-positive loss (JointLH) through build_columns."""

from __future__ import annotations

import pytest

from negforge.synth.config import MineConfig, TrainConfig, VerifyConfig
from negforge.synth.data import load_beir, records_from_beir
from negforge.synth.io import read_records, write_records
from negforge.synth.schema import Negative, Source, Status

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def beir(tiny_beir):
    return load_beir(tiny_beir, "train")


@pytest.fixture(scope="module")
def emb_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("emb"))


@pytest.fixture(scope="module")
def records(beir, emb_cache):
    """Real BM25 negatives for 8 queries, plus per record an off-topic LLM draft (another query's positive)
    and, on the first, a copy of its own positive: two rejections that are not false negatives."""
    from negforge.mixers.mine import mine_records

    cfg = MineConfig(sources=["bm25"], num_negatives=6, range_max=12, cache_dir=emb_cache)
    recs, _ = mine_records(records_from_beir(beir, limit=8), beir, cfg, show_progress=False)
    for i, r in enumerate(recs):
        other = recs[(i + 4) % len(recs)].positives[0]
        r.negatives.append(Negative(text=other.text, title=other.title, source=Source.llm))
    p = recs[0].positives[0]
    recs[0].negatives.append(Negative(text=p.text, title=p.title, doc_id=p.doc_id, source=Source.bm25))
    return recs


def _cfg(emb_cache, **kw) -> VerifyConfig:
    # perc_pos 0.8: with the bundled MiniLM, BM25 negatives of SciFact claims cross it often enough to flag some.
    return VerifyConfig(verifiers=["qrels", "embedding"], perc_pos=0.8, min_perc_pos=0.5, cache_dir=emb_cache, **kw)


@pytest.fixture(scope="module")
def dropped(records, beir, emb_cache):
    from negforge.synth.verifiers import verify_records

    return verify_records(records, beir, _cfg(emb_cache), show_progress=False)


def _flagged(r) -> list[Negative]:
    """Negatives the embedding rule rejected as probably relevant (not off-topic)."""
    return [
        n
        for n in r.negatives
        if n.verdict.status == Status.rejected
        and n.verdict.rule == "embedding"
        and not n.verdict.reason.startswith("off-topic")
    ]


def test_drop_is_the_default_and_flags_some_but_not_all(dropped, records):
    out, report = dropped
    assert VerifyConfig().fn_action == "drop"
    assert [len(r.negatives) for r in out] == [len(r.negatives) for r in records]
    assert [len(r.positives) for r in out] == [len(r.positives) for r in records]
    flagged = sum(len(_flagged(r)) for r in out)
    total = sum(len(r.negatives) for r in out)
    assert 0 < flagged < total // 2  # real cosines: some BM25 negatives look as relevant as the positive
    assert report.to_dict()["totals"]["bm25"]["likely_fn"] == flagged
    assert out[0].negatives[-1].verdict.rule == "qrels"  # the copy of the positive: rejected, not a likely FN
    drafts = [n for r in out for n in r.negatives if n.source == Source.llm]  # another query's positive
    assert sum(n.verdict.reason.startswith("off-topic") for n in drafts) >= len(drafts) // 2


def test_relabel_moves_exactly_the_flagged_negatives_into_the_positives(dropped, records, beir, emb_cache, tmp_path):
    from negforge.synth.verifiers import verify_records

    ref, _ = dropped
    out, report = verify_records(records, beir, _cfg(emb_cache, fn_action="relabel"), show_progress=False)
    assert report.relabelled == sum(len(_flagged(r)) for r in ref) > 0
    for r_in, r_ref, r in zip(records, ref, out):
        flagged = _flagged(r_ref)
        assert r.positives[: len(r_in.positives)] == r_in.positives
        moved = r.positives[len(r_in.positives) :]
        assert [(p.doc_id, p.text) for p in moved] == [(n.doc_id, n.text) for n in flagged]
        for p, n in zip(moved, flagged):
            rel = p.relabelled
            assert rel.rule == "embedding" and rel.source == Source.bm25
            assert rel.score == n.scores["embedding"] > 0.8 * n.scores["embedding_pos"] == 0.8 * rel.positive_score
            assert rel.reason == n.verdict.reason and rel.provenance.rank == n.provenance.rank
        # what is left: every other negative, with the same verdict as under drop (off-topic drafts, the copy)
        assert [(n.text, n.verdict) for n in r.negatives] == [
            (n.text, n.verdict) for n in r_ref.negatives if n not in flagged
        ]
    write_records(tmp_path / "v.jsonl", out)  # the provenance survives a round trip; plain positives stay plain
    back = read_records(tmp_path / "v.jsonl")
    assert back == out and '"relabelled": null' not in (tmp_path / "v.jsonl").read_text()
    assert "relabelled" not in out[0].positives[0].model_dump_json()


def test_relabel_adds_a_document_flagged_twice_once(dropped, records, beir, emb_cache):
    from negforge.synth.verifiers import verify_records

    ref, _ = dropped
    i = next(k for k, r in enumerate(ref) if _flagged(r))
    rec = records[i].model_copy(deep=True)
    n = next(x for x in rec.negatives if x.text == _flagged(ref[i])[0].text)
    rec.negatives.append(n.model_copy(update={"source": Source.dense}))  # the same doc, also from dense
    (out,), report = verify_records([rec], beir, _cfg(emb_cache, fn_action="relabel"), show_progress=False)
    assert [p.doc_id for p in out.positives].count(n.doc_id) == 1
    assert report.relabelled == len(_flagged(ref[i])) and n.doc_id not in {x.doc_id for x in out.negatives}


def test_drop_query_removes_queries_past_n_flagged(dropped, records, beir, emb_cache):
    from negforge.synth.verifiers import verify_records

    ref, _ = dropped
    counts = {r.id: len(_flagged(r)) for r in ref}
    n = sorted(counts.values())[len(counts) // 2]  # the median: some queries go, some stay
    out, report = verify_records(
        records, beir, _cfg(emb_cache, fn_action="drop_query", drop_query_over=n), show_progress=False
    )
    gone = [q for q, k in counts.items() if k > n]
    assert gone and len(gone) < len(records)
    assert report.dropped_queries == gone and [r.id for r in out] == [q for q in counts if q not in gone]
    kept = {r.id: r for r in ref}
    assert all(r == kept[r.id] for r in out)  # the surviving records are exactly as under drop
    assert report.to_dict()["dropped_queries"] == gone and "queries with too many" in report.table()


def test_relabelled_positive_reaches_the_multi_positive_loss(dropped, records, beir, emb_cache, encoder_path):
    """build_columns puts the relabelled passage in a positive slot with label 1, and JointLH's value moves
    when that slot is masked out: the loss trains on it."""
    from sentence_transformers import SentenceTransformer

    from negforge.synth.verifiers import verify_records
    from negforge.trainer.losses import build_loss
    from negforge.trainer.train import build_columns, dataset_loss

    out, _ = verify_records(records, beir, _cfg(emb_cache, fn_action="relabel"), show_progress=False)
    out = [r for r in out if any(p.relabelled for p in r.positives)]
    assert out
    cfg = TrainConfig(loss="jointlh", num_hard_negatives=1, max_positives=4)
    cols, stats = build_columns(out, cfg, multi_positive=True)
    assert stats.examples == len(out)
    for i, r in enumerate(out):
        for j, p in enumerate(r.positives[:4]):
            assert cols[f"positive_{j + 1}"][i] == p.full_text and cols["label"][i][j] == 1
        assert sum(cols["label"][i]) == min(4, len(r.positives))
    model = SentenceTransformer(encoder_path, device="cpu")
    loss = build_loss("jointlh", model)
    masked = {
        **cols,
        "label": [
            [0 if j < len(r.positives) and r.positives[j].relabelled else y for j, y in enumerate(row)]
            for r, row in zip(out, cols["label"])
        ],
    }
    assert any(sum(a) != sum(b) for a, b in zip(cols["label"], masked["label"]))
    assert dataset_loss(model, cols, loss) != pytest.approx(dataset_loss(model, masked, loss), abs=1e-4)
