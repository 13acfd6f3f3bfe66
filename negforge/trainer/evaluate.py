"""Retrieval quality on a BEIR split: nDCG@10, Recall@10, Recall@100 and MRR@10 (pytrec_eval).

Retrieval is exact inner product between the encoder's normalised query embeddings and its corpus
embeddings from :func:`negforge.mixers.embeddings.corpus_embeddings` (cached on disk per encoder and corpus).
A fine-tuned model folder gets its own cache entry, keyed also by its weight files (name, size,
mtime), so retraining into the same folder never reuses stale embeddings. Queries are those of
the split's qrels with at least one relevant (score > 0) document, as in sentence-transformers'
InformationRetrievalEvaluator. MRR@10 is trec_eval's ``recip_rank`` over the top-10 run.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any


from negforge.synth.config import EvalConfig
from negforge.synth.data import BeirData, Qrels
from negforge.synth.errors import InputError
from negforge.synth.models import bundled_encoder_path, resolve_encoder

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


def per_query_metrics(qrels: Qrels, run: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """{query id: {"ndcg@10", "recall@10", "recall@100", "mrr@10"}} for every query of ``qrels`` that has
    a relevant document; a query missing from ``run`` retrieves nothing (0 on every metric)."""
    import pytrec_eval

    qrels = {q: {d: int(s) for d, s in rels.items()} for q, rels in qrels.items() if any(s > 0 for s in rels.values())}
    if not qrels:
        raise InputError("the qrels have no relevant (score > 0) document: nothing to evaluate")
    run = {q: run.get(q, {}) for q in qrels}
    per_q = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.10", "recall.100"}).evaluate(run)
    top10 = {q: dict(sorted(docs.items(), key=lambda x: (-x[1], x[0]))[:10]) for q, docs in run.items()}
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    # pytrec_eval leaves out queries with an empty run; they score 0.
    out = {}
    for q in qrels:
        v, r = per_q.get(q, {}), rr.get(q, {})
        out[q] = {"ndcg@10": v.get("ndcg_cut_10", 0.0), "recall@10": v.get("recall_10", 0.0),
                  "recall@100": v.get("recall_100", 0.0), "mrr@10": r.get("recip_rank", 0.0)}
    return out


def metrics_from_run(qrels: Qrels, run: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean nDCG@10, Recall@10, Recall@100, MRR@10 over the queries of ``qrels`` that have a relevant
    document; a query missing from ``run`` counts as retrieving nothing (0 on every metric)."""
    per_q = per_query_metrics(qrels, run)
    return {m: sum(v[m] for v in per_q.values()) / len(per_q) for m in METRICS}


def retrieve(encoder: str, data: BeirData, cfg: EvalConfig, show_progress: bool = True,
             k: int = TOP_K) -> dict[str, dict[str, float]]:
    """Top-``k`` run {query id: {doc id: score}} for the split's queries that have a relevant doc."""
    from sentence_transformers import SentenceTransformer

    from negforge.mixers.dense import exact_search
    from negforge.mixers.embeddings import corpus_embeddings, encode_texts

    qids = [q for q, rels in data.qrels.items() if any(s > 0 for s in rels.values())]
    missing = [q for q in qids if q not in data.queries]
    if missing:
        raise InputError(f"{len(missing)} qrels queries have no text in queries.jsonl, e.g. {missing[0]!r}")
    # A fresh model, not the per-process cache: a folder retrained in this process must be re-read.
    model = SentenceTransformer(resolve_encoder(encoder))
    model.max_seq_length = cfg.max_seq_length
    docs = corpus_embeddings(data.corpus, encoder, embedding_cache_dir(encoder, cfg.cache_dir), cfg.batch_size,
                             cfg.max_seq_length, show_progress=show_progress, model=model)
    queries = encode_texts([data.queries[q] for q in qids], encoder, cfg.batch_size, model=model)
    scores, idx = exact_search(docs, queries, k)
    ids = data.corpus.ids
    return {q: {ids[i]: float(s) for s, i in zip(srow, irow)} for q, srow, irow in zip(qids, scores, idx)}


def evaluate_model(encoder: str, data: BeirData, cfg: EvalConfig, show_progress: bool = True) -> dict[str, float]:
    """nDCG@10, Recall@10, Recall@100 and MRR@10 of ``encoder`` (a path, a hub name or
    ``bundled:all-MiniLM-L6-v2``) on ``data`` (one BEIR split)."""
    run = retrieve(encoder, data, cfg, show_progress)
    metrics = metrics_from_run(data.qrels, run)
    log.info("%s on %d queries: %s", encoder, len(run), ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return metrics


def metrics_table(rows: dict[str, dict[str, Any]]) -> str:
    """A markdown table, one row per named metrics dict (e.g. {"base": {...}, "fine-tuned": {...}})."""
    lines = ["| model | " + " | ".join(METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
    for name, m in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{m[k]:.4f}" if k in m else "–" for k in METRICS) + " |")
    return "\n".join(lines)
