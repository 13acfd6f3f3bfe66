"""Evaluation as BEIR does it: identical ids ignored, graded gains, judged-0 rows never positive.

The score-0 checks run on TREC DL 2019 (../shared/data/trec-dl-2019), whose qrels hold 5,158 real
judged-not-relevant rows, through every stage that reads qrels: input, mining, verification, evaluation.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from negforge.synth.config import EvalConfig, MineConfig, VerifyConfig
from negforge.synth.data import load_beir, records_from_beir
from negforge.trainer.evaluate import (
    metrics_from_run,
    per_query_metrics,
    run_from_embeddings,
)

TREC = Path(__file__).resolve().parents[2] / "shared" / "data" / "trec-dl-2019"


@pytest.fixture(scope="module")
def trec():
    if not (TREC / "corpus.jsonl").is_file():
        pytest.fail(f"TREC DL 2019 not found at {TREC}: the tests need ../shared/data/trec-dl-2019")
    return load_beir(TREC, "test")


def test_graded_gains_and_zero_rows_in_metrics():
    qrels = {"q1": {"a": 2, "b": 1, "z": 0}, "q2": {"z": 0}}
    per_q = per_query_metrics(qrels, {"q1": {"z": 0.9, "b": 0.8, "a": 0.7}})
    assert set(per_q) == {"q1"}  # q2 has only a judged-0 document: nothing to evaluate
    dcg = 1 / math.log2(3) + 2 / math.log2(4)  # z earns nothing at rank 1; b (1) at 2, a (2) at 3
    idcg = 2 + 1 / math.log2(3)
    assert per_q["q1"]["ndcg@10"] == pytest.approx(dcg / idcg)
    assert per_q["q1"]["mrr@10"] == pytest.approx(0.5)  # the judged-0 doc at rank 1 is not a hit
    assert per_q["q1"]["recall@10"] == 1.0  # 2 relevant docs, both found: z is not in the denominator


def test_identical_ids_dropped_from_runs_and_embeddings():
    qrels = {"q1": {"d1": 1}}
    run = {"q1": {"q1": 0.99, "d1": 0.5}}
    assert metrics_from_run(qrels, run)["mrr@10"] == 1.0
    assert metrics_from_run(qrels, run, ignore_identical_ids=False)["mrr@10"] == 0.5

    rng = np.random.default_rng(0)
    docs = rng.normal(size=(30, 8)).astype("float32")
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)  # unit vectors: a document is its own best match
    ids = [f"d{i}" for i in range(30)]
    ids[3] = "q"  # the query is itself document 3 of the corpus
    on = run_from_embeddings(["q"], docs[[3]], ids, docs, k=5)
    off = run_from_embeddings(["q"], docs[[3]], ids, docs, k=5, ignore_identical_ids=False)
    assert list(off["q"])[0] == "q" and "q" not in on["q"] and len(on["q"]) == 5
    assert list(on["q"]) == list(off["q"])[1:] + [list(on["q"])[-1]]  # the 6th doc fills the gap


def _queries_are_documents(src: Path, dst: Path, n_docs: int = 80, n_queries: int = 12) -> Path:
    """A BEIR folder in the ArguAna shape: every query is a corpus document under the same id, with the
    same text; qrels are written later by the test."""
    lines = (src / "corpus.jsonl").read_text().splitlines()[:n_docs]
    (dst / "qrels").mkdir(parents=True)
    (dst / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    docs = [json.loads(x) for x in lines]
    (dst / "queries.jsonl").write_text(
        "".join(
            json.dumps({"_id": d["_id"], "text": f"{d['title']} {d['text']}".strip()}) + "\n" for d in docs[:n_queries]
        )
    )
    return dst


@pytest.mark.slow
def test_beir_folder_whose_queries_are_corpus_documents(scifact_dir, encoder_path, tmp_path):
    from negforge.trainer.evaluate import evaluate_model, retrieve

    folder = _queries_are_documents(scifact_dir, tmp_path / "self-beir")
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n"
        + "".join(
            f"{json.loads(x)['_id']}\tplaceholder\t1\n" for x in (folder / "queries.jsonl").read_text().splitlines()
        )
    )
    cfg = EvalConfig(encoder=encoder_path, max_seq_length=128, cache_dir=str(tmp_path / "cache"))
    off_cfg = cfg.model_copy(update={"ignore_identical_ids": False})
    data = load_beir(folder, "test")
    off = retrieve(encoder_path, data, off_cfg, show_progress=False, k=10)
    assert all(list(docs)[0] == q for q, docs in off.items())  # each query finds itself first
    # judge the best *other* document relevant, as an ArguAna counter-argument would be
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{list(docs)[1]}\t1\n" for q, docs in off.items())
    )
    data = load_beir(folder, "test")
    on_run = retrieve(encoder_path, data, cfg, show_progress=False, k=10)
    assert all(q not in docs and len(docs) == 10 for q, docs in on_run.items())
    on = evaluate_model(encoder_path, data, cfg, show_progress=False)
    assert on["mrr@10"] == 1.0 and on["ndcg@10"] == 1.0
    off_m = evaluate_model(encoder_path, data, off_cfg, show_progress=False)
    assert off_m["mrr@10"] == pytest.approx(0.5) and off_m["ndcg@10"] == pytest.approx(1 / math.log2(3))


def test_score_zero_rows_never_positives_in_records(trec):
    zeros = {(q, d) for q, rels in trec.qrels.items() for d, s in rels.items() if s == 0}
    assert len(zeros) == 5158  # the real judged-not-relevant rows of TREC DL 2019
    records = records_from_beir(trec)
    assert len(records) == 43
    for r in records:
        rels = trec.qrels[r.id]
        assert r.positive_ids() == {d for d, s in rels.items() if s > 0}
        assert all(p.grade == rels[p.doc_id] and p.grade >= 1 for p in r.positives)
        assert not any((r.id, p.doc_id) in zeros for p in r.positives)


def test_score_zero_rows_are_negatives_not_positives_in_mining_and_verification(trec):
    from negforge.mixers.mine import mine_records
    from negforge.synth.verifiers import verify_records

    records = records_from_beir(trec)[:10]
    cfg = MineConfig(sources=["bm25"], num_negatives=20, range_max=60)
    mined, report = mine_records(records, trec, cfg, show_progress=False)
    judged_zero = 0
    for r in mined:
        for n in r.negatives:
            grade = trec.qrels[r.id].get(n.doc_id)
            assert grade is None or grade <= 0, f"{n.doc_id} is relevant ({grade}) for {r.id}"
            judged_zero += grade == 0
    assert judged_zero > 50  # judged-0 docs are fine negatives: mining keeps them
    assert report.miners["bm25"].removed["labelled_positive"] > 0

    # verification: a judged-0 doc stays a negative; a doc graded >= 1 planted as a negative is rejected
    r = mined[0]
    zero = next(n for n in r.negatives if trec.qrels[r.id].get(n.doc_id) == 0)
    rel_id = next(d for d, s in trec.qrels[r.id].items() if s >= 1)
    planted = zero.model_copy(update={"doc_id": rel_id, "text": trec.corpus.passage(rel_id).text}, deep=True)
    probe = r.model_copy(update={"positives": r.positives[:1], "negatives": [zero, planted]})
    out, _ = verify_records([probe], trec, VerifyConfig(verifiers=["qrels"]), show_progress=False)
    kept, rejected = out[0].negatives
    assert kept.kept and kept.scores["qrels"] == 0.0
    assert not rejected.kept and "relevant" in rejected.verdict.reason


NFCORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "nfcorpus"


@pytest.fixture(scope="module")
def nf_test_run():
    """NFCorpus test qrels (graded 1-2) and a seeded random top-100 run that mixes relevant and other docs."""
    from negforge.synth.data import load_qrels

    qrels = load_qrels(NFCORPUS / "qrels" / "test.tsv")
    docs = sorted({d for r in qrels.values() for d in r})
    rng = np.random.default_rng(0)
    run = {}
    for q, rels in qrels.items():
        cand = list(
            dict.fromkeys(
                [
                    *rng.choice(list(rels), size=min(15, len(rels)), replace=False),
                    *rng.choice(docs, size=100, replace=False),
                ]
            )
        )[:100]
        run[q] = {d: float(s) for d, s in zip(cand, rng.random(len(cand)))}
    return qrels, run


def test_graded_metrics_equal_ranx_on_nfcorpus_qrels(nf_test_run):
    ranx = pytest.importorskip("ranx", reason="ranx is the graded reference (pip install ranx)")
    qrels, run = nf_test_run
    ours = metrics_from_run(qrels, run)
    graded = {q: {d: s for d, s in r.items() if s > 0} for q, r in qrels.items()}
    ref = ranx.evaluate(ranx.Qrels(graded), ranx.Run(run), ["ndcg@10", "recall@100", "mrr@10"])
    assert {s for r in qrels.values() for s in r.values()} == {1, 2}
    for m in ("ndcg@10", "recall@100", "mrr@10"):
        assert ours[m] == pytest.approx(float(ref[m]), abs=1e-6), m


def test_binary_metrics_equal_sentence_transformers_on_nfcorpus_qrels(nf_test_run):
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    qrels, run = nf_test_run
    binary = {q: {d: 1 for d, s in r.items() if s > 0} for q, r in qrels.items()}
    ours = metrics_from_run(binary, run)
    qids = sorted(binary)
    ir = InformationRetrievalEvaluator(
        queries={q: q for q in qids},
        corpus={d: d for r in run.values() for d in r},
        relevant_docs={q: set(binary[q]) for q in qids},
        mrr_at_k=[10],
        ndcg_at_k=[10],
        accuracy_at_k=[1],
        precision_recall_at_k=[100],
        map_at_k=[100],
    )
    st = ir.compute_metrics([[{"corpus_id": d, "score": s} for d, s in run[q].items()] for q in qids])
    assert ours["ndcg@10"] == pytest.approx(st["ndcg@k"][10], abs=1e-6)
    assert ours["recall@100"] == pytest.approx(st["recall@k"][100], abs=1e-6)
    assert ours["mrr@10"] == pytest.approx(st["mrr@k"][10], abs=1e-6)
    assert metrics_from_run(qrels, run)["ndcg@10"] != pytest.approx(ours["ndcg@10"], abs=1e-4)  # grades matter
