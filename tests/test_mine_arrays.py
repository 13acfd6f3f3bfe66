"""The array-based mining rules give exactly the output of the per-candidate loop they replaced.

``_reference_select`` is the loop negforge used before (kept here verbatim as the oracle); both run
on the same real SciFact slice and rankings, over configurations that exercise every rule."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import negforge.mixers.mine as mine
from negforge.mixers.mine import MINERS, MinerStats, Ranking, _Excluder, mine_records
from negforge.synth.config import MineConfig
from negforge.synth.data import Corpus, Dataset, load_beir, records_from_beir
from negforge.synth.schema import Negative, Provenance, Source, ascii_alnum_count, join_title_text, normalise_text
from negforge.synth.seeding import seeded_rng


def _reference_normalise(text):
    kept = "".join(c.lower() if c.isalnum() else " " for c in text)
    return " ".join(kept.split())


def _reference_select(r, ranking, miner, cfg, corpus, qrels, stats):
    norm = lambda row: _reference_normalise(join_title_text(corpus.titles[row], corpus.texts[row]))  # noqa: E731
    ids = {d for d, s in qrels.get(r.id, {}).items() if s > 0} | r.positive_ids()
    pos_rows = {corpus.index(d) for d in ids if d in corpus}
    pos_texts = {_reference_normalise(p.full_text) for p in r.positives} | {
        _reference_normalise(p.text) for p in r.positives
    }
    already = {n.doc_id for n in r.negatives if n.source == miner.source and n.doc_id}
    threshold = None
    score_window = miner.score_window or ranking.score_name is not None
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
        elif norm(row) in pos_texts:
            rule = "positive_text"
        elif corpus.ids[row] in already:
            rule = "already_mined"
        elif score_window and cfg.max_score is not None and score > cfg.max_score:
            rule = "max_score"
        elif threshold is not None and score > threshold:
            rule = "relative_margin"
        elif not norm(row):
            rule = "empty_text"
        if rule:
            stats.removed[rule] += 1
        else:
            survivors.append((rank, row, float(score), len(survivors)))
    stats.removed["range_min"] += min(cfg.range_min, len(survivors))
    stats.removed["past_range_max"] += max(0, len(survivors) - cfg.range_max)
    window = survivors[cfg.range_min : cfg.range_max]
    if cfg.sampling == "random" and len(window) > cfg.num_negatives:
        chosen = sorted(seeded_rng(cfg.seed, r.id, miner.source.value).sample(window, cfg.num_negatives))
    else:
        chosen = window[: cfg.num_negatives]
    stats.removed["not_sampled"] += len(window) - len(chosen)
    out = []
    for rank, row, score, wrank in chosen:
        doc_id, title, text = corpus.ids[row], corpus.titles[row], corpus.texts[row]
        extra = {"window_rank": wrank, **(ranking.info[rank - 1] if ranking.info else {})}
        out.append(
            Negative(
                text=text if text.strip() else title,
                title=title if text.strip() else "",
                doc_id=doc_id,
                source=miner.source,
                scores={
                    ranking.score_name or miner.source.value: round(score, 6),
                    **(ranking.extra_scores[rank - 1] if ranking.extra_scores else {}),
                },
                provenance=Provenance(
                    model=miner.model, rank=rank, extra=extra, seed=cfg.seed if cfg.sampling == "random" else None
                ),
            )
        )
    stats.queries += 1
    stats.mined += len(out)
    stats.short += len(out) < cfg.num_negatives
    stats.empty += not out
    return out


class _Fixed:
    """A miner that returns given rankings (so both implementations see the very same candidates)."""

    def __init__(self, source, score_window, rankings):
        self.source, self.model, self.score_window, self._rankings = source, "m", score_window, rankings

    def rank(self, records, depth):
        return self._rankings


def _compare(records, corpus, qrels, cfg, miner):
    ref_stats = MinerStats()
    ref = [
        _reference_select(r, k, miner, cfg, corpus, qrels, ref_stats) for r, k in zip(records, miner.rank(records, 0))
    ]
    stats = MinerStats()
    got = mine._select_block(records, miner.rank(records, 0), miner, cfg, _Excluder(corpus, qrels), stats)
    dump = lambda negs: [[n.model_dump(mode="json") for n in ns] for ns in negs]  # noqa: E731
    assert dump(got) == dump(ref)
    assert stats.to_dict() == ref_stats.to_dict()
    return stats


@pytest.fixture(scope="module")
def slice_(tiny_beir):
    beir = load_beir(tiny_beir, "train")
    c = beir.corpus
    # add corpus duplicates of positives (other id, punctuation/case changed), an empty doc and a Unicode one
    records = records_from_beir(beir)
    ids, titles, texts = list(c.ids), list(c.titles), list(c.texts)
    for i, r in enumerate(records[:6]):
        p = r.positives[0]
        ids.append(f"dup{i}")
        titles.append(p.title.upper() if p.title else "")
        texts.append(p.text.replace(",", " ,").replace(".", "!") + "  ")
    ids += ["empty", "unicode"]
    titles += ["", "Straße"]
    texts += ["  ...  ", "ΣΑΣ İstanbul K-value 1½"]
    corpus = Corpus(ids=ids, titles=titles, texts=texts)
    return corpus, beir.qrels, records


def _rankings(corpus, records, depth, seed, with_info=False, with_missing=False):
    rng = np.random.default_rng(seed)
    out = []
    for i, r in enumerate(records):
        rows = rng.permutation(len(corpus))[:depth].astype(np.int64)
        pos = [corpus.index(p.doc_id) for p in r.positives if p.doc_id in corpus]
        rows[: len(pos)] = pos  # positives ranked on top, as a real miner does
        rows[-6:] = np.arange(len(corpus) - 8, len(corpus) - 2)  # the duplicates, empty and Unicode docs
        rows[-2:] = [len(corpus) - 2, len(corpus) - 1]
        scores = np.sort(rng.uniform(0.2, 0.9, depth).astype(np.float32))[::-1]
        if with_missing:
            rows[5:8] = -1
        info = [{"clicks": int(j)} for j in range(depth)] if with_info else None
        rescored = i % 5 == 1  # as negforge.mixers.rescore hands them back: another score name, extra scores
        out.append(
            Ranking(
                rows=rows,
                scores=scores,
                positive_score=None if i % 7 == 3 else float(scores[2]),
                info=info,
                score_name="cross_encoder" if rescored else None,
                extra_scores=[{"bm25": float(j)} for j in range(depth)] if rescored else None,
            )
        )
    return out


CONFIGS = [
    dict(num_negatives=4, range_min=0, range_max=30),
    dict(num_negatives=3, range_min=2, range_max=12, max_score=0.7, relative_margin=0.05),
    dict(num_negatives=5, range_min=1, range_max=40, relative_margin=0.0, sampling="random", seed=3),
    dict(num_negatives=8, range_min=0, range_max=10, max_score=0.5),
]


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("score_window", [True, False])
def test_rules_match_the_reference_loop(slice_, cfg, score_window):
    corpus, qrels, records = slice_
    # half the records already have negatives from this source (already_mined), one with a doc outside the corpus
    ranks = _rankings(corpus, records, 45, seed=len(str(cfg)), with_info=score_window, with_missing=not score_window)
    records = [
        r.model_copy(
            update={
                "negatives": [
                    Negative(text="x", doc_id=corpus.ids[int(k.rows[j])], source=Source.dense) for j in (9, 10, 11)
                ]
                + [Negative(text="y", doc_id="not-in-corpus", source=Source.dense)]
            }
        )
        if i % 2
        else r
        for i, (r, k) in enumerate(zip(records, ranks))
    ]
    stats = _compare(
        records, corpus, qrels, MineConfig(sources=["dense"], **cfg), _Fixed(Source.dense, score_window, ranks)
    )
    assert stats.removed["labelled_positive"] and stats.removed["positive_text"] >= 6
    assert stats.removed["already_mined"] and stats.removed["empty_text"] + stats.removed["past_range_max"]


def test_real_bm25_rankings_match(slice_, tmp_path):
    corpus, qrels, records = slice_
    cfg = MineConfig(sources=["bm25"], num_negatives=6, range_min=1, range_max=25, cache_dir=str(tmp_path))
    miner = MINERS.create("bm25", corpus=corpus, cfg=cfg, qrels=qrels, show_progress=False)
    ranks = miner.rank(records, 40)
    stats = _compare(records, corpus, qrels, cfg, _Fixed(Source.bm25, False, ranks))
    assert stats.mined >= 5 * len(records) and stats.removed["positive_text"] >= 1
    out, report = mine_records(records, Dataset(corpus=corpus, qrels=qrels), cfg, show_progress=False)
    assert report.miners["bm25"].removed["labelled_positive"] > 0
    assert sum(bool(r.negatives) for r in out) >= len(out) - 1


def test_fast_normalise_is_the_reference():
    texts = [json.dumps(x) for x in range(3)] + [
        "",
        "   ",
        "ABC def_ghi-jk\x00\x7f",
        "Straße ΣΑΣ ΣΑΣ. Σ",
        "İstanbul K ǅ ẞ Ωmega ½ ² ٣ 〇 日本語 —dash\u00a0nb\tT\nN ﬁ",
        "".join(chr(i) for i in range(1, 0x3000) if not 0xD800 <= i < 0xE000),
    ]
    for t in texts:
        assert normalise_text(t) == _reference_normalise(t)
        assert ascii_alnum_count(t) == ascii_alnum_count(normalise_text(t))


def test_alnum_count_invariant_covers_every_character():
    # the only characters whose lower case gains an ASCII letter or digit are the two the pre-check knows
    gain = [
        chr(i)
        for i in range(sys.maxunicode + 1)
        if not chr(i).isascii() and chr(i).isalnum() and any(x.isascii() and x.isalnum() for x in chr(i).lower())
    ]
    assert gain == ["\u0130", "\u212a"]
