"""Read the data users already have into records, with the format detected and named in errors.

=====================  =====================================================================
format                 what it is (how it is detected)
=====================  =====================================================================
``records``            negforge records JSONL (lines with ``positives``)
``beir``               a BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv
``flagembedding``      FlagEmbedding JSONL: ``query, pos, neg`` (lines with ``pos``)
``tevatron``           Tevatron's id-based JSONL (``positive_document_ids``) + its corpus
                       (``docid, text[, title]``): a folder with train.jsonl and corpus.jsonl,
                       or a file with corpus.jsonl beside it, or ``corpus=``
``tevatron-legacy``    Tevatron JSONL with ``positive_passages`` / ``negative_passages``
``hf-dataset``         a ``datasets.Dataset``, a ``save_to_disk`` folder, or a Hub name
                       (``owner/name``; needs the network or the local HF cache)
``parquet``            a Parquet file: negforge's own export, or columns as below
``csv`` / ``tsv``      a table of query-positive pairs with a header row
``jsonl``              other JSONL: columns as below
=====================  =====================================================================

Column formats (hf-dataset, parquet, csv, tsv, jsonl) map columns to roles (query, positive,
negative, id) by their usual names or a ``columns=`` map: see :mod:`negforge.synth.columns`. In
the one-line-per-query formats (records, FlagEmbedding, Tevatron) a repeated id is an input error.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Optional

from .columns import ROLES, parse_columns, records_from_rows, resolve_columns
from .data import Corpus, Dataset, load_beir, records_from_beir, records_from_flag_jsonl
from .errors import ConfigError, InputError
from .io import check_unique_ids, iter_jsonl, read_records
from .schema import Negative, Passage, Provenance, Record, Source

log = logging.getLogger(__name__)

INPUT_FORMATS = (
    "records",
    "beir",
    "flagembedding",
    "tevatron",
    "tevatron-legacy",
    "hf-dataset",
    "parquet",
    "csv",
    "tsv",
    "jsonl",
)
_HUB_NAME = re.compile(r"^[\w.-]+/[\w.-]+$")


@dataclass
class LoadedInput:
    """The records, the detected format, and the :class:`Dataset` (corpus, queries, qrels) the input brings."""

    records: list[Record]
    format: str
    dataset: Dataset = field(default_factory=Dataset)


def detect_format(source: Any) -> str:
    """The input format of a path, a Hub name or a ``datasets`` object (see the module doc)."""
    if hasattr(source, "column_names"):
        return "hf-dataset"
    path = Path(source)
    if path.is_dir():
        if (path / "corpus.jsonl").is_file() and (path / "queries.jsonl").is_file():
            return "beir"
        if (path / "train.jsonl").is_file() and (path / "corpus.jsonl").is_file():
            return "tevatron"
        if any((path / f).is_file() for f in ("dataset_info.json", "state.json", "dataset_dict.json")):
            return "hf-dataset"
        raise InputError(
            f"{path}: a folder that is none of: a BEIR folder (corpus.jsonl, queries.jsonl, qrels/), "
            "a Tevatron export (train.jsonl, corpus.jsonl), a datasets save_to_disk folder"
        )
    if not path.exists():
        if _HUB_NAME.match(str(source)) and not str(source).endswith((".jsonl", ".json", ".csv", ".tsv", ".parquet")):
            return "hf-dataset"
        raise InputError(f"{path}: no such file or folder (nor a Hugging Face Hub name like owner/name)")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".tsv", ".tab"):
        return "csv" if suffix == ".csv" else "tsv"
    first = next(iter_jsonl(path), (0, {}))[1]
    if "positives" in first:
        return "records"
    if "positive_document_ids" in first:
        return "tevatron"
    if "positive_passages" in first:
        return "tevatron-legacy"
    if "pos" in first and "query" in first:
        return "flagembedding"
    return "jsonl"


def read_input(
    source: Any,
    *,
    fmt: Optional[str] = None,
    columns: Optional[dict] = None,
    split: str = "train",
    corpus: Optional[Any] = None,
    limit: Optional[int] = None,
    dropped: Optional[dict[str, int]] = None,
    allow_empty: bool = False,
) -> LoadedInput:
    """Records (plus the corpus and qrels where the input has them) from any format above.

    ``fmt`` overrides detection; ``columns`` maps roles to columns for the column formats;
    ``split`` is a BEIR qrels split or a dataset split; ``corpus`` a Tevatron corpus file. What a reader
    leaves out (BEIR: queries with no relevant document in the corpus, ...) is counted into ``dropped``;
    no records at all is an InputError unless ``allow_empty``.
    """
    dropped = {} if dropped is None else dropped
    fmt = fmt or detect_format(source)
    if fmt not in INPUT_FORMATS:
        raise ConfigError(f"unknown input format {fmt!r}; valid: {', '.join(INPUT_FORMATS)}")
    name = "the dataset" if hasattr(source, "column_names") else str(source)
    if columns and fmt not in ("hf-dataset", "parquet", "csv", "tsv", "jsonl"):
        raise ConfigError(f"{name} ({fmt}): columns= only applies to hf-dataset, parquet, csv, tsv and jsonl inputs")
    loaded = _READERS[fmt](source, name, columns, split, corpus, **({"dropped": dropped} if fmt == "beir" else {}))
    if isinstance(loaded, list):
        loaded = LoadedInput(loaded, fmt)
    loaded.format = fmt
    ids = [r.id for r in loaded.records]
    if len(set(ids)) != len(ids):
        counts = Counter(ids)
        dup = next(i for i in ids if counts[i] > 1)
        raise InputError(f"{name} ({fmt}): query id {dup!r} appears more than once; ids must be unique")
    if not loaded.records and not allow_empty:
        why = "; ".join(f"{v} {k}" for k, v in dropped.items())
        raise InputError(
            f"{name} ({fmt}): no records in the input{f' (dropped: {why})' if why else ''}; "
            "pass --allow-empty where an empty result is expected"
        )
    if limit:
        loaded.records = loaded.records[:limit]
    log.info("read %d records from %s (%s)", len(loaded.records), name, fmt)
    return loaded


# ---------------------------------------------------------------- one reader per format
def _records(source, name, columns, split, corpus):
    return read_records(source)


def _beir(source, name, columns, split, corpus, dropped=None):
    data = load_beir(source, split)
    return LoadedInput(records_from_beir(data, dropped=dropped), "beir", data)


def _flag(source, name, columns, split, corpus):
    return records_from_flag_jsonl(source)


def _tevatron_corpus(path: Path) -> Corpus:
    ids, titles, texts = [], [], []
    for lineno, obj in iter_jsonl(path):
        if obj.get("docid") is None or not isinstance(obj.get("text"), str):
            raise InputError(f"{path}:{lineno}: a Tevatron corpus line needs 'docid' and 'text' (tevatron)")
        ids.append(str(obj["docid"]))
        titles.append(str(obj.get("title") or ""))
        texts.append(obj["text"])
    return Corpus(ids, titles, texts)


def _tevatron(source, name, columns, split, corpus):
    path = Path(source)
    train = path / "train.jsonl" if path.is_dir() else path
    cpath = Path(corpus) if corpus is not None else (path if path.is_dir() else path.parent) / "corpus.jsonl"
    if not cpath.is_file():
        raise InputError(
            f"{train} (tevatron): the id-based format needs its corpus (docid, text); none at {cpath}; "
            "pass corpus= (--corpus FILE)"
        )
    docs = _tevatron_corpus(cpath)
    records, ids = [], []
    for lineno, obj in iter_jsonl(train):
        where = f"{train}:{lineno} (tevatron)"
        pos, neg = obj.get("positive_document_ids"), obj.get("negative_document_ids") or []
        query = obj.get("query_text", obj.get("query"))
        if not isinstance(query, str) or not query.strip():
            raise InputError(f"{where}: 'query_text' must be a non-empty string")
        if not isinstance(pos, list) or not pos:
            raise InputError(f"{where}: 'positive_document_ids' must be a non-empty list")
        missing = [str(d) for d in [*pos, *neg] if str(d) not in docs]
        if missing:
            raise InputError(f"{where}: document id {missing[0]!r} is not in {cpath}")
        ids.append((str(obj.get("query_id", f"L{lineno}")), lineno))
        records.append(
            Record(
                id=ids[-1][0],
                query=query,
                positives=[docs.passage(str(d)) for d in pos],
                negatives=[
                    Negative(
                        **docs.passage(str(d)).model_dump(), source=Source.imported, provenance=Provenance(rank=i + 1)
                    )
                    for i, d in enumerate(neg)
                ],
            )
        )
    check_unique_ids(ids, train, "query id")
    return LoadedInput(records, "tevatron", Dataset(corpus=docs))


def _tevatron_legacy(source, name, columns, split, corpus):
    records, ids = [], []
    for lineno, obj in iter_jsonl(source):
        where = f"{source}:{lineno} (tevatron-legacy)"
        try:
            pos = [
                Passage(text=p["text"], title=p.get("title") or "", doc_id=p.get("docid"))
                for p in obj.get("positive_passages") or []
            ]
            neg = [
                Negative(
                    text=p["text"],
                    title=p.get("title") or "",
                    doc_id=p.get("docid"),
                    source=Source.imported,
                    provenance=Provenance(rank=i + 1),
                )
                for i, p in enumerate(obj.get("negative_passages") or [])
            ]
            records.append(
                Record(id=str(obj.get("query_id", f"L{lineno}")), query=obj["query"], positives=pos, negatives=neg)
            )
            ids.append((records[-1].id, lineno))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(
                f"{where}: needs query, positive_passages [{{docid, title, text}}] "
                f"({type(e).__name__}: {str(e).splitlines()[0][:120]})"
            ) from None
    check_unique_ids(ids, source, "query id")
    return records


def _hf_dataset(source, name, columns, split, corpus):
    if hasattr(source, "column_names") and not hasattr(source, "keys"):
        ds = source
    else:
        import datasets

        if hasattr(source, "keys"):
            ds = source
        elif Path(source).is_dir():
            ds = datasets.load_from_disk(str(source))
        else:
            try:
                ds = datasets.load_dataset(str(source), split=split)
            except Exception as e:  # network, missing dataset, bad split: one line
                raise InputError(
                    f"{source} (hf-dataset): could not load it from the Hugging Face Hub "
                    f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); without network, "
                    "save_to_disk it elsewhere and pass the folder"
                ) from None
        if hasattr(ds, "keys"):  # a DatasetDict
            if split not in ds:
                raise InputError(f"{name} (hf-dataset): no split {split!r}; it has {', '.join(ds.keys())}")
            ds = ds[split]
    return records_from_rows(
        ((i, row) for i, row in enumerate(ds)), list(ds.column_names), columns, f"{name} (hf-dataset)", "row"
    )


def _parquet(source, name, columns, split, corpus):
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(source)
    except Exception as e:
        raise InputError(f"{source} (parquet): not a readable Parquet file ({str(e).splitlines()[0][:200]})") from None
    cols = table.column_names
    if not columns and {"id", "query", "positive", "negative", "negative_source"} <= set(cols):
        return _own_parquet(table.to_pylist())
    return records_from_rows(enumerate(table.to_pylist()), cols, columns, f"{source} (parquet)", "row")


def _own_parquet(rows: list[dict]) -> list[Record]:
    """negforge's own Parquet export back to records (negatives keep their source and doc id)."""
    out = []
    for row in rows:
        ids = row.get("negative_doc_id") or [None] * len(row["negative"])
        out.append(
            Record(
                id=str(row["id"]),
                query=row["query"],
                positives=[Passage(text=t) for t in row["positive"]],
                negatives=[
                    Negative(text=t, source=Source(s), doc_id=d)
                    for t, s, d in zip(row["negative"], row["negative_source"], ids)
                ],
            )
        )
    return out


def _table(source, name, columns, split, corpus, delimiter):
    fmt = "csv" if delimiter == "," else "tsv"
    try:
        with open(source, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter=delimiter)
            header = [h.strip() for h in next(reader, [])]
            rows = [(reader.line_num, dict(zip(header, cells))) for cells in reader if any(c.strip() for c in cells)]
    except UnicodeDecodeError:
        raise InputError(f"{source} ({fmt}): not UTF-8; re-encode the file as UTF-8") from None
    if not header:
        raise InputError(f"{source} ({fmt}): the file is empty")
    return records_from_rows(rows, header, columns, f"{source} ({fmt})", "line")


def _jsonl(source, name, columns, split, corpus):
    rows = list(iter_jsonl(source))
    if not rows:  # an empty file: no records (an error unless allow_empty), not a missing column
        return []
    cols = list(dict.fromkeys(k for _, obj in rows for k in obj))
    return records_from_rows(rows, cols, columns, f"{source} (jsonl)", "line")


_READERS: dict[str, Callable[..., Any]] = {
    "records": _records,
    "beir": _beir,
    "flagembedding": _flag,
    "tevatron": _tevatron,
    "tevatron-legacy": _tevatron_legacy,
    "hf-dataset": _hf_dataset,
    "parquet": _parquet,
    "csv": partial(_table, delimiter=","),
    "tsv": partial(_table, delimiter="\t"),
    "jsonl": _jsonl,
}


def read_corpus(source: Any) -> Corpus:
    """A corpus to mine from: a list of texts, a :class:`Corpus`, a BEIR corpus.jsonl (``_id, title,
    text``) or a Tevatron corpus (``docid, text``)."""
    from .data import load_corpus

    if isinstance(source, Corpus):
        return source
    if isinstance(source, (list, tuple)):
        texts = [t for t in source if isinstance(t, str) and t.strip()]
        return Corpus(
            ["c" + hashlib.sha1(t.encode()).hexdigest()[:15] for t in dict.fromkeys(texts)],
            [""] * len(dict.fromkeys(texts)),
            list(dict.fromkeys(texts)),
        )
    path = Path(source)
    if path.is_dir() and (path / "corpus.jsonl").is_file():
        path = path / "corpus.jsonl"
    first = next(iter_jsonl(path), (0, {}))[1]
    return _tevatron_corpus(path) if "docid" in first else load_corpus(path)


__all__ = [
    "INPUT_FORMATS",
    "LoadedInput",
    "ROLES",
    "detect_format",
    "parse_columns",
    "read_corpus",
    "read_input",
    "records_from_rows",
    "resolve_columns",
]
