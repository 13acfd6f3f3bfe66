"""Flatten records to the column layouts trainers read; the only place records lose their schema.

``fmt``:

* ``sentence-transformers``: a ``datasets.Dataset`` saved with ``save_to_disk`` (a folder;
  load with ``datasets.load_from_disk``), columns ``anchor, positive, negative_1..negative_n``,
  one row per (query, positive). ``n`` is the largest negative count (or ``num_negatives``); a
  row with fewer repeats its own negatives in order; a record with none is left out (logged).
* ``sentence-transformers-triplet``: the same folder layout, columns ``anchor, positive,
  negative``, one row per (query, positive, negative).
* ``flag``: FlagEmbedding JSONL ``{"query", "pos": [...], "neg": [...], "id"}``.
* ``tevatron``: JSONL ``{"query_id", "query", "positive_passages": [{"docid", "title",
  "text"}], "negative_passages": [...]}``; a generated passage's docid is a content hash.
* ``parquet``: one row per record: ``id, query, positive (list), negative (list),
  negative_source (list), negative_doc_id (list)`` (``datasets.load_dataset("parquet")``).

Texts are ``title + " " + text`` where the consumer takes one string (BEIR convention).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from itertools import cycle, islice
from pathlib import Path
from typing import Optional

from negforge.synth.errors import ConfigError, InputError
from negforge.synth.io import write_lines
from negforge.synth.schema import Passage, Record, content_doc_id

log = logging.getLogger(__name__)

FORMATS = ("sentence-transformers", "sentence-transformers-triplet", "flag", "tevatron", "parquet")


def _docid(p: Passage) -> str:
    return p.doc_id or content_doc_id(p.full_text)


def _with_negatives(records: list[Record]) -> list[Record]:
    kept = [r for r in records if r.negatives]
    if len(kept) < len(records):
        log.warning("export: %d of %d records have no negative and are left out", len(records) - len(kept),
                    len(records))
    if not kept:
        raise InputError("export: no record has a negative; mix (or mine / generate) negatives first")
    return kept


def st_columns(records: list[Record], triplets: bool = False, num_negatives: Optional[int] = None) -> dict[str, list]:
    """The sentence-transformers columns as a dict of lists (see the module doc)."""
    records = _with_negatives(records)
    if triplets:
        cols: dict[str, list] = {"anchor": [], "positive": [], "negative": []}
        for r in records:
            for p in r.positives:
                for n in r.negatives:
                    cols["anchor"].append(r.query)
                    cols["positive"].append(p.full_text)
                    cols["negative"].append(n.full_text)
        return cols
    n_neg = num_negatives or max(len(r.negatives) for r in records)
    cols = {"anchor": [], "positive": [], **{f"negative_{i}": [] for i in range(1, n_neg + 1)}}
    padded = 0
    for r in records:
        negs = [n.full_text for n in r.negatives]
        padded += len(negs) < n_neg
        negs = list(islice(cycle(negs), n_neg))
        for p in r.positives:
            cols["anchor"].append(r.query)
            cols["positive"].append(p.full_text)
            for i, t in enumerate(negs, start=1):
                cols[f"negative_{i}"].append(t)
    if padded:
        log.info("export: %d records had fewer than %d negatives and repeat their own", padded, n_neg)
    return cols


def _save_dataset(cols: dict[str, list], out: Path) -> None:
    from datasets import Dataset

    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    Dataset.from_dict(cols).save_to_disk(str(tmp))
    if out.exists():
        if not (out / "dataset_info.json").is_file() and any(out.iterdir()):
            shutil.rmtree(tmp, ignore_errors=True)
            raise InputError(f"{out}: exists and is not a saved dataset; pick another --output")
        shutil.rmtree(out)
    os.replace(tmp, out)


def _passage(p: Passage) -> dict[str, str]:
    return {"docid": _docid(p), "title": p.title, "text": p.text}


def _write_parquet(records: list[Record], out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "id": [r.id for r in records],
        "query": [r.query for r in records],
        "positive": [[p.full_text for p in r.positives] for r in records],
        "negative": [[n.full_text for n in r.negatives] for r in records],
        "negative_source": [[n.source.value for n in r.negatives] for r in records],
        "negative_doc_id": [[n.doc_id for n in r.negatives] for r in records],
    })
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, out)


def export_records(records: list[Record], fmt: str, out_path: str | os.PathLike,
                   num_negatives: Optional[int] = None) -> Path:
    """Write ``records`` in ``fmt`` (one of :data:`FORMATS`) to ``out_path``; returns the path."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    if not records:
        raise InputError("export: no records to write")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt.startswith("sentence-transformers"):
        _save_dataset(st_columns(records, fmt.endswith("triplet"), num_negatives), out)
    elif fmt == "flag":
        write_lines(out, (json.dumps({"query": r.query, "pos": [p.full_text for p in r.positives],
                                      "neg": [n.full_text for n in r.negatives], "id": r.id},
                                     ensure_ascii=False) + "\n" for r in records))
    elif fmt == "tevatron":
        write_lines(out, (json.dumps({"query_id": r.id, "query": r.query,
                                      "positive_passages": [_passage(p) for p in r.positives],
                                      "negative_passages": [_passage(n) for n in r.negatives]},
                                     ensure_ascii=False) + "\n" for r in records))
    else:
        _write_parquet(records, out)
    log.info("exported %d records as %s to %s", len(records), fmt, out)
    return out
