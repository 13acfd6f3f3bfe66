"""A small, seeded click-log simulator over a BEIR folder, for tests and the demo.

Click-log format (impressions JSONL, what ``negforge mine --sources click`` reads): one line
per results page shown to one user::

    {"query_id": "13",                      # or "query": "the query text" (or both)
     "shown": [{"doc_id": "4983", "position": 1}, {"doc_id": "72159", "position": 2}, ...],
     "clicks": ["4983", {"doc_id": "72159", "dwell_s": 4.2}]}

* ``query_id`` matches a record id (a BEIR query id); ``query`` alone is matched by normalised
  text. With both, the id is the key and the text is used to find related queries.
* ``position`` is 1-based; every clicked doc must be in ``shown``.
* a click is a doc id, or an object with ``dwell_s`` (seconds on the page); clicks shorter than
  the click miner's ``min_dwell_s`` count as not clicked. Other keys are ignored.

The simulated users see the BM25 top ``top_n`` for the query (with probability ``swap_prob``
two neighbours are swapped, as a randomised ranking would do, which lets the position bias be
estimated), examine position k with probability ``1 / k ** eta``, click an examined relevant
document with ``p_click_relevant`` (long dwell) and an examined non-relevant one with
``p_click_other`` (short dwell), and stop after a relevant click with ``p_stop``. A share
``text_share`` of the impressions name the query by text only.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from pydantic import Field

from negforge.synth.data import Dataset
from negforge.synth.errors import ConfigError
from negforge.synth.io import write_lines
from negforge.synth.reports import Report

log = logging.getLogger(__name__)


@dataclass
class ClickSim:
    sessions_per_query: int = 20
    top_n: int = 10
    eta: float = 1.0  # examination probability 1 / position ** eta
    p_click_relevant: float = 0.9
    p_click_other: float = 0.08
    p_stop: float = 0.5  # stop after a satisfying click
    swap_prob: float = 0.3
    text_share: float = 0.1
    seed: int = 0
    limit: Optional[int] = None  # first N qrels queries only

    def __post_init__(self) -> None:
        for name in ("p_click_relevant", "p_click_other", "p_stop", "swap_prob", "text_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"click simulator: {name} must be in [0, 1], got {getattr(self, name)}")
        if self.sessions_per_query < 1 or self.top_n < 2 or self.eta < 0:
            raise ConfigError("click simulator: sessions_per_query >= 1, top_n >= 2 and eta >= 0 are required")


class ClickLogStats(Report):
    queries: int = 0
    impressions: int = 0
    clicks: int = 0
    relevant_clicks: int = 0
    clicks_by_position: dict[int, int] = Field(default_factory=dict)
    sim: dict = Field(default_factory=dict)


def _dwell(rng: random.Random, relevant: bool) -> float:
    return round(rng.lognormvariate(math.log(60.0 if relevant else 6.0), 0.6), 1)


def generate_click_log(
    data: Dataset,
    out_path: str | os.PathLike,
    sim: ClickSim | None = None,
    cache_dir: str | os.PathLike | None = None,
    show_progress: bool = False,
) -> ClickLogStats:
    """Simulate ``sim.sessions_per_query`` impressions per qrels query of ``data``; write JSONL."""
    from .bm25 import BM25Index

    sim = sim or ClickSim()
    rng = random.Random(sim.seed)
    corpus, qrels = data.need_corpus("the click simulator"), data.need_qrels("the click simulator")
    qids = [q for q in qrels if q in data.queries][: sim.limit]
    if not qids:
        raise ConfigError("click simulator: the qrels name no query of queries.jsonl")
    index = BM25Index(corpus, cache_dir=cache_dir, show_progress=show_progress)
    _, rows = index.search([data.queries[q] for q in qids], sim.top_n)
    stats = ClickLogStats(queries=len(qids), sim=asdict(sim))
    lines = []
    for qid, ranked in zip(qids, rows):
        docs = [corpus.ids[r] for r in ranked if r >= 0]
        relevant = {d for d, s in qrels[qid].items() if s > 0}
        for _ in range(sim.sessions_per_query):
            shown = list(docs)
            if len(shown) > 1 and rng.random() < sim.swap_prob:
                i = rng.randrange(len(shown) - 1)
                shown[i], shown[i + 1] = shown[i + 1], shown[i]
            clicks = []
            for pos, doc in enumerate(shown, start=1):
                if rng.random() >= 1.0 / pos**sim.eta:
                    continue  # not examined
                rel = doc in relevant
                if rng.random() < (sim.p_click_relevant if rel else sim.p_click_other):
                    clicks.append({"doc_id": doc, "dwell_s": _dwell(rng, rel)})
                    stats.clicks += 1
                    stats.relevant_clicks += rel
                    stats.clicks_by_position[pos] = stats.clicks_by_position.get(pos, 0) + 1
                    if rel and rng.random() < sim.p_stop:
                        break
            key = {"query": data.queries[qid]} if rng.random() < sim.text_share else {"query_id": qid}
            lines.append(
                json.dumps(
                    {**key, "shown": [{"doc_id": d, "position": p} for p, d in enumerate(shown, 1)], "clicks": clicks}
                )
                + "\n"
            )
            stats.impressions += 1
    write_lines(Path(out_path), lines)
    log.info(
        "click log %s: %d impressions, %d clicks (%d on relevant documents) for %d queries",
        out_path,
        stats.impressions,
        stats.clicks,
        stats.relevant_clicks,
        len(qids),
    )
    return stats
