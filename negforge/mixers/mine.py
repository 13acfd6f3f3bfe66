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

Negatives carry ``source``, ``provenance.rank`` (1-based rank in the miner's own list, positives
included), ``provenance.extra.window_rank`` (0-based rank among the survivors) and
``scores[source]``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Optional, Protocol, Sequence

from pydantic import Field

from negforge.synth.config import MineConfig
from negforge.synth.data import Corpus, Dataset, Qrels
from negforge.synth.errors import ConfigError
from negforge.synth.registry import Registry
from negforge.synth.reports import Report, Seconds
from negforge.synth.schema import Negative, Provenance, Record, Source, join_title_text, normalise_text
from negforge.synth.seeding import seeded_rng
from negforge.synth.stages import stage_dataset

log = logging.getLogger(__name__)

FILTERS = ("labelled_positive", "positive_text", "already_mined", "max_score", "relative_margin",
           "range_min", "past_range_max", "not_sampled", "empty_text")


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
        rows = [("queries", [s.queries for s in self.miners.values()]),
                ("candidates", [s.candidates for s in self.miners.values()])]
        keys = list(dict.fromkeys([*FILTERS, *(k for s in self.miners.values() for k in s.removed)]))
        rows += [(f"- {f}", [s.removed.get(f, 0) for s in self.miners.values()]) for f in keys
                 if any(s.removed.get(f, 0) for s in self.miners.values())]
        if any(s.rescored for s in self.miners.values()):
            rows.append(("cross-encoder rescored", [s.rescored for s in self.miners.values()]))
        rows += [("mined", [s.mined for s in self.miners.values()]),
                 ("queries short", [s.short for s in self.miners.values()]),
                 ("queries empty", [s.empty for s in self.miners.values()]),
                 ("seconds", [f"{s.wall_s:.1f}" for s in self.miners.values()])]
        width = max(len(r[0]) for r in rows)
        lines = [f"{'':<{width}}  " + "  ".join(f"{n:>10}" for n in names)]
        lines += [f"{label:<{width}}  " + "  ".join(f"{v:>10}" for v in vals) for label, vals in rows]
        return "\n".join(lines)


def check_config(cfg: MineConfig) -> None:
    if cfg.range_min >= cfg.range_max:
        raise ConfigError(f"mine.range_min ({cfg.range_min}) must be smaller than mine.range_max ({cfg.range_max})")
    if cfg.num_negatives > cfg.range_max - cfg.range_min:
        raise ConfigError(f"mine.num_negatives ({cfg.num_negatives}) does not fit in the rank window "
                          f"[{cfg.range_min}, {cfg.range_max}); lower num_negatives or widen the window")
    for name in cfg.sources:
        MINERS.get(name)  # unknown names raise with the valid list
    if len(set(cfg.sources)) != len(cfg.sources):
        raise ConfigError(f"mine.sources lists a miner twice: {cfg.sources}")


class _Excluder:
    """Which corpus rows are labelled positives of a record, by id and by normalised text."""

    def __init__(self, corpus: Corpus, qrels: Optional[Qrels]):
        self.corpus, self.qrels = corpus, qrels or {}
        self._norm: dict[int, str] = {}

    def positive_rows(self, r: Record) -> set[int]:
        ids = {d for d, s in self.qrels.get(r.id, {}).items() if s > 0} | r.positive_ids()
        return {self.corpus.index(d) for d in ids if d in self.corpus}

    def text_of(self, row: int) -> str:
        if row not in self._norm:
            self._norm[row] = normalise_text(join_title_text(self.corpus.titles[row], self.corpus.texts[row]))
        return self._norm[row]


def _select(r: Record, ranking: Ranking, miner: Miner, cfg: MineConfig, ex: _Excluder,
            stats: MinerStats) -> list[Negative]:
    pos_rows = ex.positive_rows(r)
    pos_texts = r.positive_texts()
    already = {n.doc_id for n in r.negatives if n.source == miner.source and n.doc_id}
    threshold = None
    score_window = miner.score_window or ranking.score_name is not None  # rescored: one scale for every source
    if score_window and cfg.relative_margin is not None and ranking.positive_score is not None:
        threshold = ranking.positive_score - abs(ranking.positive_score) * cfg.relative_margin
    survivors = []
    for rank, (row, score) in enumerate(zip(ranking.rows, ranking.scores), start=1):
        row = int(row)
        if row < 0:
            continue
        stats.candidates += 1
        rule = None
        if row in pos_rows:
            rule = "labelled_positive"
        elif ex.text_of(row) in pos_texts:
            rule = "positive_text"
        elif ex.corpus.ids[row] in already:
            rule = "already_mined"
        elif score_window and cfg.max_score is not None and score > cfg.max_score:
            rule = "max_score"
        elif threshold is not None and score > threshold:
            rule = "relative_margin"
        elif not ex.text_of(row):
            rule = "empty_text"
        if rule:
            stats.removed[rule] += 1
        else:
            survivors.append((rank, row, float(score), len(survivors)))
    stats.removed["range_min"] += min(cfg.range_min, len(survivors))
    stats.removed["past_range_max"] += max(0, len(survivors) - cfg.range_max)
    window = survivors[cfg.range_min:cfg.range_max]
    if cfg.sampling == "random" and len(window) > cfg.num_negatives:
        chosen = sorted(seeded_rng(cfg.seed, r.id, miner.source.value).sample(window, cfg.num_negatives))
    else:
        chosen = window[:cfg.num_negatives]
    stats.removed["not_sampled"] += len(window) - len(chosen)
    out = []
    for rank, row, score, wrank in chosen:
        doc_id, title, text = ex.corpus.ids[row], ex.corpus.titles[row], ex.corpus.texts[row]
        extra = {"window_rank": wrank, **(ranking.info[rank - 1] if ranking.info else {})}
        out.append(Negative(
            text=text if text.strip() else title, title=title if text.strip() else "", doc_id=doc_id,
            source=miner.source, scores={ranking.score_name or miner.source.value: round(score, 6),
                                         **(ranking.extra_scores[rank - 1] if ranking.extra_scores else {})},
            provenance=Provenance(model=miner.model, rank=rank, extra=extra,
                                  seed=cfg.seed if cfg.sampling == "random" else None)))
    return out


def mine_records(records: list[Record], dataset: Optional[Dataset], cfg: MineConfig, *, show_progress: bool = True,
                 miner_options: Optional[dict[str, dict[str, Any]]] = None) -> tuple[list[Record], MineReport]:
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
        miner = MINERS.create(name, corpus=corpus, cfg=cfg, qrels=qrels, show_progress=show_progress,
                              **(miner_options or {}).get(name, {}))
        stats = report.miners.setdefault(name, MinerStats())
        depth = cfg.range_max + max((len(ex.positive_rows(r)) + len(r.positives) + len(r.negatives_from(name))
                                     for r in records), default=0)
        rankings = miner.rank(records, min(depth, len(corpus)))
        if len(rankings) != len(records):
            raise RuntimeError(f"miner {name} returned {len(rankings)} rankings for {len(records)} records")
        if cfg.cross_encoder:
            from .rescore import rescore

            rankings = rescore(records, rankings, corpus, [ex.positive_rows(r) for r in records], cfg.cross_encoder,
                               miner.source.value, cfg.batch_size, show_progress)
            stats.rescored += sum(len(k.rows) for k in rankings)
        for rule, n in getattr(miner, "removed", {}).items():  # the miner's own filters (click)
            stats.removed[rule] = stats.removed.get(rule, 0) + n
        for i, (r, ranking) in enumerate(zip(records, rankings)):
            negs = _select(r, ranking, miner, cfg, ex, stats)
            stats.queries += 1
            stats.mined += len(negs)
            stats.short += len(negs) < cfg.num_negatives
            stats.empty += not negs
            added[i].extend(negs)
        stats.wall_s = time.perf_counter() - t
        log.info("%s: %d negatives for %d queries in %.1f s", name, stats.mined, len(records), stats.wall_s)
    out = [r.model_copy(update={"negatives": [*r.negatives, *new]}) for r, new in zip(records, added)]
    return out, report
