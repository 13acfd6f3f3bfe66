"""BM25 retrieval with bm25s: one index per (corpus, tokenizer, BM25 parameters), cached on disk.

The tokenizer is ours (regex words, lower-cased, English stopwords from bm25s, optional
PyStemmer stemming) so that the same token lists can be handed to another BM25 library in the
differential test. Tokens are turned into integer ids while streaming over the corpus, so a
million-passage corpus never holds its token strings in memory.

The index lives in ``<cache_dir>/bm25-<corpus fingerprint>-<settings hash>/`` (bm25s' own
``save`` format, loaded memory-mapped); it is written to a temp folder and renamed when whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from negforge.synth.data import Corpus
from negforge.synth.errors import ConfigError, MissingDependencyError
from negforge.synth.schema import join_title_text

log = logging.getLogger(__name__)

BM25_METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")
_WORD = re.compile(r"(?u)\b\w\w+\b")


class Tokenizer:
    """Lower-cased ``\\w\\w+`` words minus stopwords, optionally stemmed (needs PyStemmer)."""

    def __init__(self, stopwords: str | None = "en", stemmer: str | None = None):
        from bm25s.tokenization import _infer_stopwords

        try:
            self.stopwords = frozenset(_infer_stopwords(stopwords) if stopwords else ())
        except ValueError as e:
            raise ConfigError(f"bm25 stopwords {stopwords!r}: {e}") from None
        self.stemmer_name = stemmer
        self._stem: Optional[Callable[[str], str]] = None
        if stemmer:
            try:
                import Stemmer  # PyStemmer
            except ImportError:
                raise MissingDependencyError(
                    f"stemmer={stemmer!r} needs 'pip install PyStemmer' (or leave stemming off)"
                ) from None
            self._stem = Stemmer.Stemmer(stemmer).stemWord
        self._cache: dict[str, str] = {}

    def settings(self) -> dict:
        return {
            "pattern": _WORD.pattern,
            "lower": True,
            "stopwords": sorted(self.stopwords),
            "stemmer": self.stemmer_name,
        }

    def __call__(self, text: str) -> list[str]:
        words = [w for w in _WORD.findall(text.lower()) if w not in self.stopwords]
        if self._stem is None:
            return words
        out = []
        for w in words:
            s = self._cache.get(w)
            if s is None:
                s = self._cache[w] = self._stem(w)
            out.append(s)
        return out


class BM25Index:
    """A bm25s retriever over ``corpus`` (row i = ``corpus.ids[i]``)."""

    def __init__(
        self,
        corpus: Corpus,
        cache_dir: str | os.PathLike | None = None,
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
        stopwords: str | None = "en",
        stemmer: str | None = None,
        show_progress: bool = True,
    ):
        if method not in BM25_METHODS:
            raise ConfigError(f"unknown BM25 method {method!r}; valid: {', '.join(BM25_METHODS)}")
        self.corpus = corpus
        self.tokenizer = Tokenizer(stopwords, stemmer)
        self.params = {"k1": float(k1), "b": float(b), "method": method}
        self.show_progress = show_progress
        key = json.dumps({"tok": self.tokenizer.settings(), **self.params}, sort_keys=True)
        self.key = f"bm25-{corpus.fingerprint()}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"
        self.path = Path(cache_dir) / self.key if cache_dir else None
        self.retriever = self._load() or self._build()

    def _load(self):
        import bm25s

        if self.path is None or not (self.path / "params.index.json").is_file():
            return None
        log.info("BM25 index from cache %s", self.path)
        return bm25s.BM25.load(self.path, mmap=True)

    def _build(self):
        import bm25s
        from tqdm.auto import tqdm

        vocab: dict[str, int] = {}
        ids: list[list[int]] = []
        texts = self._texts()
        for text in tqdm(
            texts, total=len(self.corpus), desc="bm25 tokenize", unit="doc", disable=not self.show_progress
        ):
            ids.append([vocab.setdefault(t, len(vocab)) for t in self.tokenizer(text)])
        vocab.setdefault("", len(vocab))  # keeps bm25s happy with documents that have no tokens
        retriever = bm25s.BM25(**self.params)
        retriever.index((ids, vocab), create_empty_token=False, show_progress=self.show_progress)
        del ids
        if self.path is not None:
            from negforge.synth.outputs import clean_stale_temps

            self.path.parent.mkdir(parents=True, exist_ok=True)
            clean_stale_temps(self.path.parent)  # index folders of crashed jobs
            tmp = self.path.with_name(f".{self.key}.tmp{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                retriever.save(tmp, show_progress=False)
                shutil.rmtree(self.path, ignore_errors=True)
                os.replace(tmp, self.path)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            log.info("BM25 index saved to %s (%d docs, %d terms)", self.path, len(self.corpus), len(vocab))
        return retriever

    def _texts(self) -> Iterable[str]:
        for t, x in zip(self.corpus.titles, self.corpus.texts):
            yield join_title_text(t, x)

    @property
    def vocab(self) -> dict[str, int]:
        return self.retriever.vocab_dict

    def search(self, queries: Sequence[str], k: int, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, row indices), each (len(queries), k), best first.

        A query with no indexed term gets row index -1 and score 0 everywhere."""
        from tqdm.auto import tqdm

        k = min(k, len(self.corpus))
        scores = np.zeros((len(queries), k), dtype=np.float32)
        rows = np.full((len(queries), k), -1, dtype=np.int64)
        vocab = self.vocab
        with tqdm(total=len(queries), desc="bm25 search", unit="query", disable=not self.show_progress) as bar:
            for start in range(0, len(queries), batch_size):
                toks = [[t for t in self.tokenizer(q) if t in vocab] for q in queries[start : start + batch_size]]
                todo = [i for i, t in enumerate(toks) if t]
                if todo:
                    docs, sc = self.retriever.retrieve([toks[i] for i in todo], k=k, show_progress=False)
                    for j, i in enumerate(todo):
                        hit = sc[j] > 0  # a zero score shares no term with the query: not a match
                        rows[start + i, hit] = docs[j][hit]
                        scores[start + i, hit] = sc[j][hit]
                bar.update(len(toks))
        return scores, rows

    def score(self, query: str, rows: Sequence[int]) -> np.ndarray:
        """BM25 scores of ``query`` against the given corpus rows (e.g. its positives)."""
        toks = [t for t in self.tokenizer(query) if t in self.vocab]
        if not toks:
            return np.zeros(len(rows), dtype=np.float32)
        return np.asarray(self.retriever.get_scores(toks), dtype=np.float32)[np.asarray(rows, dtype=np.int64)]


class BM25Miner:
    """The ``bm25`` miner: ranks corpus rows by BM25 against each record's query."""

    score_window = False  # BM25 scores are not on a scale that max_score / relative_margin assume
    model = None

    def __init__(self, corpus: Corpus, cfg, qrels=None, show_progress: bool = True, **bm25: Any):
        """Parameters from ``cfg.bm25`` (k1, b, method, stopwords, stemmer); keywords override them."""
        from negforge.synth.schema import Source

        self.source = Source.bm25
        self.cfg = cfg
        params = {**cfg.bm25.model_dump(), **bm25}
        self.index = BM25Index(corpus, cache_dir=Path(cfg.encoder.cache_dir), show_progress=show_progress, **params)

    def rank(self, records, depth: int):
        from .mine import Ranking

        scores, rows = self.index.search([r.query for r in records], depth)
        return [Ranking(rows=rw, scores=sc) for rw, sc in zip(rows, scores)]
