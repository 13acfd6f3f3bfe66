"""Dense mining: a sentence-transformers encoder, corpus embeddings cached as a memmap, faiss search.

Memory stays linear in the corpus with at most one float32 copy of the embeddings:

* ``flat`` (exact inner product, what ``IndexFlatIP`` computes) scans the memmap in row chunks,
  scores (query batch × block) tiles with BLAS and merges the per-chunk top-k: no index, no copy;
* ``ivf`` (``IndexIVFFlat``, trained on a sample) and ``hnsw`` (``IndexHNSWFlat``) are filled
  chunk by chunk: the index holds the one copy. Built indexes are saved next to the
  embeddings cache and reused;
* ``flat_bf16``: the exact top-k by fp32 inner product, found faster: a bf16 pass over the chunks
  (torch; 3x the fp32 matmul rate on CPUs with native bf16) keeps the ``k + max(32, k)`` best rows
  per query, whose fp32 scores are then computed exactly and sorted. A row of the true top-k is
  missed only if bf16 rounding (~0.4% of a score) moves it below that margin;
* ``auto`` = ``flat`` below 100k documents, ``flat_bf16`` (CPUs with native bf16: AVX512-BF16 /
  AMX; else ``flat``) up to ``ann_threshold``, ``ivf`` above.

After each chunk the memmap pages just read are dropped from this process (``madvise``), so
the resident set does not grow into a second copy (the OS page cache still keeps them warm).
"""

from __future__ import annotations

import logging
import math
import mmap
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from negforge.synth.data import Corpus
from negforge.synth.errors import ConfigError
from negforge.synth.schema import Record, Source

log = logging.getLogger(__name__)

CHUNK_ROWS = 65536
BF16_MIN_DOCS = 100_000  # index=auto: below this, flat (the bf16 pass needs torch, ~200 MB more resident)


def _drop_pages(emb: np.ndarray, start: int, stop: int) -> None:
    """Release the resident pages of rows [start, stop) of a read-only memmap (no-op otherwise)."""
    mm = getattr(emb, "_mmap", None)
    if mm is None or not hasattr(mm, "madvise") or emb.flags.writeable:
        return
    row = emb.strides[0]
    page = mmap.PAGESIZE
    begin = (int(getattr(emb, "offset", 0)) + start * row) // page * page
    end = int(getattr(emb, "offset", 0)) + stop * row
    try:
        mm.madvise(mmap.MADV_DONTNEED, begin, max(0, min(end, len(mm)) - begin))
    except (OSError, ValueError):
        pass


def _chunks(n: int, size: int = CHUNK_ROWS):
    for start in range(0, n, size):
        yield start, min(n, start + size)


def _merge_top(best_s: np.ndarray, best_i: np.ndarray, s: np.ndarray, i: np.ndarray, k: int):
    """The k best of (best, new) per row, unordered (argpartition)."""
    all_s, all_i = np.concatenate([best_s, s], 1), np.concatenate([best_i, i], 1)
    if all_s.shape[1] <= k:
        return all_s, all_i
    keep = np.argpartition(-all_s, k - 1, axis=1)[:, :k]
    return np.take_along_axis(all_s, keep, 1), np.take_along_axis(all_i, keep, 1)


def _sorted(best_s: np.ndarray, best_i: np.ndarray):
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_s, order, 1), np.take_along_axis(best_i, order, 1)


def exact_search(
    emb: np.ndarray,
    queries: np.ndarray,
    k: int,
    show_progress: bool = False,
    query_batch: int = 1024,
    block_rows: int = 16384,
):
    """Exact top-k inner product over ``emb`` (an array or memmap) in chunks: (scores, rows), best first.

    BLAS (numpy) on (query batch × block) score tiles, top-k by argpartition, merged per chunk:
    what ``IndexFlatIP`` computes, at about half faiss.knn's CPU time for k in the tens."""
    from tqdm.auto import tqdm

    k = min(k, len(emb))
    q = np.ascontiguousarray(queries, dtype=np.float32)
    best_s = np.empty((len(q), 0), dtype=np.float32)
    best_i = np.empty((len(q), 0), dtype=np.int64)
    for start, stop in tqdm(list(_chunks(len(emb))), desc="dense search", unit="chunk", disable=not show_progress):
        chunk = np.ascontiguousarray(emb[start:stop], dtype=np.float32)  # a view for float32 memmaps
        for b0 in range(0, stop - start, block_rows):
            block = chunk[b0 : b0 + block_rows]
            kk = min(k, len(block))
            for q0 in range(0, len(q), query_batch):
                sc = q[q0 : q0 + query_batch] @ block.T
                top = (
                    np.argpartition(-sc, kk - 1, axis=1)[:, :kk]
                    if sc.shape[1] > kk
                    else np.broadcast_to(np.arange(sc.shape[1]), sc.shape)
                )
                s_part, i_part = np.take_along_axis(sc, top, 1), top + (start + b0)
                if q0 == 0:
                    new_s, new_i = [s_part], [i_part]
                else:
                    new_s.append(s_part)
                    new_i.append(i_part)
            best_s, best_i = _merge_top(best_s, best_i, np.concatenate(new_s), np.concatenate(new_i), k)
        del chunk
        _drop_pages(emb, start, stop)
    return _sorted(best_s, best_i)


def bf16_native() -> bool:
    """Whether this CPU multiplies bf16 natively (Linux ``/proc/cpuinfo`` flags; False elsewhere)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def bf16_search(emb: np.ndarray, queries: np.ndarray, k: int, show_progress: bool = False, query_batch: int = 128):
    """Exact top-k (scores, rows) by fp32 inner product, candidates from a bf16 pass (see the module doc).

    Per chunk: bf16 scores of every row, the ``k + max(32, k)`` best per query re-scored in fp32 from
    the chunk while it is resident, merged into the running exact top-k; then the chunk's pages go."""
    import warnings

    import torch
    from tqdm.auto import tqdm

    k = min(k, len(emb))
    m = min(len(emb), k + max(32, k))
    nq = len(queries)
    q32 = np.ascontiguousarray(queries, dtype=np.float32)
    qb = torch.from_numpy(q32).to(torch.bfloat16)
    best_s = np.empty((nq, 0), dtype=np.float32)
    best_i = np.empty((nq, 0), dtype=np.int64)
    size = min(CHUNK_ROWS, len(emb))
    # one bf16 block and one score buffer, reused (per-chunk temporaries would stay in the C heap)
    block = torch.empty((size, emb.shape[1]), dtype=torch.bfloat16)
    score_buf = torch.empty(nq * size, dtype=torch.bfloat16)
    for start, stop in tqdm(
        list(_chunks(len(emb), size)), desc="dense search", unit="chunk", disable=not show_progress
    ):
        n = stop - start
        view = np.ascontiguousarray(emb[start:stop], dtype=np.float32)  # no copy for a float32 memmap
        with warnings.catch_warnings():  # a read-only view: torch only reads it
            warnings.simplefilter("ignore")
            block[:n].copy_(torch.from_numpy(view))
        scores_b = score_buf[: nq * n].view(nq, n)
        torch.matmul(qb, block[:n].T, out=scores_b)
        cand = torch.topk(scores_b, min(m, n), dim=1).indices.numpy()
        exact = np.empty(cand.shape, dtype=np.float32)
        for b in range(0, nq, query_batch):
            exact[b : b + query_batch] = np.einsum(
                "qmd,qd->qm", view[cand[b : b + query_batch]], q32[b : b + query_batch]
            )
        best_s, best_i = _merge_top(best_s, best_i, exact, cand + start, k)
        del view
        _drop_pages(emb, start, stop)
    del block, score_buf
    return _sorted(best_s, best_i)


def build_ann(emb: np.ndarray, kind: str, show_progress: bool = False, seed: int = 0):
    """An ``ivf`` or ``hnsw`` faiss index over ``emb``, trained on a sample, filled in chunks."""
    import faiss
    from tqdm.auto import tqdm

    n, dim = emb.shape
    index: Any
    if kind == "ivf":
        nlist = int(min(65536, max(16, round(math.sqrt(n)))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.sort(np.random.default_rng(seed).choice(n, size=min(n, 40 * nlist), replace=False))
        index.train(np.ascontiguousarray(emb[sample], dtype=np.float32))
        index.nprobe = max(8, nlist // 20)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 64
    else:
        raise ConfigError(f"unknown ANN index {kind!r}; valid: ivf, hnsw")
    for start, stop in tqdm(list(_chunks(n)), desc=f"build {kind}", unit="chunk", disable=not show_progress):
        index.add(np.ascontiguousarray(emb[start:stop], dtype=np.float32))
        _drop_pages(emb, start, stop)
    return index


def ann_search(index, queries: np.ndarray, k: int):
    import faiss

    if isinstance(index, faiss.IndexHNSWFlat):
        index.hnsw.efSearch = max(64, 2 * k)
    scores, rows = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return scores, rows


def choose_index(n_docs: int, kind: str, ann_threshold: int) -> str:
    if kind not in ("auto", "flat", "flat_bf16", "ivf", "hnsw"):
        raise ConfigError(f"unknown dense index {kind!r}; valid: auto, flat, flat_bf16, ivf, hnsw")
    if kind == "auto":
        if n_docs > ann_threshold:
            return "ivf"
        return "flat_bf16" if n_docs >= BF16_MIN_DOCS and bf16_native() else "flat"
    return kind


def dense_search(
    emb: np.ndarray,
    queries: np.ndarray,
    k: int,
    kind: str = "auto",
    ann_threshold: int = 500_000,
    show_progress: bool = False,
    seed: int = 0,
):
    """Top-k (scores, rows) of ``queries`` against ``emb`` with the chosen index (see module doc)."""
    kind = choose_index(len(emb), kind, ann_threshold)
    k = min(k, len(emb))
    if kind == "flat":
        return exact_search(emb, queries, k, show_progress)
    if kind == "flat_bf16":
        return bf16_search(emb, queries, k, show_progress)
    import faiss

    filename = getattr(emb, "filename", None)  # a memmap's file: the index is cached beside it
    cache = Path(f"{filename}.{kind}.faiss") if filename else None
    index: Any
    if cache is not None and cache.is_file():
        log.info("%s index from cache %s", kind, cache)
        index = faiss.read_index(str(cache))
    else:
        index = build_ann(emb, kind, show_progress, seed)
        if cache is not None:
            from negforge.synth.outputs import clean_stale_temps

            clean_stale_temps(cache.parent)
            tmp = cache.with_name(f".{cache.name}.tmp{os.getpid()}")
            try:
                faiss.write_index(index, str(tmp))
                os.replace(tmp, cache)
            finally:
                tmp.unlink(missing_ok=True)
    if kind == "ivf":
        index.nprobe = max(8, index.nlist // 20)
    return ann_search(index, queries, k)


class DenseMiner:
    """The ``dense`` miner: cosine between the query and every corpus passage (normalised embeddings).

    ``embeddings`` / ``query_embeddings`` (row-aligned with the corpus / the records) replace the
    encoder, e.g. for benchmarks on synthetic vectors.
    """

    score_window = True

    def __init__(
        self,
        corpus: Corpus,
        cfg,
        qrels=None,
        show_progress: bool = True,
        embeddings: Optional[np.ndarray] = None,
        query_embeddings: Optional[np.ndarray] = None,
    ):
        enc = cfg.encoder  # mine.encoder: model, max_seq_length, batch_size, cache_dir
        self.source, self.model = Source.dense, enc.model
        self.corpus, self.cfg, self.enc, self.show_progress = corpus, cfg, enc, show_progress
        if embeddings is None:
            from .embeddings import corpus_embeddings

            embeddings = corpus_embeddings(
                corpus,
                enc.model,
                enc.cache_dir,
                enc.batch_size,
                enc.max_seq_length,
                show_progress=show_progress,
                backend=enc.backend,
                precision=enc.precision,
                processes=enc.processes,
            )
        if len(embeddings) != len(corpus):
            raise ConfigError(f"dense: {len(embeddings)} embeddings for a corpus of {len(corpus)} documents")
        self.emb, self.query_emb = embeddings, query_embeddings

    def _encode(self, texts: list[str]) -> np.ndarray:
        from .embeddings import encode_texts

        return encode_texts(
            texts,
            self.enc.model,
            self.enc.batch_size,
            self.enc.max_seq_length,
            show_progress=self.show_progress,
            backend=self.enc.backend,
            precision=self.enc.precision,
            cache_dir=self.enc.cache_dir,
        )

    def _positive_scores(self, records: list[Record], q: np.ndarray) -> list[Optional[float]]:
        """Lowest positive score per record: corpus rows where the positive has a doc id there,
        the encoder only for positives outside the corpus."""
        rows: dict[int, list[int]] = {}
        outside: dict[int, list[str]] = {}
        for i, r in enumerate(records):
            for p in r.positives:
                if p.doc_id is not None and p.doc_id in self.corpus:
                    rows.setdefault(i, []).append(self.corpus.index(p.doc_id))
                else:
                    outside.setdefault(i, []).append(p.full_text)
        flat = sorted({t for ts in outside.values() for t in ts})
        vec = dict(zip(flat, self._encode(flat))) if flat else {}
        out: list[Optional[float]] = []
        for i in range(len(records)):
            vs = [self.emb[j] for j in rows.get(i, [])] + [vec[t] for t in outside.get(i, [])]
            out.append(float(min(np.dot(v, q[i]) for v in vs)) if vs else None)
        return out

    def rank(self, records: list[Record], depth: int):
        from .mine import Ranking

        if self.query_emb is not None:
            if len(self.query_emb) != len(records):
                raise ConfigError(f"dense: {len(self.query_emb)} query embeddings for {len(records)} records")
            q = np.asarray(self.query_emb, dtype=np.float32)
        else:
            q = self._encode([r.query for r in records])
        scores, rows = dense_search(
            self.emb, q, depth, self.cfg.dense.index, self.cfg.dense.ann_threshold, self.show_progress, self.cfg.seed
        )
        pos = self._positive_scores(records, q) if self.cfg.relative_margin is not None else [None] * len(records)
        return [Ranking(rows=rw, scores=sc, positive_score=p) for rw, sc, p in zip(rows, scores, pos)]
