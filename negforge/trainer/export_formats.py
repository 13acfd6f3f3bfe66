"""The export layouts, one writer per format (see :mod:`negforge.trainer.export` for what is written).

Every writer takes records that already hold only their exportable negatives (at least one
each), the output path, the :class:`~negforge.trainer.export.ExportReport` to fill in, and the
format's options. Texts are ``title + " " + text`` where the consumer takes one string (BEIR
convention); every file is written atomically (temp file + rename).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from itertools import cycle, islice
from pathlib import Path
from typing import Any, Optional

from negforge.synth.errors import InputError
from negforge.synth.io import write_lines
from negforge.synth.schema import Passage, Record, content_doc_id

from .export import ExportReport, score_lists


def docid(p: Passage) -> str:
    """The passage's corpus id, or a content hash for a generated passage (stable across exports)."""
    return p.doc_id or content_doc_id(p.full_text)


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


def st_columns(
    records: list[Record], layout: str = "n-tuple", num_negatives: Optional[int] = None, score_key: Optional[str] = None
) -> dict[str, list]:
    """sentence-transformers columns as ``util.mine_hard_negatives`` lays them out for ``layout``
    (``n-tuple``, ``triplet``, ``labeled-pair``, ``labeled-list``), with its score columns when
    ``score_key`` is given."""
    cols: dict[str, list] = {"anchor": [], "positive": []}
    if layout == "n-tuple":
        n_neg = num_negatives or max(len(r.negatives) for r in records)
        cols.update({f"negative_{i}": [] for i in range(1, n_neg + 1)})
    elif layout == "triplet":
        cols["negative"] = []
    label = {
        "labeled-pair": "score" if score_key else "label",
        "labeled-list": "scores" if score_key else "labels",
    }.get(layout, "scores" if score_key else "")
    if label:
        cols[label] = []
    for r in records:
        pos_opt, neg_opt = score_lists(r, score_key)
        pos_s, neg_s = pos_opt or [], neg_opt or []
        negs = [n.full_text for n in r.negatives]
        if layout == "labeled-pair":  # every positive, then every negative once (as sentence-transformers does)
            docs = [(p.full_text, 1, pos_s[i] if pos_s else None) for i, p in enumerate(r.positives)]
            docs += [(t, 0, neg_s[i] if neg_s else None) for i, t in enumerate(negs)]
            for text, lab, score in docs:
                cols["anchor"].append(r.query)
                cols["positive"].append(text)
                cols[label].append(score if score_key else lab)
            continue
        for i, p in enumerate(r.positives):
            if layout == "triplet":
                for j, t in enumerate(negs):
                    cols["anchor"].append(r.query)
                    cols["positive"].append(p.full_text)
                    cols["negative"].append(t)
                    if label:
                        cols[label].append([pos_s[i], neg_s[j]])
                continue
            cols["anchor"].append(r.query)
            if layout == "labeled-list":
                cols["positive"].append([p.full_text, *negs])
                cols[label].append([pos_s[i], *neg_s] if score_key else [1] + [0] * len(negs))
                continue
            cols["positive"].append(p.full_text)
            picked = list(islice(cycle(range(len(negs))), n_neg))  # fewer negatives: repeat their own
            for k, j in enumerate(picked, start=1):
                cols[f"negative_{k}"].append(negs[j])
            if label:
                cols[label].append([pos_s[i], *(neg_s[j] for j in picked)])
    return cols


def _st(layout: str) -> Callable[..., None]:
    def write(records: list[Record], out: Path, report: ExportReport, num_negatives: Optional[int] = None) -> None:
        cols = st_columns(records, layout, num_negatives, report.score_key)
        _save_dataset(cols, out)
        report.rows, report.files = len(cols["anchor"]), [str(out)]

    return write


def _jsonl(out: Path, rows: list[dict[str, Any]], report: ExportReport) -> None:
    report.rows = write_lines(out, (json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    report.files.append(str(out))


def flagembedding_rows(records: list[Record], score_key: Optional[str] = None) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        row: dict[str, Any] = {
            "query": r.query,
            "pos": [p.full_text for p in r.positives],
            "neg": [n.full_text for n in r.negatives],
            "id": r.id,
        }
        pos_s, neg_s = score_lists(r, score_key)
        if pos_s is not None:
            row.update(pos_scores=pos_s, neg_scores=neg_s)
        rows.append(row)
    return rows


def write_flagembedding(records: list[Record], out: Path, report: ExportReport, **_: Any) -> None:
    _jsonl(out, flagembedding_rows(records, report.score_key), report)


def _passage(p: Passage, score: Optional[float]) -> dict[str, Any]:
    d: dict[str, Any] = {"docid": docid(p), "title": p.title, "text": p.text}
    if score is not None:
        d["score"] = score
    return d


def write_tevatron_legacy(records: list[Record], out: Path, report: ExportReport, **_: Any) -> None:
    rows = []
    for r in records:
        pos_s, neg_s = score_lists(r, report.score_key)
        rows.append(
            {
                "query_id": r.id,
                "query": r.query,
                "positive_passages": [_passage(p, pos_s[i] if pos_s else None) for i, p in enumerate(r.positives)],
                "negative_passages": [_passage(n, neg_s[i] if neg_s else None) for i, n in enumerate(r.negatives)],
            }
        )
    _jsonl(out, rows, report)


def write_tevatron(records: list[Record], out: Path, report: ExportReport, **_: Any) -> None:
    """``OUT/train.jsonl`` (query_id, query_text, positive_document_ids, negative_document_ids) and
    ``OUT/corpus.jsonl`` (docid, text = title + text: Tevatron's trainer reads only ``text``)."""
    if out.exists() and not out.is_dir():
        raise InputError(
            f"{out}: the tevatron format writes a folder (train.jsonl + corpus.jsonl), and this is a "
            "file; pick another --output (or -f tevatron-legacy for one JSONL file)"
        )
    out.mkdir(parents=True, exist_ok=True)
    corpus: dict[str, str] = {}
    rows = []
    for r in records:
        ids: dict[str, list[str]] = {}
        for kind, passages in (("positive", r.positives), ("negative", r.negatives)):
            ids[kind] = []
            for p in passages:
                d, text = docid(p), p.full_text
                if corpus.setdefault(d, text) != text:
                    raise InputError(
                        f"record {r.id!r}: document id {d!r} has two different texts in the input; "
                        "doc ids must name one document"
                    )
                ids[kind].append(d)
        rows.append(
            {
                "query_id": r.id,
                "query_text": r.query,
                "positive_document_ids": ids["positive"],
                "negative_document_ids": ids["negative"],
            }
        )
    _jsonl(out / "train.jsonl", rows, report)
    write_lines(
        out / "corpus.jsonl",
        (json.dumps({"docid": d, "text": t}, ensure_ascii=False) + "\n" for d, t in corpus.items()),
    )
    report.files.append(str(out / "corpus.jsonl"))


def record_columns(records: list[Record], score_key: Optional[str] = None) -> dict[str, list]:
    """One row per record (the Parquet layout): id, query, positive, negative, negative_source, negative_doc_id."""
    cols: dict[str, list] = {
        "id": [r.id for r in records],
        "query": [r.query for r in records],
        "positive": [[p.full_text for p in r.positives] for r in records],
        "negative": [[n.full_text for n in r.negatives] for r in records],
        "negative_source": [[n.source.value for n in r.negatives] for r in records],
        "negative_doc_id": [[n.doc_id for n in r.negatives] for r in records],
    }
    if score_key:
        lists = [score_lists(r, score_key) for r in records]
        cols["positive_score"], cols["negative_score"] = [p for p, _ in lists], [n for _, n in lists]
    return cols


def write_parquet(records: list[Record], out: Path, report: ExportReport, **_: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = record_columns(records, report.score_key)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    pq.write_table(pa.table(cols), tmp)
    os.replace(tmp, out)
    report.rows, report.files = len(records), [str(out)]


WRITERS: dict[str, Callable[..., None]] = {
    "sentence-transformers": _st("n-tuple"),
    "sentence-transformers-triplet": _st("triplet"),
    "sentence-transformers-labeled-pair": _st("labeled-pair"),
    "sentence-transformers-labeled-list": _st("labeled-list"),
    "flagembedding": write_flagembedding,
    "tevatron": write_tevatron,
    "tevatron-legacy": write_tevatron_legacy,
    "parquet": write_parquet,
}


def dataset_columns(
    records: list[Record], fmt: str, score_key: Optional[str] = None, num_negatives: Optional[int] = None
) -> dict[str, list]:
    """The columns of ``fmt`` as a dict of lists, for an in-memory ``datasets.Dataset``."""
    layouts = {
        "sentence-transformers": "n-tuple",
        "sentence-transformers-triplet": "triplet",
        "sentence-transformers-labeled-pair": "labeled-pair",
        "sentence-transformers-labeled-list": "labeled-list",
    }
    if fmt in layouts:
        return st_columns(records, layouts[fmt], num_negatives, score_key)
    if fmt == "flagembedding":
        rows = flagembedding_rows(records, score_key)
        return {k: [row[k] for row in rows] for k in rows[0]}
    if fmt == "parquet":
        return record_columns(records, score_key)
    raise InputError(
        f"{fmt}: an export that writes files (use export_records); in memory: "
        f"{', '.join([*layouts, 'flagembedding', 'parquet'])}"
    )
