"""Column tables (datasets, Parquet, CSV/TSV, JSONL) to records: which column plays which role.

Roles: ``query`` (found as query, anchor, question, query_text, sentence1), ``positive``
(positive, pos, positives, answer, passage, document, ...), ``negative`` (negative, neg,
negatives, hard_negative, and sentence-transformers' ``negative_1 .. negative_n``) and ``id``
(id, query_id, qid, _id). A column map (``{"query": "claim", "positive": "abstract"}``, on the
command line ``--columns query=claim,positive=abstract``) names them where the names differ. A
cell holds a string, a list of strings or ``{title, text}`` passages. Rows of one query become one
record: grouped by id, or by query text where there is no id column; an id that names two
different query texts is an input error.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from typing import Any, Optional, Union

from .errors import ConfigError, InputError
from .schema import Negative, Passage, Provenance, Record, Source

ROLES = {
    "query": ("query", "anchor", "question", "query_text", "sentence1", "sentence_1"),
    "positive": (
        "positive",
        "pos",
        "positives",
        "positive_text",
        "answer",
        "passage",
        "document",
        "context",
        "sentence2",
        "sentence_2",
    ),
    "negative": ("negative", "neg", "negatives", "hard_negative", "hard_negatives", "negative_text"),
    "id": ("id", "query_id", "qid", "_id", "query-id"),
}
_NTH_NEGATIVE = re.compile(r"^negative_(\d+)$")


def parse_columns(spec: Optional[str]) -> Optional[dict[str, Union[str, list[str]]]]:
    """``"query=question,positive=answer,negative=n1,negative=n2"`` -> a column map (repeats make a list)."""
    if not spec:
        return None
    out: dict[str, Union[str, list[str]]] = {}
    for part in spec.split(","):
        role, sep, col = part.partition("=")
        if not sep or not col.strip():
            raise ConfigError(f"--columns: {part!r} is not ROLE=COLUMN (roles: {', '.join(ROLES)})")
        role, col = role.strip(), col.strip()
        if role in out:
            prev = out[role]
            out[role] = [*(prev if isinstance(prev, list) else [prev]), col]
        else:
            out[role] = col
    return out


def resolve_columns(available: list[str], columns: Optional[dict], where: str) -> dict[str, list[str]]:
    """Role -> column names (negatives may be several), from ``columns`` or the known names."""
    columns = dict(columns or {})
    unknown = set(columns) - set(ROLES)
    if unknown:
        raise ConfigError(f"{where}: unknown column role {sorted(unknown)[0]!r}; roles: {', '.join(ROLES)}")
    lower = {c.lower(): c for c in available}
    out: dict[str, list[str]] = {}
    for role, names in ROLES.items():
        if role in columns:
            given = columns[role] if isinstance(columns[role], list) else [columns[role]]
            missing = [c for c in given if c not in available]
            if missing:
                raise InputError(f"{where}: no column {missing[0]!r} (for {role}); columns: {', '.join(available)}")
            out[role] = list(given)
        elif role == "negative":
            nth = sorted((int(m.group(1)), c) for c in available if (m := _NTH_NEGATIVE.match(c.lower())))
            out[role] = [lower[n] for n in names if n in lower] + [c for _, c in nth]
        else:
            found = next((lower[n] for n in names if n in lower), None)
            out[role] = [found] if found else []
    for role in ("query", "positive"):
        if not out[role]:
            raise InputError(
                f"{where}: no {role} column (looked for {', '.join(ROLES[role][:6])}; columns: "
                f"{', '.join(available) or 'none'}); name it with columns={{'{role}': COL}} "
                f"(--columns {role}=COL)"
            )
    return out


def _texts(value: Any) -> Iterator[str]:
    if value is None:
        return
    if isinstance(value, str):
        if value.strip():
            yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _texts(v)
    elif isinstance(value, dict) and isinstance(value.get("text"), str):  # {"title", "text"} passages
        yield f"{value.get('title') or ''} {value['text']}".strip()
    else:
        raise ValueError(f"expected text or a list of texts, got {type(value).__name__}")


def records_from_rows(
    rows: Iterable[tuple[int, dict[str, Any]]],
    available: list[str],
    columns: Optional[dict],
    where: str,
    unit: str = "row",
) -> list[Record]:
    """Group (position, row) pairs into records (see the module doc for roles and grouping)."""
    cols = resolve_columns(available, columns, where)
    groups: dict[str, dict[str, Any]] = {}
    for pos, row in rows:
        at = f"{where} {unit} {pos}"
        try:
            query = next(_texts(row.get(cols["query"][0])), None)
            positives = [t for c in cols["positive"] for t in _texts(row.get(c))]
            negatives = [t for c in cols["negative"] for t in _texts(row.get(c))]
        except ValueError as e:
            raise InputError(f"{at}: {e}") from None
        if query is None:
            raise InputError(f"{at}: the query ({cols['query'][0]}) is empty")
        rid = (
            str(row[cols["id"][0]])
            if cols["id"] and row.get(cols["id"][0]) is not None
            else "q" + hashlib.sha1(query.encode()).hexdigest()[:12]
        )
        g = groups.setdefault(rid, {"query": query, "pos": {}, "neg": {}, "at": at})
        if g["query"] != query:
            raise InputError(
                f"{at}: query id {rid!r} names two different queries (first at {g['at']}); ids must be unique"
            )
        g["pos"].update(dict.fromkeys(positives))
        g["neg"].update(dict.fromkeys(negatives))
    records = []
    for rid, g in groups.items():
        if not g["pos"]:
            raise InputError(f"{g['at']}: query {rid!r} has no positive ({', '.join(cols['positive'])} empty)")
        negs = [t for t in g["neg"] if t not in g["pos"]]
        records.append(
            Record(
                id=rid,
                query=g["query"],
                positives=[Passage(text=t) for t in g["pos"]],
                negatives=[
                    Negative(text=t, source=Source.imported, provenance=Provenance(rank=i + 1))
                    for i, t in enumerate(negs)
                ],
            )
        )
    return records
