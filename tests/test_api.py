"""The Python API at ``negforge``: lazy (``import negforge`` loads nothing heavy), the stages as
functions on a real SciFact slice, and ``mine_hard_negatives`` end to end with real BM25 and MiniLM."""

from __future__ import annotations

import subprocess
import sys

import pytest

import negforge

HEAVY = ("torch", "vllm", "faiss", "sentence_transformers", "bm25s", "transformers", "datasets")


def test_import_and_api_attributes_stay_light():
    code = (
        "import sys, negforge; f = negforge.mine_hard_negatives, negforge.mine, negforge.MineConfig; "
        f"print(sorted(set({HEAVY!r}) & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"heavy modules imported by the API's names: {out}"
    assert {"mine_hard_negatives", "read", "mine", "verify", "mix", "export", "to_dataset"} <= set(dir(negforge))
    assert negforge.mine_hard_negatives.__doc__ and "datasets.Dataset" in negforge.mine_hard_negatives.__doc__
    with pytest.raises(AttributeError, match="no attribute 'mine_hard_negativez'"):
        negforge.mine_hard_negativez  # noqa: B018


def test_stages_as_functions(tiny_beir, tmp_path):
    records, dataset = negforge.read(tiny_beir, limit=6)
    assert len(records) == 6 and dataset.qrels and len(dataset.corpus) > 200
    mined, rep = negforge.mine(records, dataset, sources=["bm25"], num_negatives=3, show_progress=False)
    assert rep.miners["bm25"].mined == 18 and all(len(r.negatives) == 3 for r in mined)
    assert all(not r.negatives for r in records)  # inputs untouched
    cfg = negforge.VerifyConfig(verifiers=["qrels"])
    verified, vrep = negforge.verify(mined, dataset, cfg, show_progress=False)
    assert vrep.kept == 18 and all(n.kept for r in verified for n in r.negatives)
    mixed, _ = negforge.mix(verified, None, {"k": 2, "ratios": {"bm25": 1.0}})
    assert all(len(r.negatives) == 2 for r in mixed)
    ds, erep = negforge.to_dataset(mixed, "flag")
    assert ds.column_names == ["query", "pos", "neg", "id"] and erep.records_written == 6
    assert negforge.export(mixed, "tevatron", tmp_path / "tev").files[-1].endswith("corpus.jsonl")
    # an explicit pool of texts instead of the dataset's corpus
    pool = [t for t in dataset.corpus.full_texts()[:50]]
    mined2, _ = negforge.mine(records, pool, sources=["bm25"], num_negatives=2, show_progress=False)
    assert all(n.full_text in pool for r in mined2 for n in r.negatives)
    with pytest.raises(negforge.ConfigError, match="config must be a MineConfig"):
        negforge.mine(records, dataset, cfg)


@pytest.mark.slow
def test_mine_hard_negatives_end_to_end_on_scifact(tiny_beir, tmp_path):
    """HF pairs of real SciFact claims and abstracts, real bm25s + MiniLM (dense miner and verifier)."""
    from datasets import Dataset

    records, data = negforge.read(tiny_beir)
    records = records[:12]
    pairs = Dataset.from_dict(
        {"claim": [r.query for r in records], "abstract": [r.positives[0].full_text for r in records]}
    )
    corpus = data.corpus.full_texts()
    opts = {"cache_dir": str(tmp_path / "emb")}
    train, recs, reports = negforge.mine_hard_negatives(
        pairs,
        corpus=corpus,
        columns={"query": "claim", "positive": "abstract"},
        sources=("bm25", "dense"),
        num_negatives=3,
        verify=True,
        mine_options=opts,
        verify_options=opts,
        return_records=True,
        show_progress=False,
    )
    mined = {k: s.mined for k, s in reports["mine"].miners.items()}
    assert set(mined) == {"bm25", "dense"} and min(mined.values()) >= 30  # up to 3 x 12 each
    assert reports["verify"].checked == sum(mined.values())
    n_cols = max(len([n for n in r.negatives if n.kept]) for r in recs)
    assert train.column_names == ["anchor", "positive", *(f"negative_{i}" for i in range(1, n_cols + 1)), "scores"]
    assert len(train) == reports["export"].records_written == sum(any(n.kept for n in r.negatives) for r in recs)
    texts = set(corpus)
    for row in train:
        negs = [row[f"negative_{i}"] for i in range(1, n_cols + 1)]
        assert row["positive"] not in negs and all(t in texts for t in negs)
        pos, *neg = row["scores"]  # the verifier's cosines: every kept negative under 0.95 x the positive's
        assert all(s <= 0.95 * pos + 1e-6 for s in neg)
    dropped = [n for r in recs for n in r.negatives if not n.kept]
    assert all(n.verdict.rule == "embedding" for n in dropped)
    # a BEIR folder: its qrels join the verifiers, the output is FlagEmbedding rows
    flag = negforge.mine_hard_negatives(
        tiny_beir,
        sources=["bm25"],
        num_negatives=2,
        output_format="bge",
        mine_options=opts,
        verify_options=opts,
        show_progress=False,
    )
    assert {"query", "pos", "neg", "pos_scores", "neg_scores"} <= set(flag.column_names) and len(flag) > 0


def test_web_corpus_pairs_to_tevatron(scifact_dir, tmp_path):
    """A second corpus (TREC DL 2019 web passages): its test queries as a TSV of pairs, mined against
    the passages with BM25, qrels-verified (judged zeros are not positives) and read back by Tevatron."""
    from consumer_loaders import TevatronTrainDataset

    trec = scifact_dir.parent / "trec-dl-2019"
    records, data = negforge.read(trec, split="test")
    assert len(records) == 43 and all(p.grade > 0 for r in records for p in r.positives)
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text(
        "qid\tquery\tpositive\n"
        + "".join(f"{r.id}\t{r.query}\t{p.full_text}\n" for r in records[:10] for p in r.positives[:3])
    )
    pairs, _ = negforge.read(tsv)
    assert [r.id for r in pairs] == [r.id for r in records[:10]] and all(len(r.positives) <= 3 for r in pairs)
    mined, _ = negforge.mine(pairs, data, sources=["bm25"], num_negatives=4, show_progress=False)
    verified, rep = negforge.verify(mined, data, verifiers=["qrels"], show_progress=False)
    assert rep.checked == 40 and rep.kept == 40  # mining already skips every qrels positive, not only the pairs' 3
    out = negforge.export(verified, "tevatron", tmp_path / "tev")
    ds = TevatronTrainDataset(
        tmp_path / "tev" / "train.jsonl", tmp_path / "hf", 4, corpus_path=tmp_path / "tev" / "corpus.jsonl"
    )
    assert len(ds) == out.records_written
    for i in range(len(ds)):
        query, texts, _ = ds[i]
        rels = data.qrels[ds.train_data[i]["query_id"]]
        ids = {t: d for d, t in zip(data.corpus.ids, data.corpus.full_texts())}
        assert all(rels.get(ids[t], 0) <= 0 for t in texts[1:])  # no judged-relevant passage as a negative


@pytest.mark.slow
def test_generate_through_the_local_server(tiny_beir, local_server, tmp_path):
    """negforge.generate with the bundled SmolLM2 server: the pure stage, then the resumable job
    (the second call is answered from the on-disk cache the first one wrote)."""
    from negforge.synth.config import LLMConfig
    from negforge.synth.params import GenParams

    records, _ = negforge.read(tiny_beir, limit=2)
    llm = LLMConfig(
        base_url=local_server.base_url,
        model="SmolLM2-135M-Instruct",
        concurrency=2,
        timeout_s=900,
        params=GenParams(max_tokens=200, temperature=0.7, seed=0),
    )
    opts = {"llm": llm, "num_negatives": 1, "max_prompt_words": 80, "cache_dir": str(tmp_path / "llm")}
    done, rep = negforge.generate(records, None, show_progress=False, **opts)
    assert [r.id for r in done] == [r.id for r in records] and rep.drafts == 2
    assert all(n.source == negforge.Source.llm for r in done for n in r.negatives)
    again, job = negforge.generate(records, None, opts, out_path=str(tmp_path / "gen.jsonl"), show_progress=False)
    assert [r.id for r in again] == [r.id for r in records]
    assert [[n.text for n in r.negatives] for r in again] == [[n.text for n in r.negatives] for r in done]
