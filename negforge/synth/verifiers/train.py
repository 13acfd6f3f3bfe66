"""``negforge verifier train``: fine-tune a cross-encoder verifier on a dataset's train qrels.

No cross-encoder ships its weights on PyPI, so one is trained here: ``CrossEncoder(base, num_labels=1)``
from the bundled MiniLM (a random classification head on top of the encoder) is trained with binary
cross-entropy on (query, positive) = 1 vs (query, mined negative) = 0 pairs: every positive of the
training queries (or ``max_positives_per_query`` of them) and, per query, ``mine.num_negatives``
negatives from each of ``mine.sources`` (BM25 and dense by default), mined by
:func:`negforge.mixers.mine.mine_records`, which never returns a qrels-positive.

Queries are split, never pairs, three ways: **held-out** (``heldout`` share or ``heldout_ids``: the
final accuracy and ROC-AUC, never seen in training), **dev** (``dev`` share of the rest: scored during
training to pick the best checkpoint, see :mod:`negforge.synth.verifiers.ce_fit`) and train.
Reported: accuracy at P = 0.5 (with the majority-class baseline beside it, since pairs are
1 positive : ~n negatives) and ROC-AUC (0.5 = chance).
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..config import MineConfig
from ..data import load_beir, records_from_beir
from ..errors import InputError
from ..io import write_json
from ..models import DEFAULT_ENCODER
from ..reports import Report
from ..schema import Record
from ..seeding import text_rng

log = logging.getLogger(__name__)


# Negatives for training: per source a seeded sample of 2 from its top 30 (qrels-positives excluded),
# so 4 per query from BM25 + dense.
DEFAULT_MINE = {"sources": ["bm25", "dense"], "num_negatives": 2, "range_max": 30, "sampling": "random"}


class VerifierTrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_model: str = DEFAULT_ENCODER  # encoder the cross-encoder starts from (its head starts random)
    split: str = "train"  # qrels split to train on
    max_queries: Optional[int] = Field(None, ge=2)  # first N queries only (None: all)
    mine: MineConfig = Field(
        default_factory=lambda: MineConfig.model_validate(DEFAULT_MINE)
    )  # negatives: how many, from where
    heldout: float = Field(0.2, gt=0, lt=1)  # share of queries held out for evaluation
    # These query ids (those present) are the held-out set instead of a random ``heldout`` share, e.g. the
    # queries whose negatives you will verify, so the verifier never trained on their positives.
    heldout_ids: Optional[list[str]] = None
    # Share of the non-held-out queries scored during training to keep the best checkpoint (0: keep the last).
    dev: float = Field(0.1, ge=0, lt=1)
    dev_max_pairs: int = Field(400, ge=2)  # dev pairs scored per evaluation (a seeded sample; cost vs noise)
    evals: int = Field(6, ge=1)  # dev evaluations over the run (ignored when eval_steps is set)
    eval_steps: Optional[int] = Field(None, ge=1)
    max_positives_per_query: Optional[int] = Field(None, ge=1)  # None: every positive (NFCorpus has hundreds)
    # Train on at most N pairs (None: all): a seeded sample, half positives where there are enough.
    max_pairs: Optional[int] = Field(None, ge=2)
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(16, ge=2)
    lr: float = Field(7e-5, gt=0)  # few hundred steps from a random head: higher than the usual 2e-5
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    # 128 tokens hold the query, the title and the first ~100 words; 256 doubles the cost of a step on CPU.
    max_length: int = Field(128, ge=16)
    # Freeze the embeddings and the first N transformer layers (0: train all): each step's backward pass gets
    # cheaper, which is what a CPU run is short of; the top layers and the new head still learn.
    freeze_layers: int = Field(0, ge=0)
    balance: bool = True  # weight positives by #neg/#pos in the loss (BCE pos_weight)
    seed: int = 0

    @field_validator("mine", mode="before")
    @classmethod
    def _mine_defaults(cls, v: Any) -> Any:
        """``--set mine.num_negatives=2`` changes one field; the others keep this command's defaults."""
        return {**DEFAULT_MINE, **v} if isinstance(v, dict) else v


class VerifierTrainResult(Report):
    model_path: str
    train_queries: int
    heldout_queries: int
    train_pairs: int
    heldout_pairs: int
    accuracy: float
    majority_accuracy: float
    roc_auc: float
    train_s: float
    pairs_per_s: float
    eval_s: float
    losses: list[float] = Field(default_factory=list)
    dev_queries: int = 0
    dev_pairs: int = 0
    dev: list[dict[str, Any]] = Field(default_factory=list)  # {"step", "epoch", "dev_roc_auc", "loss", "elapsed_s"}
    best_step: int = 0
    steps: int = 0
    kept_dev_roc_auc: Optional[float] = None  # dev ROC-AUC of the saved (restored best) weights

    def table(self) -> str:
        return "\n".join(
            [
                f"cross-encoder verifier saved to {self.model_path}",
                f"train: {self.train_pairs} pairs from {self.train_queries} queries in {self.train_s:.1f} s "
                f"({self.pairs_per_s:.1f} pairs/s); loss {self.losses[0]:.3f} -> {self.losses[-1]:.3f}"
                if self.losses
                else f"train: {self.train_pairs} pairs in {self.train_s:.1f} s",
                *(
                    [
                        f"dev ({self.dev_queries} queries, {self.dev_pairs} pairs): ROC-AUC "
                        + ", ".join(f"{d['dev_roc_auc']:.3f}@{d['step']}" for d in self.dev)
                        + f"; kept step {self.best_step} of {self.steps}"
                    ]
                    if self.dev
                    else []
                ),
                f"held-out ({self.heldout_queries} queries, {self.heldout_pairs} pairs): accuracy {self.accuracy:.3f} "
                f"(majority class {self.majority_accuracy:.3f}), ROC-AUC {self.roc_auc:.3f} (chance 0.5)",
            ]
        )


def roc_auc(labels: list[int], scores: list[float]) -> float:
    """Mann-Whitney ROC-AUC (ties count half); NaN when one class is missing."""
    pos = [s for y, s in zip(labels, scores) if y]
    neg = [s for y, s in zip(labels, scores) if not y]
    if not pos or not neg:
        return float("nan")
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = sum(r for r, y in zip(ranks, labels) if y)
    return (rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def labelled_pairs(
    records: list[Record], max_positives: Optional[int] = None, seed: int = 0
) -> tuple[list[tuple[str, str]], list[int]]:
    """(query, passage) pairs: 1 for positives (a seeded sample of ``max_positives`` per query), 0 for negatives."""
    pairs, labels = [], []
    for r in records:
        pos = r.positives
        if max_positives is not None and len(pos) > max_positives:
            pos = text_rng(seed, r.id).sample(pos, max_positives)
        for p in pos:
            pairs.append((r.query, p.full_text))
            labels.append(1)
        for n in r.negatives:
            pairs.append((r.query, n.full_text))
            labels.append(0)
    return pairs, labels


def _sample(pairs: list, labels: list[int], n: Optional[int], seed: int) -> tuple[list, list[int]]:
    """At most ``n`` pairs, seeded: positives up to half of them (more where the negatives cannot fill the
    other half), negatives the rest, so a cap never starves either class."""
    if n is None or len(pairs) <= n:
        return pairs, labels
    rng = random.Random(seed)
    pos = [i for i, y in enumerate(labels) if y]
    neg = [i for i, y in enumerate(labels) if not y]
    n_pos = min(len(pos), max(n // 2, n - len(neg)))
    keep = rng.sample(pos, n_pos) + rng.sample(neg, n - n_pos)
    keep.sort()
    return [pairs[i] for i in keep], [labels[i] for i in keep]


def split_queries(
    records: list[Record], heldout: float, seed: int, heldout_ids: Optional[list[str]] = None
) -> tuple[list[Record], list[Record]]:
    """(train, held-out) query groups: ``heldout_ids`` when given, else a seeded ``heldout`` share."""
    if heldout_ids is not None:
        held_set = set(heldout_ids)
        train, held = [r for r in records if r.id not in held_set], [r for r in records if r.id in held_set]
        if not held or not train:
            raise InputError(
                f"heldout_ids leaves {len(train)} training and {len(held)} held-out queries "
                f"(of {len(records)}); both must be non-empty"
            )
        return train, held
    order = sorted(records, key=lambda r: r.id)
    random.Random(seed).shuffle(order)
    n_held = max(1, round(len(order) * heldout))
    if n_held >= len(order):
        raise InputError(f"{len(order)} queries are too few to hold {heldout:.0%} out; use more queries")
    return order[n_held:], order[:n_held]


def train_verifier(
    data_dir: str | Path, output: str | Path, cfg: VerifierTrainConfig, show_progress: bool = True
) -> VerifierTrainResult:
    """Mine, train, save to ``output`` and evaluate on held-out queries (``output/train_report.json``)."""
    from negforge.mixers.mine import mine_records

    data = load_beir(data_dir, cfg.split)
    records = records_from_beir(data, cfg.max_queries)
    if len(records) < 2:
        raise InputError(f"{data_dir}: qrels/{cfg.split}.tsv gives {len(records)} usable queries; need at least 2")
    mined, _ = mine_records(records, data, cfg.mine, show_progress=show_progress)
    train_recs, held_recs = split_queries(mined, cfg.heldout, cfg.seed, cfg.heldout_ids)
    dev_recs: list[Record] = []
    if cfg.dev > 0 and len(train_recs) >= 4:
        train_recs, dev_recs = split_queries(train_recs, cfg.dev, cfg.seed + 1)
    cap = cfg.max_positives_per_query
    train_pairs, train_labels = _sample(*labelled_pairs(train_recs, cap, cfg.seed), cfg.max_pairs, cfg.seed)
    dev_pairs, dev_labels = _sample(*labelled_pairs(dev_recs, cap, cfg.seed), cfg.dev_max_pairs, cfg.seed)
    held_pairs, held_labels = labelled_pairs(held_recs, cap, cfg.seed)
    log.info(
        "verifier train: %d pairs (%d queries), dev %d pairs (%d queries), held out %d pairs (%d queries)",
        len(train_pairs),
        len(train_recs),
        len(dev_pairs),
        len(dev_recs),
        len(held_pairs),
        len(held_recs),
    )

    from .ce_fit import fit
    from .cross_encoder import predict_probs

    t0 = time.perf_counter()
    model, info = fit(train_pairs, train_labels, dev_pairs, dev_labels, cfg, Path(output), show_progress)
    train_s = time.perf_counter() - t0
    model.save(str(output))
    t1 = time.perf_counter()
    probs = predict_probs(model, held_pairs, cfg.batch_size * 2, show_progress)
    eval_s = time.perf_counter() - t1
    correct = sum((p > 0.5) == bool(y) for p, y in zip(probs, held_labels))
    n_pos = sum(held_labels)
    result = VerifierTrainResult(
        model_path=str(output),
        train_queries=len(train_recs),
        heldout_queries=len(held_recs),
        train_pairs=len(train_pairs),
        heldout_pairs=len(held_pairs),
        accuracy=correct / len(held_pairs),
        majority_accuracy=max(n_pos, len(held_pairs) - n_pos) / len(held_pairs),
        roc_auc=roc_auc(held_labels, probs),
        train_s=round(train_s, 1),
        pairs_per_s=round(len(train_pairs) * cfg.epochs / train_s, 2),
        eval_s=round(eval_s, 1),
        losses=info["losses"],
        dev_queries=len(dev_recs),
        dev_pairs=len(dev_pairs),
        dev=info["dev"],
        best_step=info["best_step"],
        steps=info["steps"],
        kept_dev_roc_auc=info["kept_dev_roc_auc"],
    )
    write_json(
        Path(output) / "train_report.json",
        {
            "result": result.to_dict(),
            "config": cfg.model_dump(mode="json"),
            "data": str(data_dir),
            "heldout_query_ids": sorted(r.id for r in held_recs),
            "dev_query_ids": sorted(r.id for r in dev_recs),
        },
    )
    return result
