"""Click-log negatives: documents users saw and passed over, and documents of related queries.

Reads impressions JSONL (format in :mod:`negforge.mixers.clicklog_gen`). For each record (matched by
query id, or by normalised query text) and each shown document:

* **examination** is position-biased: a document at position k was seen with propensity
  ``theta[k]`` (``mine.propensities``, or fitted from the log with a position-based click
  model, :func:`fit_propensities`), and with certainty when it sits *above* a clicked one
  (the user scrolled past it);
* ``examined`` = the sum of those over its impressions; ``ctr`` = clicks / examined (the
  position-debiased click rate);
* it is a **skip** candidate when it was passed over at least once (``skip_above``: shown above
  a click; ``skip_next``: right below one), has ``min_impressions``, and ``ctr <= max_ctr``;
  score = ``examined * (1 - ctr)``, the expected number of times it was seen and not clicked.

**Related** candidates come after the skips: documents clicked (ctr > max_ctr) for another
query that shares a clicked document with this one, or whose text is similar (token Jaccard
>= ``related_text_sim``), but never clicked for this one; score = relatedness * their ctr.
Clicks with ``dwell_s`` below ``min_dwell_s`` are bounces and count as not clicked.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from negforge.synth.data import Corpus
from negforge.synth.errors import ConfigError, InputError
from negforge.synth.io import iter_jsonl
from negforge.synth.schema import Record, Source, normalise_text

log = logging.getLogger(__name__)


@dataclass
class Impression:
    key: str  # "id:<query_id>" or "text:<normalised query>"
    text: Optional[str]
    shown: list[tuple[str, int]]  # (doc_id, position), by position
    clicks: dict[str, Optional[float]]  # doc_id -> dwell seconds (None: not given)


def _key(query_id: Optional[str], text: Optional[str]) -> str:
    return f"id:{query_id}" if query_id is not None else f"text:{normalise_text(text or '')}"


def load_click_log(path: str | os.PathLike) -> list[Impression]:
    """Parse and validate an impressions JSONL file; errors name the file and line."""
    out = []
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        qid, text = obj.get("query_id"), obj.get("query")
        if qid is None and not (isinstance(text, str) and text.strip()):
            raise InputError(f"{where}: an impression needs 'query_id' or a non-empty 'query'")
        shown = obj.get("shown")
        if not isinstance(shown, list) or not shown:
            raise InputError(f"{where}: 'shown' must be a non-empty list of {{doc_id, position}}")
        pairs = []
        for s in shown:
            if (
                not isinstance(s, dict)
                or s.get("doc_id") is None
                or not isinstance(s.get("position"), int)
                or s["position"] < 1
            ):
                raise InputError(f"{where}: each 'shown' entry needs 'doc_id' and an integer 'position' >= 1")
            pairs.append((str(s["doc_id"]), s["position"]))
        clicks: dict[str, Optional[float]] = {}
        for c in obj.get("clicks") or []:
            doc, dwell = (c.get("doc_id"), c.get("dwell_s")) if isinstance(c, dict) else (c, None)
            if doc is None or (dwell is not None and not isinstance(dwell, (int, float))):
                raise InputError(f'{where}: a click is a doc id or {{"doc_id": ..., "dwell_s": seconds}}')
            clicks[str(doc)] = max(float(dwell), clicks.get(str(doc)) or 0.0) if dwell is not None else None
        missing = set(clicks) - {d for d, _ in pairs}
        if missing:
            raise InputError(f"{where}: clicked doc {sorted(missing)[0]!r} is not in 'shown'")
        out.append(
            Impression(_key(None if qid is None else str(qid), text), text, sorted(pairs, key=lambda p: p[1]), clicks)
        )
    if not out:
        raise InputError(f"{path}: the click log is empty")
    return out


def _clicked(imp: Impression, min_dwell_s: float) -> set[str]:
    return {d for d, dwell in imp.clicks.items() if dwell is None or dwell >= min_dwell_s}


def fit_propensities(impressions: list[Impression], min_dwell_s: float = 0.0, iters: int = 50) -> np.ndarray:
    """Examination probability by position (index 0 = position 1, scaled so position 1 = 1).

    EM for the position-based click model P(click) = theta[position] * gamma[query, doc]; it
    separates position from relevance where documents appear at several positions."""
    pos: list[int] = []
    pair: list[int] = []
    click: list[bool] = []
    pair_ids: dict[tuple[str, str], int] = {}
    for imp in impressions:
        clicked = _clicked(imp, min_dwell_s)
        for doc, p in imp.shown:
            pos.append(p - 1)
            pair.append(pair_ids.setdefault((imp.key, doc), len(pair_ids)))
            click.append(doc in clicked)
    pos_a, pair_a, c = np.array(pos), np.array(pair), np.array(click, dtype=np.float64)
    theta, gamma = np.full(pos_a.max() + 1, 0.5), np.full(len(pair_ids), 0.5)
    n_pos, n_pair = np.bincount(pos_a), np.bincount(pair_a)
    for _ in range(iters):
        t, g = theta[pos_a], gamma[pair_a]
        denom = np.maximum(1 - t * g, 1e-12)
        e_post = c + (1 - c) * t * (1 - g) / denom  # P(examined | observation)
        a_post = c + (1 - c) * (1 - t) * g / denom  # P(attractive | observation)
        theta = np.bincount(pos_a, e_post, minlength=len(theta)) / np.maximum(n_pos, 1)
        gamma = np.bincount(pair_a, a_post, minlength=len(gamma)) / np.maximum(n_pair, 1)
    return np.clip(theta / max(theta[0], 1e-12), 0.01, 1.0)


@dataclass
class PairStats:
    impressions: int = 0
    clicks: int = 0
    examined: float = 0.0
    skip_above: int = 0
    skip_next: int = 0

    def add(self, o: PairStats) -> None:
        self.impressions += o.impressions
        self.clicks += o.clicks
        self.examined += o.examined
        self.skip_above += o.skip_above
        self.skip_next += o.skip_next

    @property
    def ctr(self) -> float:
        return min(1.0, self.clicks / self.examined) if self.examined > 0 else 0.0


@dataclass
class ClickLog:
    """Per (query key, doc) statistics of an impressions log under the given propensities."""

    propensities: np.ndarray
    pairs: dict[str, dict[str, PairStats]] = field(default_factory=lambda: defaultdict(dict))
    texts: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, impressions: list[Impression], propensities: Optional[list[float]], min_dwell_s: float):
        if propensities is not None:
            if not propensities or not all(0 < p <= 1 for p in propensities):
                raise ConfigError("mine.propensities must be a non-empty list of probabilities in (0, 1]")
            theta = np.asarray(propensities, dtype=np.float64)
        else:
            theta = fit_propensities(impressions, min_dwell_s)
        log_ = cls(theta)
        for imp in impressions:
            if imp.text:
                log_.texts.setdefault(imp.key, imp.text)
            clicked = _clicked(imp, min_dwell_s)
            click_pos = [p for d, p in imp.shown if d in clicked]
            last = max(click_pos, default=0)
            for doc, p in imp.shown:
                s = log_.pairs[imp.key].setdefault(doc, PairStats())
                s.impressions += 1
                if doc in clicked:
                    s.clicks += 1
                    s.examined += 1.0
                    continue
                above = p < last
                s.examined += 1.0 if above else float(theta[min(p, len(theta)) - 1])
                s.skip_above += above
                s.skip_next += (not above) and (p - 1) in click_pos
        return log_


class ClickMiner:
    """The ``click`` miner (see the module doc). Needs ``mine.click.log``; settings from ``mine.click``
    (keywords override them)."""

    score_window = False
    model = None

    def __init__(
        self,
        corpus: Corpus,
        cfg,
        qrels=None,
        show_progress: bool = True,
        min_dwell_s: Optional[float] = None,
        max_ctr: Optional[float] = None,
        related_text_sim: Optional[float] = None,
        impressions: Optional[list[Impression]] = None,
    ):
        c = cfg.click
        if impressions is None and not c.log:
            raise ConfigError(
                "the click miner needs a click log: set mine.click.log (or --click-log FILE); "
                "`negforge clicklog --data BEIR --output clicks.jsonl` writes a demo one"
            )
        self.source, self.corpus, self.cfg = Source.click, corpus, cfg
        self.min_dwell_s = c.min_dwell_s if min_dwell_s is None else min_dwell_s
        self.max_ctr = c.max_ctr if max_ctr is None else max_ctr
        self.related_text_sim = c.related_text_sim if related_text_sim is None else related_text_sim
        self.min_impressions = c.min_impressions
        imps = impressions if impressions is not None else load_click_log(c.log)
        self.log = ClickLog.build(imps, c.propensities, self.min_dwell_s)
        self.removed: dict[str, int] = defaultdict(int)
        log.info(
            "click log: %d impressions, %d queries; propensities %s",
            len(imps),
            len(self.log.pairs),
            np.round(self.log.propensities[:10], 3).tolist(),
        )

    def _merged(self, keys: list[str]) -> dict[str, PairStats]:
        out: dict[str, PairStats] = {}
        for k in keys:
            for doc, s in self.log.pairs.get(k, {}).items():
                out.setdefault(doc, PairStats()).add(s)
        return out

    def _clicked(self, stats: dict[str, PairStats]) -> set[str]:
        return {d for d, s in stats.items() if s.clicks and s.ctr > self.max_ctr}

    def _related(self, keys: list[str], text: str, clicked: set[str], by_doc, by_token, tokens) -> dict[str, float]:
        """Other query keys -> relatedness in (0, 1]: co-click Jaccard or query-text Jaccard."""
        rel: dict[str, float] = {}
        for d in clicked:
            for k2 in by_doc.get(d, ()):
                if k2 not in keys and k2 not in rel:
                    c2 = self._clicked(self.log.pairs[k2])
                    rel[k2] = len(clicked & c2) / len(clicked | c2)
        mine = tokens(text)
        for k2 in {k for t in mine for k in by_token.get(t, ())} - set(keys):
            other = tokens(self.log.texts[k2])
            sim = len(mine & other) / len(mine | other)
            if sim >= self.related_text_sim:
                rel[k2] = max(rel.get(k2, 0.0), sim)
        return rel

    def rank(self, records: list[Record], depth: int):
        from .bm25 import Tokenizer
        from .mine import Ranking

        tok = Tokenizer()
        for r in records:
            self.log.texts.setdefault(f"id:{r.id}", r.query)
        tokens = lambda t: set(tok(t))  # noqa: E731
        by_doc, by_token = defaultdict(set), defaultdict(set)
        for k, stats in self.log.pairs.items():
            for d in self._clicked(stats):
                by_doc[d].add(k)
            for t in tokens(self.log.texts.get(k, "")):
                by_token[t].add(k)
        out = []
        for r in records:
            keys = [k for k in (f"id:{r.id}", _key(None, r.query)) if k in self.log.pairs]
            stats = self._merged(keys)
            clicked = self._clicked(stats)
            cands: list[tuple[float, str, dict]] = []
            for doc, s in stats.items():
                rule = (
                    "unknown_doc"
                    if doc not in self.corpus
                    else "min_impressions"
                    if s.impressions < self.min_impressions
                    else "clicked"
                    if s.ctr > self.max_ctr
                    else "not_skipped"
                    if not (s.skip_above or s.skip_next)
                    else None
                )
                if rule:
                    self.removed[rule] += 1
                    continue
                cands.append(
                    (
                        s.examined * (1 - s.ctr),
                        doc,
                        {
                            "signal": "skip_above" if s.skip_above else "skip_next",
                            "impressions": s.impressions,
                            "clicks": s.clicks,
                            "examined": round(s.examined, 3),
                        },
                    )
                )
            cands.sort(key=lambda c: (-c[0], c[1]))
            related: dict[str, tuple[float, dict]] = {}
            for k2, strength in self._related(keys, r.query, clicked, by_doc, by_token, tokens).items():
                for doc, s in self.log.pairs[k2].items():
                    if doc in stats or doc not in self.corpus or not s.clicks or s.ctr <= self.max_ctr:
                        continue
                    if s.impressions < self.min_impressions:
                        self.removed["min_impressions"] += 1
                        continue
                    score = strength * s.ctr
                    if score > related.get(doc, (0.0, {}))[0]:
                        related[doc] = (
                            score,
                            {
                                "signal": "related",
                                "related_query": k2,
                                "relatedness": round(strength, 3),
                                "clicks": s.clicks,
                            },
                        )
            cands += sorted(((sc, d, info) for d, (sc, info) in related.items()), key=lambda c: (-c[0], c[1]))
            cands = cands[:depth]
            out.append(
                Ranking(
                    rows=[self.corpus.index(d) for _, d, _ in cands],
                    scores=[s for s, _, _ in cands],
                    info=[i for _, _, i in cands],
                )
            )
        return out
