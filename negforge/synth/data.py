"""Inputs: a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) or a FlagEmbedding
training JSONL ({query, pos: [...], neg: [...]}). Both become :class:`Record` lists plus a
:class:`Dataset` (corpus, queries, qrels: each may be missing) that every stage takes:
``stage(records, dataset, config) -> (records, report)``.

Every reader refuses a repeated id (document, query, record) naming both lines, before any work;
what a reader leaves out (a query with no relevant document in the corpus, a qrels row naming an
unknown document) is counted in the ``dropped`` dict the caller passes, and logged.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .errors import InputError
from .io import check_unique_ids, iter_jsonl, read_text
from .schema import Negative, Passage, Provenance, Record, Source, content_doc_id, join_title_text

log = logging.getLogger(__name__)

Qrels = dict[str, dict[str, int]]


@dataclass
class Corpus:
    """Documents in a fixed order; row i of any embedding matrix is ``ids[i]``."""

    ids: list[str]
    titles: list[str]
    texts: list[str]
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.ids:
            raise InputError("the corpus is empty: nothing to mine from or evaluate against")
        self._index = {d: i for i, d in enumerate(self.ids)}
        if len(self._index) != len(self.ids):
            raise InputError("the corpus has duplicate document ids")

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, doc_id: str) -> bool:
        return doc_id in self._index

    def index(self, doc_id: str) -> int:
        return self._index[doc_id]

    def passage(self, doc_id: str) -> Passage:
        i = self._index[doc_id]
        return Passage(doc_id=doc_id, title=self.titles[i], text=self.texts[i])

    def full_texts(self) -> list[str]:
        return [join_title_text(t, x) for t, x in zip(self.titles, self.texts)]

    def fingerprint(self) -> str:
        """Content hash: the embedding cache key (with the model name)."""
        h = hashlib.sha256()
        for d, t, x in zip(self.ids, self.titles, self.texts):
            h.update(d.encode() + b"\x00" + t.encode() + b"\x00" + x.encode() + b"\x01")
        return h.hexdigest()[:20]


def load_corpus(path: str | os.PathLike, limit: Optional[int] = None) -> Corpus:
    ids, titles, texts = [], [], []
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path):
        doc_id, text = obj.get("_id"), obj.get("text")
        if doc_id is None or not isinstance(text, str):
            raise InputError(f"{path}:{lineno}: a corpus line needs '_id' and 'text'")
        if str(doc_id) in seen:
            raise InputError(
                f"{path}:{lineno}: document id {str(doc_id)!r} appears again (first at line "
                f"{seen[str(doc_id)]}); ids must be unique"
            )
        seen[str(doc_id)] = lineno
        ids.append(str(doc_id))
        titles.append(str(obj.get("title") or ""))
        texts.append(text)
        if limit and len(ids) >= limit:
            break
    return Corpus(ids, titles, texts)


def load_queries(path: str | os.PathLike) -> dict[str, str]:
    out, lines = {}, []
    for lineno, obj in iter_jsonl(path):
        if obj.get("_id") is None or not isinstance(obj.get("text"), str):
            raise InputError(f"{path}:{lineno}: a query line needs '_id' and 'text'")
        lines.append((str(obj["_id"]), lineno))
        out[str(obj["_id"])] = obj["text"]
    check_unique_ids(lines, path, "query id")
    return out


def load_qrels(path: str | os.PathLike) -> Qrels:
    """BEIR qrels TSV (header row, CRLF tolerated): query-id, corpus-id, score."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such qrels file")
    qrels: Qrels = {}
    import io

    with io.StringIO(read_text(path), newline="") as f:
        for lineno, row in enumerate(csv.reader(f, delimiter="\t"), start=1):
            if not row or (lineno == 1 and row[0].strip().lower() in {"query-id", "query_id", "qid"}):
                continue
            if len(row) < 3:
                raise InputError(f"{path}:{lineno}: expected 'query-id<TAB>corpus-id<TAB>score'")
            try:
                score = int(float(row[2]))
            except ValueError:
                raise InputError(f"{path}:{lineno}: score {row[2]!r} is not a number") from None
            q, d = row[0].strip(), row[1].strip()
            if qrels.get(q, {}).get(d, score) != score:
                raise InputError(
                    f"{path}:{lineno}: query {q!r} and document {d!r} were already judged "
                    f"{qrels[q][d]}, now {score}; keep one row per pair"
                )
            qrels.setdefault(q, {})[d] = score
    return qrels


@dataclass
class Dataset:
    """What the records were drawn from, as far as it is known: the second argument of every stage.

    ``corpus`` (the documents to mine from and evaluate against), ``queries`` (id -> text) and
    ``qrels`` (query id -> doc id -> grade). A FlagEmbedding file brings none of them
    (``Dataset()``); a BEIR folder brings all three (:func:`load_beir`).
    """

    corpus: Optional[Corpus] = None
    queries: dict[str, str] = field(default_factory=dict)
    qrels: Optional[Qrels] = None

    def need_corpus(self, stage: str) -> Corpus:
        """The corpus, or a one-line InputError naming the stage that needs it."""
        if self.corpus is None:
            raise InputError(
                f"{stage} needs a corpus: pass a Dataset with one (e.g. load_beir(folder)), or "
                "Dataset(corpus=corpus_from_records(records)) to use the records' own passages"
            )
        return self.corpus

    def need_qrels(self, stage: str) -> Qrels:
        """The qrels, or a one-line InputError naming the stage that needs them."""
        if self.qrels is None:
            raise InputError(f"{stage} needs qrels: pass a Dataset with them (e.g. load_beir(folder, split))")
        return self.qrels


def load_beir(folder: str | os.PathLike, split: str = "train") -> Dataset:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(
            f"{folder}: dataset folder not found. The bundled default is ../shared/data/scifact "
            "(run from the project root, or pass --data PATH to a BEIR folder with corpus.jsonl, "
            "queries.jsonl and qrels/<split>.tsv)"
        )
    corpus = load_corpus(folder / "corpus.jsonl")
    queries = load_queries(folder / "queries.jsonl")
    qrels = load_qrels(folder / "qrels" / f"{split}.tsv")
    missing = [q for q in qrels if q not in queries]
    if missing:
        raise InputError(
            f"{folder}: qrels/{split}.tsv names {len(missing)} queries not in queries.jsonl, e.g. {missing[0]!r}"
        )
    return Dataset(corpus, queries, qrels)


def records_from_beir(
    data: Dataset, limit: Optional[int] = None, dropped: Optional[dict[str, int]] = None
) -> list[Record]:
    """One record per qrels query with at least one relevant (score > 0) document in the corpus.

    The positives are the query's documents with score > 0, in qrels order, each carrying its grade;
    a row with score 0 (or below) is a judged non-relevant document and never becomes a positive.
    What is left out is counted into ``dropped`` (and logged): queries with no relevant document in the
    corpus, qrels rows naming a document the corpus does not have.
    """
    records: list[Record] = []
    skipped, unknown = 0, 0
    corpus = data.need_corpus("records_from_beir")
    for qid, rels in (data.qrels or {}).items():
        if limit and len(records) >= limit:
            break
        unknown += sum(1 for d in rels if d not in corpus)
        pos = [corpus.passage(d).model_copy(update={"grade": s}) for d, s in rels.items() if s > 0 and d in corpus]
        if not pos:
            skipped += 1
            continue
        records.append(Record(id=qid, query=data.queries[qid], positives=pos))
    counts = {
        "queries with no relevant document in the corpus": skipped,
        "qrels rows naming a document not in the corpus": unknown,
    }
    for k, v in counts.items():
        if v:
            log.warning("input: dropped %d %s", v, k)
            if dropped is not None:
                dropped[k] = dropped.get(k, 0) + v
    return records


def records_from_flag_jsonl(path: str | os.PathLike, limit: Optional[int] = None) -> list[Record]:
    """FlagEmbedding training format: {"query": str, "pos": [str], "neg": [str]} per line."""
    records: list[Record] = []
    first: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path):
        query, pos, neg = obj.get("query"), obj.get("pos"), obj.get("neg", [])
        where = f"{path}:{lineno}"
        if not isinstance(query, str) or not query.strip():
            raise InputError(f"{where}: 'query' must be a non-empty string")
        if not isinstance(pos, list) or not all(isinstance(p, str) for p in pos):
            raise InputError(f"{where}: 'pos' must be a list of strings")
        if not [p for p in pos if p.strip()]:
            raise InputError(f"{where}: query has no positive passage ('pos' is empty)")
        if not isinstance(neg, list) or not all(isinstance(n, str) for n in neg):
            raise InputError(f"{where}: 'neg' must be a list of strings")
        rid = str(obj.get("id", obj.get("query_id", f"L{lineno}")))
        if rid in first:
            raise InputError(f"{where}: id {rid!r} appears again (first at line {first[rid]}); ids must be unique")
        first[rid] = lineno
        records.append(
            Record(
                id=rid,
                query=query,
                positives=[Passage(text=p) for p in pos if p.strip()],
                negatives=[
                    Negative(text=n, source=Source.imported, provenance=Provenance(rank=i + 1))
                    for i, n in enumerate(neg)
                    if n.strip()
                ],
            )
        )
        if limit and len(records) >= limit:
            break
    return records


def corpus_from_records(records: Iterable[Record]) -> Corpus:
    """A candidate pool for mining when the input has no corpus: every pos/neg text, deduplicated."""
    ids: list[str] = []
    texts: list[str] = []
    seen: dict[str, int] = {}
    for r in records:
        for p in [*r.positives, *r.negatives]:
            key = p.doc_id or content_doc_id(p.full_text)
            if key not in seen:
                seen[key] = len(ids)
                ids.append(key)
                texts.append(p.full_text)
            if p.doc_id is None:
                p.doc_id = key
    return Corpus(ids, [""] * len(ids), texts)
