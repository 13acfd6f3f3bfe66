"""Mine negatives from a corpus: BM25, dense (faiss) and click logs, behind one registry.

Each miner only *ranks* corpus rows per record (:class:`Ranking`); the rules that make a
ranking into negatives live here, once, and count what they removed (:class:`MineReport`):

1. ``labelled_positive``: a document the qrels (score > 0) or the record mark as a positive;
2. ``positive_text``: a document whose normalised text equals a positive's (inputs without
   doc ids, e.g. FlagEmbedding files mined against :func:`negforge.synth.data.corpus_from_records`);
3. ``already_mined``: already a negative of this record from the same source (re-runs add nothing);
4. ``max_score`` / ``relative_margin`` (miners that score on one scale, i.e. dense, and every miner
   when ``cross_encoder`` rescoring is on, :mod:`negforge.mixers.rescore`): as in
   sentence-transformers' ``mine_hard_negatives``: drop if ``score > max_score`` or
   ``score > pos - |pos| * relative_margin`` (pos = the lowest positive score);
5. the rank window: of the survivors, skip the first ``range_min`` and stop at ``range_max``;
6. ``sampling``: ``top`` keeps the first ``num_negatives`` of the window, ``random`` a sample
   seeded by (seed, record id, source).

The rules run on (records × depth) arrays, a block of records at a time: one rule code per
candidate, survivors' window ranks by a cumulative sum, counts by summing; only the chosen
negatives become objects. A candidate's text is normalised only when its ASCII-alphanumeric
count (cheap, exact pre-check) equals a positive's.

Negatives carry ``source``, ``provenance.rank`` (1-based rank in the miner's own list, positives
included), ``provenance.extra.window_rank`` (0-based rank among the survivors) and
``scores[source]``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Protocol

import numpy as np
from pydantic import Field

from negforge.synth.config import MineConfig
from negforge.synth.data import Corpus, Dataset, Qrels
from negforge.synth.errors import ConfigError
from negforge.synth.registry import Registry
from negforge.synth.reports import Report, Seconds
from negforge.synth.schema import (
    Negative,
    Provenance,
    Record,
    Source,
    ascii_alnum_count,
    join_title_text,
    normalise_text,
)
from negforge.synth.seeding import seeded_rng
from negforge.synth.stages import stage_dataset

log = logging.getLogger(__name__)

FILTERS = (
    "labelled_positive",
    "positive_text",
    "already_mined",
    "max_score",
    "relative_margin",
    "range_min",
    "past_range_max",
    "not_sampled",
    "empty_text",
)


@dataclass
class Ranking:
    """One record's candidates, best first: corpus rows (-1 = nothing) and the miner's scores."""

    rows: Sequence[int]
    scores: Sequence[float]
    positive_score: Optional[float] = None  # lowest positive score, for relative_margin
    info: Optional[list[dict[str, Any]]] = None  # per-candidate provenance extras
    score_name: Optional[str] = None  # the key of ``scores`` on the negative (None: the miner's source)
    extra_scores: Optional[list[dict[str, float]]] = None  # per-candidate scores merged into negative.scores


class Miner(Protocol):
    source: Source
    model: Optional[str]  # encoder name for dense, None otherwise
    score_window: bool  # whether max_score / relative_margin apply to its scores

    def rank(self, records: list[Record], depth: int) -> list[Ranking]:
        """One ranking per record, same order, at least ``depth`` deep where the corpus allows."""
        ...


MINERS: Registry[Miner] = Registry("miner")
MINERS.register("bm25", "negforge.mixers.bm25:BM25Miner")
MINERS.register("dense", "negforge.mixers.dense:DenseMiner")
MINERS.register("click", "negforge.mixers.click:ClickMiner")


class MinerStats(Report):
    queries: int = 0
    candidates: int = 0
    mined: int = 0
    short: int = 0  # queries that got fewer than num_negatives
    empty: int = 0  # queries that got none
    rescored: int = 0  # candidates scored by the cross-encoder (MineConfig.cross_encoder)
    removed: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(FILTERS, 0))
    wall_s: Seconds = 0.0


class MineReport(Report):
    """Per miner: what it ranked, what each rule removed and what it added."""

    records: int = 0
    miners: dict[str, MinerStats] = Field(default_factory=dict)

    def table(self) -> str:
        names = list(self.miners)
        rows: list[tuple[str, list[Any]]] = [
            ("queries", [s.queries for s in self.miners.values()]),
            ("candidates", [s.candidates for s in self.miners.values()]),
        ]
        keys = list(dict.fromkeys([*FILTERS, *(k for s in self.miners.values() for k in s.removed)]))
        rows += [
            (f"- {f}", [s.removed.get(f, 0) for s in self.miners.values()])
            for f in keys
            if any(s.removed.get(f, 0) for s in self.miners.values())
        ]
        if any(s.rescored for s in self.miners.values()):
            rows.append(("cross-encoder rescored", [s.rescored for s in self.miners.values()]))
        rows += [
            ("mined", [s.mined for s in self.miners.values()]),
            ("queries short", [s.short for s in self.miners.values()]),
            ("queries empty", [s.empty for s in self.miners.values()]),
            ("seconds", [f"{s.wall_s:.1f}" for s in self.miners.values()]),
        ]
        width = max(len(r[0]) for r in rows)
        lines = [f"{'':<{width}}  " + "  ".join(f"{n:>10}" for n in names)]
        lines += [f"{label:<{width}}  " + "  ".join(f"{v:>10}" for v in vals) for label, vals in rows]
        return "\n".join(lines)


def check_config(cfg: MineConfig) -> None:
    if cfg.range_min >= cfg.range_max:
        raise ConfigError(f"mine.range_min ({cfg.range_min}) must be smaller than mine.range_max ({cfg.range_max})")
    if cfg.num_negatives > cfg.range_max - cfg.range_min:
        raise ConfigError(
            f"mine.num_negatives ({cfg.num_negatives}) does not fit in the rank window "
            f"[{cfg.range_min}, {cfg.range_max}); lower num_negatives or widen the window"
        )
    for name in cfg.sources:
        MINERS.get(name)  # unknown names raise with the valid list
    if len(set(cfg.sources)) != len(cfg.sources):
        raise ConfigError(f"mine.sources lists a miner twice: {cfg.sources}")


class _Excluder:
    """Which corpus rows are labelled positives of a record, by id and by normalised text.

    Normalised texts are interned as small integers (``text_ids``), computed once per corpus row
    touched, so the rules compare integer arrays."""

    def __init__(self, corpus: Corpus, qrels: Optional[Qrels]):
        self.corpus, self.qrels = corpus, qrels or {}
        self._ids: dict[str, int] = {"": 0}  # normalised text -> id; 0 = empty text
        self._row_ids = np.full(len(corpus), -1, dtype=np.int64)
        self._row_counts = np.full(len(corpus), -1, dtype=np.int64)

    def positive_rows(self, r: Record) -> set[int]:
        ids = {d for d, s in self.qrels.get(r.id, {}).items() if s > 0} | r.positive_ids()
        return {self.corpus.index(d) for d in ids if d in self.corpus}

    def text_id(self, text: str, normalised: bool = False) -> int:
        return self._ids.setdefault(text if normalised else normalise_text(text), len(self._ids))

    def _full(self, row: int) -> str:
        return join_title_text(self.corpus.titles[row], self.corpus.texts[row])

    def _fill(self, cache: np.ndarray, rows: np.ndarray, fn) -> np.ndarray:
        for row in np.unique(rows[cache[rows] < 0]).tolist():
            cache[row] = fn(self._full(row))
        return cache[rows]

    def text_ids(self, rows: np.ndarray) -> np.ndarray:
        """Normalised-text ids of corpus ``rows`` (an int array, all >= 0)."""
        return self._fill(self._row_ids, rows, self.text_id)

    def alnum_counts(self, rows: np.ndarray) -> np.ndarray:
        """:func:`ascii_alnum_count` of corpus ``rows``: equal normalised texts have equal counts."""
        return self._fill(self._row_counts, rows, ascii_alnum_count)


RULES = ("labelled_positive", "positive_text", "already_mined", "max_score", "relative_margin", "empty_text")
BLOCK = 4096  # records whose candidates are judged as one (records x depth) array


def _member(rows: np.ndarray, per_record: Sequence[Collection[int]]) -> np.ndarray:
    """(n, depth) bool: rows[i, j] is one of per_record[i] (an id list per record), via one sorted search."""
    width = int(max(rows.max(initial=0), max((max(x, default=0) for x in per_record), default=0))) + 1
    keys = np.fromiter((i * width + v for i, vs in enumerate(per_record) for v in vs), dtype=np.int64)
    return np.isin(np.arange(len(rows))[:, None] * width + rows, keys)


def _arrays(rankings: Sequence[Ranking]) -> tuple[np.ndarray, np.ndarray]:
    """The rankings as (n, depth) rows (-1 padded) and scores, in the miner's score dtype."""
    depth = max((len(r.rows) for r in rankings), default=0)
    dtype = np.result_type(*(np.asarray(r.scores).dtype for r in rankings[:1])) if rankings else np.float64
    rows = np.full((len(rankings), depth), -1, dtype=np.int64)
    scores = np.zeros((len(rankings), depth), dtype=dtype)
    for i, r in enumerate(rankings):
        rows[i, : len(r.rows)] = r.rows
        scores[i, : len(r.scores)] = r.scores
    return rows, scores


def _rule_codes(
    records: Sequence[Record],
    rankings: Sequence[Ranking],
    rows: np.ndarray,
    scores: np.ndarray,
    miner: Miner,
    cfg: MineConfig,
    ex: _Excluder,
) -> np.ndarray:
    """(n, depth) int: -2 no candidate, -1 survivor, k = index in RULES of the first rule that removed it."""
    valid = rows >= 0
    safe = np.where(valid, rows, 0)
    labelled = _member(safe, [ex.positive_rows(r) for r in records])
    # positive_text / empty_text: only candidates whose ASCII-alphanumeric count matches a positive's
    # (or is 0) can normalise to a positive's text (or to ""): only those are normalised.
    # The positives themselves are normalised only for records with such a candidate.
    pos_counts = [{ascii_alnum_count(t) for p in r.positives for t in (p.full_text, p.text)} for r in records]
    counts = np.full(rows.shape, -1, dtype=np.int64)
    need = valid & ~labelled
    counts[need] = ex.alnum_counts(rows[need])
    maybe = need & ((counts == 0) | _member(counts, pos_counts))
    tid = np.full(rows.shape, -1, dtype=np.int64)
    tid[maybe] = ex.text_ids(rows[maybe])
    any_maybe = maybe.any(axis=1)
    pos_ids = [
        {ex.text_id(t, normalised=True) for t in r.positive_texts()} if any_maybe[i] else set()
        for i, r in enumerate(records)
    ]
    positive_text = _member(np.where(maybe, tid, 0), pos_ids) & maybe
    corpus = ex.corpus
    already = _member(
        safe,
        [
            [
                corpus.index(n.doc_id)
                for n in r.negatives
                if n.source == miner.source and n.doc_id and n.doc_id in corpus
            ]
            for r in records
        ],
    )
    # rescored rankings (score_name set) are on one scale for every source
    on_scale = np.array([miner.score_window or k.score_name is not None for k in rankings], dtype=bool)[:, None]
    no = np.zeros(rows.shape, dtype=bool)
    max_score = on_scale & (scores > np.asarray(cfg.max_score, dtype=scores.dtype)) if cfg.max_score is not None else no
    margin = no
    if cfg.relative_margin is not None:
        pos = np.array([np.nan if k.positive_score is None else k.positive_score for k in rankings], dtype=np.float64)
        thr = (pos - np.abs(pos) * cfg.relative_margin).astype(scores.dtype)  # compared at the scores' precision
        margin = on_scale & (scores > thr[:, None])
    empty = tid == 0
    return np.select(
        [~valid, labelled, positive_text, already, max_score, margin, empty], [-2, 0, 1, 2, 3, 4, 5], default=-1
    )


def _select_block(
    records: Sequence[Record],
    rankings: Sequence[Ranking],
    miner: Miner,
    cfg: MineConfig,
    ex: _Excluder,
    stats: MinerStats,
) -> list[list[Negative]]:
    """The negatives of each record (rules, rank window, sampling: see the module doc), counted in ``stats``."""
    rows, scores = _arrays(rankings)
    code = _rule_codes(records, rankings, rows, scores, miner, cfg, ex)
    stats.candidates += int((code != -2).sum())
    for k, rule in enumerate(RULES):
        stats.removed[rule] += int((code == k).sum())
    survive = code == -1
    wrank = np.cumsum(survive, axis=1) - 1
    n_surv = survive.sum(axis=1)
    stats.removed["range_min"] += int(np.minimum(cfg.range_min, n_surv).sum())
    stats.removed["past_range_max"] += int(np.maximum(0, n_surv - cfg.range_max).sum())
    window = survive & (wrank >= cfg.range_min) & (wrank < cfg.range_max)
    if cfg.sampling == "random":
        chosen = window.copy()
        for i in np.flatnonzero(window.sum(axis=1) > cfg.num_negatives).tolist():
            at = np.flatnonzero(window[i])
            pick = seeded_rng(cfg.seed, records[i].id, miner.source.value).sample(range(len(at)), cfg.num_negatives)
            chosen[i] = False
            chosen[i, at[pick]] = True
    else:
        chosen = window & (wrank < cfg.range_min + cfg.num_negatives)
    stats.removed["not_sampled"] += int(window.sum() - chosen.sum())
    counts = chosen.sum(axis=1)
    stats.queries += len(records)
    stats.mined += int(counts.sum())
    stats.short += int((counts < cfg.num_negatives).sum())
    stats.empty += int((counts == 0).sum())
    corpus, seed = ex.corpus, cfg.seed if cfg.sampling == "random" else None
    out: list[list[Negative]] = []
    for i, js in enumerate(np.split(np.flatnonzero(chosen), np.cumsum(counts)[:-1])):
        negs = []
        for j in (js - i * rows.shape[1]).tolist():
            rk = rankings[i]
            row, score, info = int(rows[i, j]), float(scores[i, j]), rk.info
            title, text = corpus.titles[row], corpus.texts[row]
            negs.append(
                Negative(
                    text=text if text.strip() else title,
                    title=title if text.strip() else "",
                    doc_id=corpus.ids[row],
                    source=miner.source,
                    scores={
                        rk.score_name or miner.source.value: round(score, 6),
                        **(rk.extra_scores[j] if rk.extra_scores else {}),
                    },
                    provenance=Provenance(
                        model=miner.model,
                        rank=j + 1,
                        seed=seed,
                        extra={"window_rank": int(wrank[i, j]), **(info[j] if info else {})},
                    ),
                )
            )
        out.append(negs)
    return out


def mine_records(
    records: list[Record],
    dataset: Optional[Dataset],
    cfg: MineConfig,
    *,
    show_progress: bool = True,
    miner_options: Optional[dict[str, dict[str, Any]]] = None,
) -> tuple[list[Record], MineReport]:
    """Add ``cfg.num_negatives`` negatives per source in ``cfg.sources`` to every record.

    Mines ``dataset.corpus`` (required); never adds a labelled positive (``dataset.qrels`` score
    > 0, the record's positives by id or text). Returns new records (input negatives kept, mined
    ones appended) and the per-miner report. ``miner_options`` passes extra keywords to a miner's
    constructor, e.g. ``{"dense": {"embeddings": memmap}}``.
    """
    dataset = stage_dataset("mine_records", dataset, cfg, MineConfig)
    corpus, qrels = dataset.need_corpus("mine"), dataset.qrels
    check_config(cfg)
    report = MineReport(records=len(records))
    ex = _Excluder(corpus, qrels)
    added: list[list[Negative]] = [[] for _ in records]
    for name in cfg.sources:
        t = time.perf_counter()
        miner = MINERS.create(
            name,
            corpus=corpus,
            cfg=cfg,
            qrels=qrels,
            show_progress=show_progress,
            **(miner_options or {}).get(name, {}),
        )
        stats = report.miners.setdefault(name, MinerStats())
        depth = cfg.range_max + max(
            (len(ex.positive_rows(r)) + len(r.positives) + len(r.negatives_from(name)) for r in records), default=0
        )
        rankings = miner.rank(records, min(depth, len(corpus)))
        if len(rankings) != len(records):
            raise RuntimeError(f"miner {name} returned {len(rankings)} rankings for {len(records)} records")
        if cfg.cross_encoder:
            from .rescore import rescore

            rankings = rescore(
                records,
                rankings,
                corpus,
                [ex.positive_rows(r) for r in records],
                cfg.cross_encoder,
                miner.source.value,
                cfg.encoder.batch_size,
                show_progress,
            )
            stats.rescored += sum(len(k.rows) for k in rankings)
        for rule, n in getattr(miner, "removed", {}).items():  # the miner's own filters (click)
            stats.removed[rule] = stats.removed.get(rule, 0) + n
        for b in range(0, len(records), BLOCK):
            for i, negs in enumerate(
                _select_block(records[b : b + BLOCK], rankings[b : b + BLOCK], miner, cfg, ex, stats), start=b
            ):
                added[i].extend(negs)
        stats.wall_s = time.perf_counter() - t
        log.info("%s: %d negatives for %d queries in %.1f s", name, stats.mined, len(records), stats.wall_s)
    out = [r.model_copy(update={"negatives": [*r.negatives, *new]}) for r, new in zip(records, added)]
    return out, report
