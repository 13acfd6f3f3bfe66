"""The hybrid mixer: per query, ``k`` verified negatives drawn from the sources by ratio.

A pure, deterministic function of (record, config, seed, epoch); every random choice uses a
local RNG seeded by sha256(seed, record id, epoch, source).

1. **Pool.** Only verified-kept negatives (``n.kept``). With ``require_verified`` an
   unverified negative is an error (run ``negforge verify`` first); without it, unverified
   negatives are usable and rejected ones still dropped. Sources with ratio 0 or not in
   ``ratios`` are left out (``unlisted``).
2. **Clean.** In a fixed order (sources by ratio, highest first; within a source hardest
   first) drop a negative that equals a positive (doc id or normalised text:
   ``same_as_positive``), repeats an earlier one's normalised text (``duplicate``) or, with
   ``dedup_cosine``, has embedding cosine above it with a positive or an earlier negative
   (``near_duplicate``). The positive itself is never touched.
3. **Quotas.** ``k * ratio / sum(ratios)``, rounded by largest remainder. A source with fewer
   negatives than its quota gives the rest to the sources that have spare, proportionally to
   their ratios, repeated until ``k`` is reached or no source has spare (then the record is
   ``short``).
4. **Draw.** A seeded sample of the source's pool. With ``curriculum`` the first
   ``round(quota * min(1, (epoch + 1) / epochs))`` are the hardest (highest
   ``scores["embedding"]``, else the miner's score / rank) and the rest a sample of the others:
   the hard share grows each epoch to all-hardest in the last one. The chosen negatives are
   shuffled (seeded) so that a trainer taking the first n sees the mix.
"""

from __future__ import annotations

import logging
import math
import random
from typing import Optional

import numpy as np
from pydantic import Field

from negforge.synth.config import MixConfig
from negforge.synth.data import Dataset
from negforge.synth.errors import InputError
from negforge.synth.models import DEFAULT_ENCODER
from negforge.synth.reports import Report
from negforge.synth.schema import Negative, Record, normalise_text
from negforge.synth.seeding import seeded_rng
from negforge.synth.stages import stage_dataset

log = logging.getLogger(__name__)

DROPS = ("rejected", "unlisted", "same_as_positive", "near_positive", "duplicate", "near_duplicate")


class SourceStats(Report):
    available: int = 0  # usable after cleaning
    quota: int = 0  # k * ratio before shortfalls moved
    chosen: int = 0
    dropped: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(DROPS, 0))


class EpochStats(Report):
    records: int = 0
    short: int = 0  # fewer than k negatives
    empty: int = 0
    sources: dict[str, SourceStats] = Field(default_factory=dict)

    def source(self, name: str) -> SourceStats:
        return self.sources.setdefault(name, SourceStats())


class MixReport(Report):
    """Per epoch and source: the quota, what was available, chosen and dropped (by rule)."""

    k: int
    ratios: dict[str, float]
    epochs: dict[int, EpochStats] = Field(default_factory=dict)

    def merge(self, other: MixReport) -> MixReport:
        self.epochs.update(other.epochs)
        return self

    def table(self) -> str:
        head = f"{'epoch':>5}  {'source':<9}{'ratio':>6}{'quota':>7}{'avail':>7}{'chosen':>8}  dropped"
        lines = [head]
        for e, s in sorted(self.epochs.items()):
            for n, x in sorted(s.sources.items(), key=lambda kv: (-self.ratios.get(kv[0], 0), kv[0])):
                drops = ", ".join(f"{k} {v}" for k, v in x.dropped.items() if v) or "-"
                lines.append(
                    f"{e:>5}  {n:<9}{self.ratios.get(n, 0):>6.2f}{x.quota:>7}{x.available:>7}{x.chosen:>8}  {drops}"
                )
            lines.append(f"{e:>5}  {s.records} records, {s.short} short of k={self.k}, {s.empty} with none")
        return "\n".join(lines)


def hardness_key(n: Negative) -> tuple:
    """Sort key, hardest first: the verifier's cosine, else the miner's score, else its rank."""
    if "embedding" in n.scores:
        return (0, -n.scores["embedding"], n.provenance.rank or 0)
    own = n.scores.get(n.source.value)
    if own is not None:
        return (1, -own, n.provenance.rank or 0)
    return (2, n.provenance.rank if n.provenance.rank is not None else math.inf, 0)


def allocate(k: int, ratios: dict[str, float], available: dict[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """(quota, allocation): the ratio split of ``k`` and the split after shortfalls moved (see module doc)."""

    def split(total: int, names: list[str]) -> dict[str, int]:
        w = sum(ratios[s] for s in names)
        exact = {s: total * ratios[s] / w for s in names}
        base = {s: math.floor(exact[s]) for s in names}
        by_rest = sorted(names, key=lambda s: -(exact[s] - base[s]))  # stable: ties keep source order
        for s in by_rest[: total - sum(base.values())]:
            base[s] += 1
        return base

    names = [s for s in ratios if ratios[s] > 0]
    quota = split(k, names)
    alloc = dict.fromkeys(names, 0)
    active = [s for s in names if available.get(s, 0) > 0]
    while active and sum(alloc.values()) < k:
        for s, give in split(k - sum(alloc.values()), active).items():
            alloc[s] += min(give, available[s] - alloc[s])
        active = [s for s in active if alloc[s] < available[s]]
    return quota, alloc


def _too_close(v: Optional[np.ndarray], others: list[np.ndarray], threshold: Optional[float]) -> bool:
    return v is not None and threshold is not None and any(float(np.dot(v, o)) > threshold for o in others)


def _pool(
    r: Record, cfg: MixConfig, order: list[str], vectors: Optional[dict[str, np.ndarray]], st: EpochStats
) -> dict[str, list[Negative]]:
    """Per source, its usable negatives, hardest first (rule 1 and the positive checks of rule 2)."""
    unverified = [n for n in r.negatives if n.verdict is None]
    if unverified and cfg.require_verified:
        raise InputError(
            f"record {r.id!r} has {len(unverified)} unverified negative(s) (e.g. from "
            f"{unverified[0].source.value}); run `negforge verify` first, or set "
            "mix.require_verified=false to use unverified negatives as they are"
        )
    pos_ids = r.positive_ids()
    pos_texts = r.positive_texts()
    pos_vecs = [vectors[p.full_text] for p in r.positives] if vectors is not None else []
    pool: dict[str, list[Negative]] = {s: [] for s in order}
    seen: dict[str, set[str]] = {s: set() for s in order}
    for n in sorted(r.negatives, key=hardness_key):
        src, norm = n.source.value, normalise_text(n.full_text)
        if src not in pool:
            rule = "unlisted"
        elif n.verdict is not None and not n.kept:
            rule = "rejected"
        elif (n.doc_id is not None and n.doc_id in pos_ids) or norm in pos_texts or normalise_text(n.text) in pos_texts:
            rule = "same_as_positive"
        elif _too_close(vectors[n.full_text] if vectors else None, pos_vecs, cfg.dedup_cosine):
            rule = "near_positive"
        elif norm in seen[src]:
            rule = "duplicate"
        else:
            rule = None
        if rule:
            st.source(src).dropped[rule] += 1
            continue
        seen[src].add(norm)
        pool[src].append(n)
    return pool


def _draw_order(pool: list[Negative], quota: int, rng: random.Random, hard_share: Optional[float]) -> list[Negative]:
    """The order a source offers its negatives in: a seeded shuffle, or with the curriculum the
    ``round(quota * hard_share)`` hardest first and a seeded shuffle of the rest after them."""
    n_hard = 0 if hard_share is None else min(len(pool), round(quota * hard_share))
    rest = pool[n_hard:]
    rng.shuffle(rest)
    return pool[:n_hard] + rest


def _choose(
    r: Record,
    cfg: MixConfig,
    order: list[str],
    pool: dict[str, list[Negative]],
    epoch: int,
    hard_share: Optional[float],
    vectors: Optional[dict[str, np.ndarray]],
    st: EpochStats,
) -> list[Negative]:
    """Rules 3 and 4: quotas, then draws (scarcest source first) that skip cross-source
    duplicates; what duplicates cost is re-allocated over what the sources have left."""
    ratios = {s: cfg.ratios[s] for s in order}
    quota, alloc = allocate(cfg.k, ratios, {s: len(p) for s, p in pool.items()})
    offers = {s: _draw_order(pool[s], alloc[s], seeded_rng(cfg.seed, r.id, epoch, s), hard_share) for s in order}
    for s in order:
        st.source(s).available += len(pool[s])
        st.source(s).quota += quota[s]
    chosen: list[Negative] = []
    seen: set[str] = set()
    vecs: list[np.ndarray] = []
    while True:
        for s in sorted(order, key=lambda s: (len(pool[s]), order.index(s))):
            got = 0
            while got < alloc[s] and offers[s]:
                n = offers[s].pop(0)
                norm, vec = normalise_text(n.full_text), vectors[n.full_text] if vectors else None
                if norm in seen or _too_close(vec, vecs, cfg.dedup_cosine):
                    st.source(s).dropped["duplicate" if norm in seen else "near_duplicate"] += 1
                    continue
                seen.add(norm)
                if vec is not None:
                    vecs.append(vec)
                chosen.append(n)
                st.source(s).chosen += 1
                got += 1
        left = {s: len(o) for s, o in offers.items()}
        if len(chosen) >= cfg.k or not any(left.values()):
            return chosen
        alloc = allocate(cfg.k - len(chosen), ratios, left)[1]


def embed_for_dedup(
    records: list[Record], encoder: str = DEFAULT_ENCODER, show_progress: bool = False
) -> dict[str, np.ndarray]:
    """Normalised embeddings of every positive and negative text (the ``dedup_cosine`` input)."""
    from .embeddings import encode_texts

    texts = sorted({p.full_text for r in records for p in [*r.positives, *r.negatives]})
    return dict(zip(texts, encode_texts(texts, encoder, show_progress=show_progress)))


def mix_records(
    records: list[Record],
    dataset: Optional[Dataset],
    cfg: MixConfig,
    *,
    epoch: int = 0,
    encoder: str = DEFAULT_ENCODER,
    vectors: Optional[dict[str, np.ndarray]] = None,
) -> tuple[list[Record], MixReport]:
    """One epoch's draw: each output record keeps only its ``cfg.k`` chosen, verified-kept negatives.

    The mixer needs nothing from ``dataset`` (pass ``None``); it is there so every stage is called
    alike. With ``cfg.dedup_cosine`` the texts are embedded with ``encoder`` (pass ``vectors`` from
    :func:`embed_for_dedup` to embed once for several epochs).
    """
    stage_dataset("mix_records", dataset, cfg, MixConfig)
    if epoch < 0:
        raise InputError(f"epoch must be >= 0, got {epoch}")
    order = sorted((s for s, w in cfg.ratios.items() if w > 0), key=lambda s: (-cfg.ratios[s], s))
    if cfg.dedup_cosine is not None and vectors is None:
        vectors = embed_for_dedup(records, encoder)
    elif cfg.dedup_cosine is None:
        vectors = None
    hard_share = min(1.0, (epoch + 1) / cfg.epochs) if cfg.curriculum else None
    summary = MixReport(k=cfg.k, ratios=dict(cfg.ratios))
    st = summary.epochs.setdefault(epoch, EpochStats())
    out = []
    for r in records:
        chosen = _choose(r, cfg, order, _pool(r, cfg, order, vectors, st), epoch, hard_share, vectors, st)
        seeded_rng(cfg.seed, r.id, epoch, "order").shuffle(chosen)
        st.records += 1
        st.short += len(chosen) < cfg.k
        st.empty += not chosen
        out.append(
            r.model_copy(update={"negatives": chosen, "meta": {**r.meta, "mix": {"epoch": epoch, "seed": cfg.seed}}})
        )
    log.info("mixed %d records (epoch %d): %d short of k=%d", st.records, epoch, st.short, cfg.k)
    return out, summary
