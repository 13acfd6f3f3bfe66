"""Retrieval quality on a BEIR split: nDCG@10, Recall@10, Recall@100 and MRR@10, computed as BEIR does.

Retrieval is exact inner product between the encoder's normalised query embeddings and its corpus
embeddings from :func:`negforge.mixers.embeddings.corpus_embeddings` (cached on disk per encoder and corpus).
A fine-tuned model folder gets its own cache entry, keyed also by its weight files (name, size,
mtime), so retraining into the same folder never reuses stale embeddings.

What counts, as in BEIR's ``EvaluateRetrieval`` (pytrec_eval underneath):

* the queries are those of the split's qrels with at least one relevant (score > 0) document;
* nDCG uses the qrels grades as gains (grade 2 counts twice grade 1); a row with score 0 is a judged
  non-relevant document: it earns nothing and is not counted in any recall denominator;
* a retrieved document whose id equals the query's id is dropped from the ranking before the
  cut-offs (``EvalConfig.ignore_identical_ids``, default on; the top-k is filled from further down),
  which matters where queries are also corpus documents (BEIR's ArguAna, Quora);
* MRR@10 is trec_eval's ``recip_rank`` over the top-10 run.

``bench/bench_eval_agreement.py`` checks these figures against sentence-transformers'
InformationRetrievalEvaluator and ranx on the same embeddings.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from negforge.synth.config import EvalConfig
from negforge.synth.data import Dataset, Qrels
from negforge.synth.errors import InputError
from negforge.synth.models import bundled_encoder_path, resolve_encoder

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
TOP_K = 100
_WEIGHTS = ("*.safetensors", "*.bin", "*.pt")


def weights_fingerprint(encoder: str) -> str:
    """'' for the bundled model and hub names; for a local folder, a hash of its weight files'
    names, sizes and mtimes (changes whenever a model is saved there again)."""
    path = Path(resolve_encoder(encoder))
    try:
        bundled = Path(bundled_encoder_path())
    except ImportError:
        bundled = None
    if not path.is_dir() or (bundled is not None and path.resolve() == bundled.resolve()):
        return ""
    h = hashlib.sha1()
    for pattern in _WEIGHTS:
        for f in sorted(path.rglob(pattern)):
            st = f.stat()
            h.update(f"{f.relative_to(path)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]


def embedding_cache_dir(encoder: str, cache_dir: str | Path) -> Path:
    """Where the corpus embeddings of ``encoder`` are cached: ``cache_dir`` itself for the bundled
    model and hub names (shared with the miners), a ``w-<fingerprint>`` subfolder for a local folder."""
    fp = weights_fingerprint(encoder)
    return Path(cache_dir) / f"w-{fp}" if fp else Path(cache_dir)


def drop_identical_ids(run: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """``run`` without any document whose id equals its query's id (BEIR's ``ignore_identical_ids``)."""
    return {q: {d: s for d, s in docs.items() if d != q} for q, docs in run.items()}


def per_query_metrics(
    qrels: Qrels, run: dict[str, dict[str, float]], ignore_identical_ids: bool = True
) -> dict[str, dict[str, float]]:
    """{query id: {"ndcg@10", "recall@10", "recall@100", "mrr@10"}} for every query of ``qrels`` that has
    a relevant document; a query missing from ``run`` retrieves nothing (0 on every metric). Grades are
    the nDCG gains; rows with score <= 0 are judged non-relevant. With ``ignore_identical_ids`` a
    document whose id is the query's id is removed from the run first."""
    import pytrec_eval

    # pytrec_eval counts grade >= 1 as relevant; a negative grade (some TREC qrels) is non-relevant too.
    qrels = {
        q: {d: max(int(s), 0) for d, s in rels.items()}
        for q, rels in qrels.items()
        if any(s > 0 for s in rels.values())
    }
    if not qrels:
        raise InputError("the qrels have no relevant (score > 0) document: nothing to evaluate")
    if ignore_identical_ids:
        run = drop_identical_ids(run)
    run = {q: run.get(q, {}) for q in qrels}
    per_q = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.10", "recall.100"}).evaluate(run)
    top10 = {q: dict(sorted(docs.items(), key=lambda x: (-x[1], x[0]))[:10]) for q, docs in run.items()}
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    # pytrec_eval leaves out queries with an empty run; they score 0.
    out = {}
    for q in qrels:
        v, r = per_q.get(q, {}), rr.get(q, {})
        out[q] = {
            "ndcg@10": v.get("ndcg_cut_10", 0.0),
            "recall@10": v.get("recall_10", 0.0),
            "recall@100": v.get("recall_100", 0.0),
            "mrr@10": r.get("recip_rank", 0.0),
        }
    return out


def metrics_from_run(
    qrels: Qrels, run: dict[str, dict[str, float]], ignore_identical_ids: bool = True
) -> dict[str, float]:
    """Mean nDCG@10, Recall@10, Recall@100, MRR@10 over the queries of ``qrels`` that have a relevant
    document; a query missing from ``run`` counts as retrieving nothing (0 on every metric)."""
    per_q = per_query_metrics(qrels, run, ignore_identical_ids)
    return {m: sum(v[m] for v in per_q.values()) / len(per_q) for m in METRICS}


def retrieve(
    encoder: str, data: Dataset, cfg: EvalConfig, show_progress: bool = True, k: int = TOP_K
) -> dict[str, dict[str, float]]:
    """Top-``k`` run {query id: {doc id: score}} for the split's queries that have a relevant doc."""
    from negforge.mixers.embeddings import corpus_embeddings, encode_texts, get_encoder

    qrels, corpus = data.need_qrels("eval"), data.need_corpus("eval")
    qids = [q for q, rels in qrels.items() if any(s > 0 for s in rels.values())]
    missing = [q for q in qids if q not in data.queries]
    if missing:
        raise InputError(f"{len(missing)} qrels queries have no text in queries.jsonl, e.g. {missing[0]!r}")
    # A fresh model, not the per-process cache: a folder retrained in this process must be re-read
    # (with backend onnx/openvino, the fine-tuned folder is exported here, once per content).
    # eval.encoder: max_seq_length, batch_size, cache_dir, runtime (``encoder`` is the model evaluated)
    enc = cfg.encoder
    model = get_encoder(encoder, enc.max_seq_length, enc.backend, enc.precision, enc.cache_dir, fresh=True)
    docs = corpus_embeddings(
        corpus,
        encoder,
        embedding_cache_dir(encoder, enc.cache_dir),
        enc.batch_size,
        enc.max_seq_length,
        show_progress=show_progress,
        model=model,
        backend=enc.backend,
        precision=enc.precision,
        processes=enc.processes,
    )
    queries = encode_texts([data.queries[q] for q in qids], encoder, enc.batch_size, model=model)
    return run_from_embeddings(qids, queries, corpus.ids, docs, k, cfg.ignore_identical_ids)


def run_from_embeddings(
    qids: list[str],
    queries: np.ndarray,
    doc_ids: list[str],
    docs: np.ndarray,
    k: int = TOP_K,
    ignore_identical_ids: bool = True,
) -> dict[str, dict[str, float]]:
    """Top-``k`` run {query id: {doc id: score}} by exact inner product. With ``ignore_identical_ids``
    one more document is retrieved and the query's own id dropped, so every query still gets ``k``."""
    from negforge.mixers.dense import exact_search

    scores, idx = exact_search(docs, queries, k + 1 if ignore_identical_ids else k)
    run = {}
    for q, srow, irow in zip(qids, scores, idx):
        hits = [
            (doc_ids[i], float(s))
            for s, i in zip(srow, irow)
            if i >= 0 and not (ignore_identical_ids and doc_ids[i] == q)
        ]
        run[q] = dict(hits[:k])
    return run


def evaluate_model(encoder: str, data: Dataset, cfg: EvalConfig, show_progress: bool = True) -> dict[str, float]:
    """nDCG@10, Recall@10, Recall@100 and MRR@10 of ``encoder`` (a path, a hub name or
    ``bundled:all-MiniLM-L6-v2``) on ``data`` (one BEIR split)."""
    run = retrieve(encoder, data, cfg, show_progress)
    metrics = metrics_from_run(data.need_qrels("eval"), run, cfg.ignore_identical_ids)
    log.info("%s on %d queries: %s", encoder, len(run), ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return metrics


def metrics_table(rows: dict[str, dict[str, Any]]) -> str:
    """A markdown table, one row per named metrics dict (e.g. {"base": {...}, "fine-tuned": {...}})."""
    lines = ["| model | " + " | ".join(METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
    for name, m in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{m[k]:.4f}" if k in m else "–" for k in METRICS) + " |")
    return "\n".join(lines)
