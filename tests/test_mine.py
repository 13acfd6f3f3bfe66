"""Miners on the real SciFact slice: BM25 against rank_bm25, dense windows, positives never mined."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mixers.bm25 import BM25Index
from mixers.dense import dense_search, exact_search
from mixers.mine import mine_records
from synth.config import MineConfig
from synth.data import corpus_from_records, load_beir, records_from_beir, records_from_flag_jsonl
from synth.errors import ConfigError
from synth.io import read_records
from synth.schema import Passage, Record, normalise_text


@pytest.fixture(scope="module")
def beir(tiny_beir):
    return load_beir(tiny_beir, "train")


@pytest.fixture(scope="module")
def records(beir):
    return records_from_beir(beir)


@pytest.fixture(scope="module")
def emb_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("emb"))


def _positive_ids(beir, r):
    return {d for d, s in beir.qrels.get(r.id, {}).items() if s > 0} | r.positive_ids()


@pytest.mark.parametrize("method,min_overlap", [("robertson", 0.99), ("lucene", 0.85)])
def test_bm25_agrees_with_rank_bm25(beir, records, method, min_overlap):
    from rank_bm25 import BM25Okapi

    index = BM25Index(beir.corpus, cache_dir=None, method=method, show_progress=False)
    ref = BM25Okapi([index.tokenizer(t) for t in beir.corpus.full_texts()], k1=1.5, b=0.75)
    scores, rows = index.search([r.query for r in records], 10)
    overlaps = []
    for r, row, sc in zip(records, rows, scores):
        want = ref.get_scores(index.tokenizer(r.query))
        hits = row[row >= 0]
        top = [i for i in np.argsort(-want, kind="stable")[:10] if want[i] > 0]
        overlaps.append(len(set(top) & set(hits.tolist())) / max(1, len(top)))
        assert len(hits) == len(top)  # same number of documents sharing a term (up to 10)
        if method == "robertson":  # same formula up to rank_bm25's constant (k1 + 1) factor
            np.testing.assert_allclose(want[hits], sc[: len(hits)] * 2.5, rtol=1e-4)
    assert np.mean(overlaps) >= min_overlap, overlaps


def test_bm25_index_is_cached_and_reused(beir, records, tmp_path):
    first = BM25Index(beir.corpus, cache_dir=tmp_path, show_progress=False)
    assert first.path.is_dir() and (first.path / "params.index.json").is_file()
    again = BM25Index(beir.corpus, cache_dir=tmp_path, show_progress=False)
    q = [r.query for r in records[:5]]
    np.testing.assert_array_equal(first.search(q, 20)[1], again.search(q, 20)[1])
    other = BM25Index(beir.corpus, cache_dir=tmp_path, k1=1.2, show_progress=False)
    assert other.path != first.path  # BM25 parameters are part of the key


def test_bm25_never_mines_a_labelled_positive(beir, records):
    cfg = MineConfig(sources=["bm25"], num_negatives=5, range_max=30)
    out, report = mine_records(records, beir.corpus, cfg, beir.qrels, show_progress=False)
    stats = report.miners["bm25"]
    assert stats.removed["labelled_positive"] > 0  # positives were in the rankings and were skipped
    for r in out:
        negs = r.negatives_from("bm25")
        assert 0 < len(negs) <= 5
        assert not {n.doc_id for n in negs} & _positive_ids(beir, r)
        assert [n.provenance.rank for n in negs] == sorted(n.provenance.rank for n in negs)
        assert all(n.scores["bm25"] > 0 for n in negs)
    assert stats.mined == sum(len(r.negatives) for r in out)
    assert "labelled_positive" in report.table() and report.to_dict()["miners"]["bm25"]["mined"] == stats.mined


def test_qrels_positive_missing_from_record_is_still_skipped(beir, records):
    r = next(r for r in records if len(r.positives) == 1)
    hidden = r.positives[0].doc_id
    # a record that lists another document as its positive: only the qrels know `hidden` is relevant
    other = next(d for d in beir.corpus.ids if d not in beir.qrels[r.id])
    rec = Record(id=r.id, query=beir.corpus.passage(hidden).text[:200], positives=[beir.corpus.passage(other)])
    cfg = MineConfig(sources=["bm25"], num_negatives=10, range_max=40)
    out, report = mine_records([rec], beir.corpus, cfg, beir.qrels, show_progress=False)
    assert hidden not in {n.doc_id for n in out[0].negatives}
    assert report.miners["bm25"].removed["labelled_positive"] >= 1
    out, _ = mine_records([rec], beir.corpus, cfg, None, show_progress=False)  # without qrels it is fair game
    assert hidden in {n.doc_id for n in out[0].negatives}


def test_positives_without_doc_ids_are_skipped_by_text(beir, records, tmp_path):
    path = tmp_path / "flag.jsonl"
    path.write_text("".join(json.dumps({"query": r.query, "pos": [r.positives[0].full_text]}) + "\n"
                            for r in records[:10]))
    flag = records_from_flag_jsonl(path)
    out, report = mine_records(flag, beir.corpus, MineConfig(sources=["bm25"], num_negatives=4), None,
                               show_progress=False)
    assert report.miners["bm25"].removed["positive_text"] >= 5
    for r in out:
        assert normalise_text(r.positives[0].text) not in {normalise_text(n.full_text) for n in r.negatives}
    # mining against the input's own passages (corpus_from_records) skips them by id as well
    pooled = corpus_from_records(flag)
    out, report = mine_records(flag, pooled, MineConfig(sources=["bm25"], num_negatives=4, range_max=9), None,
                               show_progress=False)
    assert report.miners["bm25"].mined > 0
    for r in out:
        assert not {n.doc_id for n in r.negatives} & r.positive_ids()


def test_random_sampling_is_seeded(beir, records):
    cfg = MineConfig(sources=["bm25"], num_negatives=3, range_max=30, sampling="random", seed=1)
    a, _ = mine_records(records, beir.corpus, cfg, beir.qrels, show_progress=False)
    b, _ = mine_records(records, beir.corpus, cfg, beir.qrels, show_progress=False)
    c, _ = mine_records(records, beir.corpus, cfg.model_copy(update={"seed": 2}), beir.qrels, show_progress=False)
    ids = lambda recs: [[n.doc_id for n in r.negatives] for r in recs]  # noqa: E731
    assert ids(a) == ids(b) and ids(a) != ids(c)
    assert all(n.provenance.seed == 1 for r in a for n in r.negatives)


def test_rerun_adds_nothing_already_mined(beir, records):
    cfg = MineConfig(sources=["bm25"], num_negatives=3, range_max=30)
    once, _ = mine_records(records[:5], beir.corpus, cfg, beir.qrels, show_progress=False)
    twice, report = mine_records(once, beir.corpus, cfg, beir.qrels, show_progress=False)
    assert report.miners["bm25"].removed["already_mined"] >= 15
    for r in twice:
        ids = [n.doc_id for n in r.negatives]
        assert len(ids) == len(set(ids)) == 6


@pytest.mark.slow
def test_dense_respects_windows_and_positives(beir, records, emb_cache, encoder_path):
    from mixers.embeddings import corpus_embeddings, encode_texts

    cfg = MineConfig(sources=["dense"], num_negatives=4, range_min=2, range_max=20, max_score=0.6,
                     relative_margin=0.05, cache_dir=emb_cache)
    out, report = mine_records(records, beir.corpus, cfg, beir.qrels, show_progress=False)
    stats = report.miners["dense"]
    assert stats.mined > 0 and stats.removed["labelled_positive"] > 0 and stats.removed["range_min"] > 0
    assert stats.removed["max_score"] + stats.removed["relative_margin"] > 0
    emb = corpus_embeddings(beir.corpus, cfg.encoder, emb_cache, show_progress=False)
    q = encode_texts([r.query for r in out], cfg.encoder, max_seq_length=256)
    for qi, r in zip(q, out):
        negs = r.negatives_from("dense")
        assert not {n.doc_id for n in negs} & _positive_ids(beir, r)
        pos = min(float(emb[beir.corpus.index(p.doc_id)] @ qi) for p in r.positives)
        for n in negs:
            s = n.scores["dense"]
            assert s <= 0.6 + 1e-6 and s <= pos - abs(pos) * 0.05 + 1e-6
            assert abs(float(emb[beir.corpus.index(n.doc_id)] @ qi) - s) < 1e-4
            assert 2 <= n.provenance.extra["window_rank"] < 20
    # without filters, the kept ones are exactly the survivors ranked range_min.. by score
    plain, _ = mine_records(records, beir.corpus, MineConfig(sources=["dense"], num_negatives=4, range_min=0,
                                                             range_max=20, cache_dir=emb_cache), beir.qrels,
                            show_progress=False)
    for qi, r in zip(q, plain):
        pos_ids = _positive_ids(beir, r)
        order = [beir.corpus.ids[i] for i in np.argsort(-(np.asarray(emb) @ qi), kind="stable")]
        assert [n.doc_id for n in r.negatives] == [d for d in order if d not in pos_ids][:4]


def _clustered(n, dim=32, centers=40, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centers, dim)).astype(np.float32)
    x = c[rng.integers(0, centers, n)] + 0.3 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_search_over_a_memmap_matches_numpy(tmp_path, monkeypatch):
    import mixers.dense as dense

    monkeypatch.setattr(dense, "CHUNK_ROWS", 700)  # several chunks, the last one short
    x = _clustered(3000)
    mm = np.memmap(tmp_path / "e.f32", dtype=np.float32, mode="w+", shape=x.shape)
    mm[:] = x
    mm.flush()
    ro = np.memmap(tmp_path / "e.f32", dtype=np.float32, mode="r", shape=x.shape)
    q = x[:25] + 0.01
    scores, rows = exact_search(ro, q, 15)
    want = np.argsort(-(x @ q.T), axis=0, kind="stable")[:15].T
    np.testing.assert_allclose(scores, np.take_along_axis(x @ q.T, want.T, 0).T, rtol=1e-5)
    assert (rows == want).mean() > 0.99  # ties aside


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_ann_indexes_find_the_exact_neighbours(tmp_path, kind):
    x = _clustered(6000)
    mm = np.memmap(tmp_path / "e.f32", dtype=np.float32, mode="w+", shape=x.shape)
    mm[:] = x
    mm.flush()
    ro = np.memmap(tmp_path / "e.f32", dtype=np.float32, mode="r", shape=x.shape)
    q = x[:50]
    _, exact = dense_search(ro, q, 10, "flat")
    _, approx = dense_search(ro, q, 10, kind)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, approx)])
    assert recall >= 0.8, recall
    assert (tmp_path / f"e.f32.{kind}.faiss").is_file()  # built once, reused next time
    _, again = dense_search(ro, q, 10, kind)
    np.testing.assert_array_equal(approx, again)
    assert dense_search(ro, q, 10, "auto", ann_threshold=100)[1].shape == (50, 10)


def test_config_errors_name_the_fix(beir, records):
    with pytest.raises(ConfigError, match="range_min"):
        mine_records(records, beir.corpus, MineConfig(range_min=10, range_max=10), beir.qrels)
    with pytest.raises(ConfigError, match="num_negatives"):
        mine_records(records, beir.corpus, MineConfig(num_negatives=9, range_min=0, range_max=5), beir.qrels)
    with pytest.raises(ConfigError, match="valid: bm25, click, dense"):
        mine_records(records, beir.corpus, MineConfig(sources=["bm26"]), beir.qrels)
    with pytest.raises(ConfigError, match="click_log"):
        mine_records(records, beir.corpus, MineConfig(sources=["click"]), beir.qrels)


def test_mine_cli(tiny_beir, tmp_path):
    from synth.cli import app

    out = tmp_path / "mined.jsonl"
    res = CliRunner().invoke(app, ["mine", "--input", str(tiny_beir), "--output", str(out), "--sources", "bm25",
                                   "--set", "num_negatives=3", "--set", f"mine.cache_dir={tmp_path}", "-q"])
    assert res.exit_code == 0, res.output
    assert "labelled_positive" in res.output
    recs = read_records(out)
    assert len(recs) == 20 and all(1 <= len(r.negatives) <= 3 for r in recs)
    # a query gets fewer than 3 only when fewer than 3 non-positive documents share a term with it
    beir = load_beir(tiny_beir, "train")
    index = BM25Index(beir.corpus, cache_dir=None, show_progress=False)
    _, rows = index.search([r.query for r in recs], 50)
    for r, row in zip(recs, rows):
        matches = {beir.corpus.ids[i] for i in row if i >= 0} - _positive_ids(beir, r)
        assert len(r.negatives) == min(3, len(matches)), (r.id, r.query)
    assert sum(len(r.negatives) < 3 for r in recs) >= 1  # "5'-nucleotidase metabolizes 6MP." matches 1 doc
    res = CliRunner().invoke(app, ["mine", "--input", str(out), "--output", str(tmp_path / "x.jsonl"),
                                   "--sources", "bm25", "--set", "range_min=60"])
    assert res.exit_code == 2 and "range_min" in res.output
