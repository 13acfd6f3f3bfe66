"""Miners on the real SciFact slice: BM25 against rank_bm25, dense windows, positives never mined."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from negforge.mixers.bm25 import BM25Index
from negforge.mixers.dense import dense_search, exact_search
from negforge.mixers.mine import mine_records
from negforge.synth.config import MineConfig
from negforge.synth.data import Dataset, corpus_from_records, load_beir, records_from_beir, records_from_flag_jsonl
from negforge.synth.errors import ConfigError, InputError
from negforge.synth.io import read_records
from negforge.synth.schema import Record, normalise_text


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
    out, report = mine_records(records, beir, cfg, show_progress=False)
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
    out, report = mine_records([rec], beir, cfg, show_progress=False)
    assert hidden not in {n.doc_id for n in out[0].negatives}
    assert report.miners["bm25"].removed["labelled_positive"] >= 1
    out, _ = mine_records([rec], Dataset(corpus=beir.corpus), cfg, show_progress=False)  # without qrels it is fair game
    assert hidden in {n.doc_id for n in out[0].negatives}


def test_positives_without_doc_ids_are_skipped_by_text(beir, records, tmp_path):
    path = tmp_path / "flag.jsonl"
    path.write_text(
        "".join(json.dumps({"query": r.query, "pos": [r.positives[0].full_text]}) + "\n" for r in records[:10])
    )
    flag = records_from_flag_jsonl(path)
    out, report = mine_records(
        flag, Dataset(corpus=beir.corpus), MineConfig(sources=["bm25"], num_negatives=4), show_progress=False
    )
    assert report.miners["bm25"].removed["positive_text"] >= 5
    for r in out:
        assert normalise_text(r.positives[0].text) not in {normalise_text(n.full_text) for n in r.negatives}
    # mining against the input's own passages (corpus_from_records) skips them by id as well
    pooled = corpus_from_records(flag)
    out, report = mine_records(
        flag, Dataset(corpus=pooled), MineConfig(sources=["bm25"], num_negatives=4, range_max=9), show_progress=False
    )
    assert report.miners["bm25"].mined > 0
    for r in out:
        assert not {n.doc_id for n in r.negatives} & r.positive_ids()


def test_random_sampling_is_seeded(beir, records):
    cfg = MineConfig(sources=["bm25"], num_negatives=3, range_max=30, sampling="random", seed=1)
    a, _ = mine_records(records, beir, cfg, show_progress=False)
    b, _ = mine_records(records, beir, cfg, show_progress=False)
    c, _ = mine_records(records, beir, cfg.model_copy(update={"seed": 2}), show_progress=False)
    ids = lambda recs: [[n.doc_id for n in r.negatives] for r in recs]  # noqa: E731
    assert ids(a) == ids(b) and ids(a) != ids(c)
    assert all(n.provenance.seed == 1 for r in a for n in r.negatives)


def test_rerun_adds_nothing_already_mined(beir, records):
    cfg = MineConfig(sources=["bm25"], num_negatives=3, range_max=30)
    once, _ = mine_records(records[:5], beir, cfg, show_progress=False)
    twice, report = mine_records(once, beir, cfg, show_progress=False)
    assert report.miners["bm25"].removed["already_mined"] >= 15
    for r in twice:
        ids = [n.doc_id for n in r.negatives]
        assert len(ids) == len(set(ids)) == 6


@pytest.mark.slow
def test_dense_respects_windows_and_positives(beir, records, emb_cache, encoder_path):
    from negforge.mixers.embeddings import corpus_embeddings, encode_texts

    cfg = MineConfig(
        sources=["dense"],
        num_negatives=4,
        range_min=2,
        range_max=20,
        max_score=0.6,
        relative_margin=0.05,
        cache_dir=emb_cache,
    )
    out, report = mine_records(records, beir, cfg, show_progress=False)
    stats = report.miners["dense"]
    assert stats.mined > 0 and stats.removed["labelled_positive"] > 0 and stats.removed["range_min"] > 0
    assert stats.removed["max_score"] + stats.removed["relative_margin"] > 0
    emb = corpus_embeddings(beir.corpus, cfg.encoder.model, emb_cache, show_progress=False)

    class NoModel:  # the cached matrix is reused: the encoder is never touched again
        def __getattr__(self, name):
            raise AssertionError(f"corpus re-encoded ({name})")

    again = corpus_embeddings(beir.corpus, cfg.encoder.model, emb_cache, show_progress=False, model=NoModel())
    assert isinstance(again, np.memmap) and again.mode == "r" and again.shape == (len(beir.corpus), 384)
    assert again.filename and Path(again.filename).stat().st_size == len(beir.corpus) * 384 * 4
    q = encode_texts([r.query for r in out], cfg.encoder.model, max_seq_length=cfg.encoder.max_seq_length)
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
    plain, _ = mine_records(
        records,
        beir,
        MineConfig(sources=["dense"], num_negatives=4, range_min=0, range_max=20, cache_dir=emb_cache),
        show_progress=False,
    )
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
    import negforge.mixers.dense as dense

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


def test_bf16_search_finds_the_exact_top_k(tmp_path, monkeypatch):
    import negforge.mixers.dense as dense

    monkeypatch.setattr(dense, "CHUNK_ROWS", 1500)  # several chunks, the last one short
    x = _clustered(5000, dim=64)
    mm = np.memmap(tmp_path / "e.f32", dtype=np.float32, mode="w+", shape=x.shape)
    mm[:] = x
    mm.flush()
    ro = np.memmap(tmp_path / "e.f32", dtype=np.float32, mode="r", shape=x.shape)
    q = x[:40] + 0.05
    scores, rows = dense.bf16_search(ro, q, 25)
    full = q @ x.T
    want = np.argsort(-full, axis=1, kind="stable")[:, :25]
    assert np.mean([len(set(a) & set(b)) / 25 for a, b in zip(rows, want)]) >= 0.99
    np.testing.assert_allclose(scores, np.take_along_axis(full, rows, 1), rtol=1e-5)  # exact fp32 scores
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    assert dense.choose_index(10, "auto", 100) == "flat"
    assert dense.choose_index(200_000, "auto", 10**6) == ("flat_bf16" if dense.bf16_native() else "flat")


def _status_mb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return None


@pytest.mark.parametrize("search", ["exact_search", "bf16_search"])
def test_exact_search_never_holds_a_second_copy(tmp_path, search):
    """Peak RSS during a flat search over a 200 MB memmap stays far below the matrix size."""
    import negforge.mixers.dense as dense

    n, dim = 400_000, 128
    path = tmp_path / "big.f32"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=(n, dim))
    rng = np.random.default_rng(0)
    for start in range(0, n, 50_000):
        mm[start : start + 50_000] = rng.standard_normal((50_000, dim), dtype=np.float32)
    mm.flush()
    del mm
    emb = np.memmap(path, dtype=np.float32, mode="r", shape=(n, dim))
    q = rng.standard_normal((64, dim), dtype=np.float32)
    import faiss  # noqa: F401 - the libraries' own pages are not the search's memory
    import torch  # noqa: F401

    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM (the peak) to the current RSS
    except OSError:
        pytest.skip("cannot reset the peak RSS counter here")
    before = _status_mb("VmRSS")
    scores, rows = getattr(dense, search)(emb, q, 20)
    peak = _status_mb("VmHWM") - before
    matrix_mb = n * dim * 4 / 2**20
    assert peak < 0.35 * matrix_mb, (peak, matrix_mb)  # one chunk of 65,536 rows is 32 MB
    best = int(np.argmax(np.asarray(emb[:50_000]) @ q[0]))
    assert rows[0, 0] == best or scores[0, 0] >= float(emb[best] @ q[0]) - 1e-4


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
        mine_records(records, beir, MineConfig(range_min=10, range_max=10))
    with pytest.raises(ConfigError, match="num_negatives"):
        mine_records(records, beir, MineConfig(num_negatives=9, range_min=0, range_max=5))
    with pytest.raises(ConfigError, match="valid: bm25, click, dense"):
        mine_records(records, beir, MineConfig(sources=["bm26"]))
    with pytest.raises(ConfigError, match=r"mine\.click\.log"):
        mine_records(records, beir, MineConfig(sources=["click"]))


def test_mine_cli(tiny_beir, tmp_path):
    from negforge.synth.cli import app

    out = tmp_path / "mined.jsonl"
    res = CliRunner().invoke(
        app,
        [
            "mine",
            "--input",
            str(tiny_beir),
            "--output",
            str(out),
            "--sources",
            "bm25",
            "--set",
            "num_negatives=3",
            "--set",
            f"mine.cache_dir={tmp_path}",
            "-q",
        ],
    )
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
    res = CliRunner().invoke(
        app,
        [
            "mine",
            "--input",
            str(out),
            "--output",
            str(tmp_path / "x.jsonl"),
            "--sources",
            "bm25",
            "--set",
            "range_min=60",
        ],
    )
    assert res.exit_code == 2 and "range_min" in res.output


# ---- click logs -------------------------------------------------------------------------------


def _imp(shown, clicks, qid=None, query=None):
    key = {"query_id": qid} if qid is not None else {"query": query}
    return {**key, "shown": [{"doc_id": d, "position": p} for p, d in enumerate(shown, 1)], "clicks": clicks}


def _click_setup(tmp_path):
    from negforge.synth.data import Corpus

    corpus = Corpus(
        ids=[f"d{i}" for i in range(1, 9)],
        titles=[""] * 8,
        texts=[f"document {i} about bones, vitamins and number {i}" for i in range(1, 9)],
    )
    long_ = lambda d: {"doc_id": d, "dwell_s": 30}  # noqa: E731
    lines = [
        _imp(["d1", "d2", "d3", "d4"], [long_("d3")], qid="1"),
        _imp(["d1", "d2", "d3", "d4", "d5"], [long_("d3"), {"doc_id": "d2", "dwell_s": 2}], qid="1"),  # d2: bounce
        _imp(["d1", "d2", "d3", "d4"], ["d3"], query="Vitamin D and bone density!"),  # by text, no dwell given
        _imp(["d3", "d6", "d7"], [long_("d3"), long_("d6")], qid="2"),
        _imp(["d3", "d6", "d7"], [long_("d3"), long_("d6")], qid="2"),
    ]
    path = tmp_path / "clicks.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    recs = [
        Record(id="1", query="vitamin D and bone density", positives=[corpus.passage("d3")]),
        Record(id="2", query="calcium intake and fractures", positives=[corpus.passage("d8")]),
    ]
    return corpus, recs, path


def test_click_miner_skips_related_dwell_and_min_impressions(tmp_path):
    corpus, recs, path = _click_setup(tmp_path)
    cfg = MineConfig(
        sources=["click"],
        num_negatives=5,
        range_max=10,
        click={"log": str(path), "propensities": [1.0, 0.5, 0.33, 0.25, 0.2], "min_impressions": 2},
    )
    out, report = mine_records(recs, Dataset(corpus=corpus), cfg, show_progress=False)
    negs = out[0].negatives_from("click")
    # d1, d2 shown above the click three times (d2's 2-second click is a bounce); d4 right below it,
    # seen with propensity 0.25 each time; d6 clicked for query 2, which shares the click on d3
    assert [n.doc_id for n in negs] == ["d1", "d2", "d4", "d6"]
    assert [n.provenance.extra["signal"] for n in negs] == ["skip_above", "skip_above", "skip_next", "related"]
    assert [n.scores["click"] for n in negs] == pytest.approx([3.0, 3.0, 0.75, 0.5])
    assert negs[3].provenance.extra["related_query"] == "id:2"
    assert [n.doc_id for n in out[1].negatives] == ["d7"]  # below both clicks of query 2
    removed = report.miners["click"].removed
    assert removed["min_impressions"] == 1  # d5 was shown once
    assert removed["clicked"] >= 3  # d3 for query 1, d3 and d6 for query 2
    assert "d3" not in {n.doc_id for r in out for n in r.negatives}
    # every click counts without the dwell rule: d2's click (1 of 3 views) makes it a clicked doc
    out, _ = mine_records(
        recs, Dataset(corpus=corpus), cfg, show_progress=False, miner_options={"click": {"min_dwell_s": 0}}
    )
    assert [n.doc_id for n in out[0].negatives] == ["d1", "d4", "d6"]
    # position bias: with a flatter examination curve, d4 (below the click) counts as seen more often
    flat_cfg = cfg.model_copy(update={"click": cfg.click.model_copy(update={"propensities": [1.0] * 5})})
    flat, _ = mine_records(recs, Dataset(corpus=corpus), flat_cfg, show_progress=False)
    assert {n.doc_id: n.scores["click"] for n in flat[0].negatives}["d4"] == pytest.approx(3.0)
    # the same through the config instead of miner_options
    strict_cfg = MineConfig.model_validate(
        {**cfg.model_dump(), "click": {**cfg.click.model_dump(), "min_impressions": 4}}
    )
    strict, rep = mine_records(recs, Dataset(corpus=corpus), strict_cfg, show_progress=False)
    assert [n.doc_id for n in strict[0].negatives] == [] and rep.miners["click"].removed["min_impressions"] > 1


def test_click_log_errors_name_file_and_line(tmp_path):
    from negforge.mixers.click import load_click_log

    bad = [
        ('{"shown": [{"doc_id": "a", "position": 1}]}', "query_id"),
        (json.dumps(_imp(["a"], ["b"], qid="1")), "clicked doc 'b' is not in 'shown'"),
        (json.dumps({"query_id": "1", "shown": [{"doc_id": "a", "position": 0}]}), "position"),
        ("{not json", "not valid JSON"),
    ]
    for i, (line, msg) in enumerate(bad):
        path = tmp_path / f"bad{i}.jsonl"
        path.write_text(json.dumps(_imp(["a"], [], qid="0")) + "\n" + line + "\n")
        with pytest.raises(InputError, match=f"bad{i}.jsonl:2") as e:
            load_click_log(path)
        assert msg in str(e.value)
    with pytest.raises(ConfigError, match="propensities"):
        corpus, recs, path = _click_setup(tmp_path)
        mine_records(
            recs,
            Dataset(corpus=corpus),
            MineConfig(sources=["click"], click_log=str(path), num_negatives=2, propensities=[1.0, 0.0]),
        )


def test_propensities_fitted_from_a_simulated_log(scifact_dir, tmp_path):
    from negforge.mixers.click import fit_propensities, load_click_log
    from negforge.mixers.clicklog_gen import ClickSim, generate_click_log

    sim = ClickSim(sessions_per_query=30, limit=100, eta=1.0, seed=0)
    stats = generate_click_log(load_beir(scifact_dir, "train"), tmp_path / "c.jsonl", sim, cache_dir=tmp_path)
    assert stats.impressions == 3000 and stats.relevant_clicks > stats.clicks / 2
    theta = fit_propensities(load_click_log(tmp_path / "c.jsonl"), min_dwell_s=10)
    np.testing.assert_allclose(theta[:4], 1 / np.arange(1, 5), atol=0.08)  # the simulator's 1 / position
    assert theta[0] > theta[1] > theta[2] > theta[4]
    clicks_by_pos = [stats.clicks_by_position.get(p, 0) for p in (1, 2, 3)]
    assert clicks_by_pos == sorted(clicks_by_pos, reverse=True)


def test_clicklog_and_click_mining_clis(tiny_beir, tmp_path):
    from negforge.synth.cli import app

    log_path = tmp_path / "clicks.jsonl"
    args = [
        "clicklog",
        "--data",
        str(tiny_beir),
        "--output",
        str(log_path),
        "--sessions",
        "15",
        "--cache-dir",
        str(tmp_path),
        "--seed",
        "3",
        "-q",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "wrote 300 impressions" in res.output
    first = log_path.read_text()
    assert CliRunner().invoke(app, args).exit_code == 0 and log_path.read_text() == first  # seeded
    rows = [json.loads(x) for x in first.splitlines()]
    assert all(c["doc_id"] in {s["doc_id"] for s in r["shown"]} for r in rows for c in r["clicks"])
    out = tmp_path / "mined.jsonl"
    res = CliRunner().invoke(
        app,
        [
            "mine",
            "--input",
            str(tiny_beir),
            "--output",
            str(out),
            "--sources",
            "click,bm25",
            "--click-log",
            str(log_path),
            "--set",
            "num_negatives=3",
            "--set",
            f"mine.cache_dir={tmp_path}",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    beir = load_beir(tiny_beir, "train")
    recs = read_records(out)
    clicked = [n for r in recs for n in r.negatives_from("click")]
    assert len(clicked) >= 20 and {n.provenance.extra["signal"] for n in clicked} >= {"skip_above", "skip_next"}
    for r in recs:
        assert not {n.doc_id for n in r.negatives} & _positive_ids(beir, r)
