"""``negforge verifier train``: fine-tune a cross-encoder verifier on a dataset's train qrels.

No cross-encoder ships its weights on PyPI, so one is trained here: ``CrossEncoder(base, num_labels=1)``
from the bundled MiniLM (a random classification head on top of the encoder) is trained with binary
cross-entropy on (query, positive) = 1 vs (query, mined negative) = 0 pairs. Negatives come from
:func:`negforge.mixers.mine.mine_records` (BM25 by default), which never returns a qrels-positive.

Evaluation is on **held-out query groups**: queries are split, not pairs, so no query of the
held-out set was seen in training. Reported: accuracy at P = 0.5 (with the majority-class
baseline beside it, since pairs are 1 positive : ~n negatives) and ROC-AUC (0.5 = chance).
"""
from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..config import MineConfig
from ..data import load_beir, records_from_beir
from ..errors import InputError
from ..io import write_json
from ..models import DEFAULT_ENCODER, resolve_encoder
from ..schema import Record

log = logging.getLogger(__name__)


# Negatives for training: a seeded sample of 4 from the BM25 top 30 (qrels-positives excluded).
DEFAULT_MINE = {"sources": ["bm25"], "num_negatives": 4, "range_max": 30, "sampling": "random"}


class VerifierTrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_model: str = DEFAULT_ENCODER  # encoder the cross-encoder starts from (its head starts random)
    split: str = "train"  # qrels split to train on
    max_queries: Optional[int] = Field(None, ge=2)  # first N queries only (None: all)
    mine: MineConfig = Field(default_factory=lambda: MineConfig.model_validate(DEFAULT_MINE))  # negatives: how many, from where
    heldout: float = Field(0.2, gt=0, lt=1)  # share of queries held out for evaluation
    # These query ids (those present) are the held-out set instead of a random ``heldout`` share, e.g. the
    # queries whose negatives you will verify, so the verifier never trained on their positives.
    heldout_ids: Optional[list[str]] = None
    max_pairs: Optional[int] = Field(None, ge=2)  # train on a seeded sample of at most N pairs (None: all)
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(16, ge=2)
    lr: float = Field(2e-5, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    max_length: int = Field(256, ge=16)
    balance: bool = True  # weight positives by #neg/#pos in the loss (BCE pos_weight)
    seed: int = 0

    @field_validator("mine", mode="before")
    @classmethod
    def _mine_defaults(cls, v: Any) -> Any:
        """``--set mine.num_negatives=2`` changes one field; the others keep this command's defaults."""
        return {**DEFAULT_MINE, **v} if isinstance(v, dict) else v


@dataclass
class VerifierTrainResult:
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
    losses: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        return "\n".join([
            f"cross-encoder verifier saved to {self.model_path}",
            f"train: {self.train_pairs} pairs from {self.train_queries} queries in {self.train_s:.1f} s "
            f"({self.pairs_per_s:.1f} pairs/s); loss {self.losses[0]:.3f} -> {self.losses[-1]:.3f}"
            if self.losses else f"train: {self.train_pairs} pairs in {self.train_s:.1f} s",
            f"held-out ({self.heldout_queries} queries, {self.heldout_pairs} pairs): accuracy {self.accuracy:.3f} "
            f"(majority class {self.majority_accuracy:.3f}), ROC-AUC {self.roc_auc:.3f} (chance 0.5)",
        ])


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


def labelled_pairs(records: list[Record]) -> tuple[list[tuple[str, str]], list[int]]:
    pairs, labels = [], []
    for r in records:
        for p in r.positives:
            pairs.append((r.query, p.full_text))
            labels.append(1)
        for n in r.negatives:
            pairs.append((r.query, n.full_text))
            labels.append(0)
    return pairs, labels


def split_queries(records: list[Record], heldout: float, seed: int,
                  heldout_ids: Optional[list[str]] = None) -> tuple[list[Record], list[Record]]:
    """(train, held-out) query groups: ``heldout_ids`` when given, else a seeded ``heldout`` share."""
    if heldout_ids is not None:
        held_set = set(heldout_ids)
        train, held = [r for r in records if r.id not in held_set], [r for r in records if r.id in held_set]
        if not held or not train:
            raise InputError(f"heldout_ids leaves {len(train)} training and {len(held)} held-out queries "
                             f"(of {len(records)}); both must be non-empty")
        return train, held
    order = sorted(records, key=lambda r: r.id)
    random.Random(seed).shuffle(order)
    n_held = max(1, round(len(order) * heldout))
    if n_held >= len(order):
        raise InputError(f"{len(order)} queries are too few to hold {heldout:.0%} out; use more queries")
    return order[n_held:], order[:n_held]


def train_verifier(data_dir: str | Path, output: str | Path, cfg: VerifierTrainConfig,
                   show_progress: bool = True) -> VerifierTrainResult:
    """Mine, train, save to ``output`` and evaluate on held-out queries (``output/train_report.json``)."""
    from negforge.mixers.mine import mine_records

    data = load_beir(data_dir, cfg.split)
    records = records_from_beir(data, cfg.max_queries)
    if len(records) < 2:
        raise InputError(f"{data_dir}: qrels/{cfg.split}.tsv gives {len(records)} usable queries; need at least 2")
    mined, _ = mine_records(records, data, cfg.mine, show_progress=show_progress)
    train_recs, held_recs = split_queries(mined, cfg.heldout, cfg.seed, cfg.heldout_ids)
    train_pairs, train_labels = labelled_pairs(train_recs)
    if cfg.max_pairs is not None and len(train_pairs) > cfg.max_pairs:
        keep = sorted(random.Random(cfg.seed).sample(range(len(train_pairs)), cfg.max_pairs))
        train_pairs, train_labels = [train_pairs[i] for i in keep], [train_labels[i] for i in keep]
    held_pairs, held_labels = labelled_pairs(held_recs)
    log.info("verifier train: %d pairs (%d queries), held out %d pairs (%d queries)", len(train_pairs),
             len(train_recs), len(held_pairs), len(held_recs))

    t0 = time.perf_counter()
    model, losses = _fit(train_pairs, train_labels, cfg, Path(output), show_progress)
    train_s = time.perf_counter() - t0
    model.save(str(output))

    from .cross_encoder import predict_probs

    t1 = time.perf_counter()
    probs = predict_probs(model, held_pairs, cfg.batch_size * 2, show_progress)
    eval_s = time.perf_counter() - t1
    correct = sum((p > 0.5) == bool(y) for p, y in zip(probs, held_labels))
    n_pos = sum(held_labels)
    result = VerifierTrainResult(
        model_path=str(output), train_queries=len(train_recs), heldout_queries=len(held_recs),
        train_pairs=len(train_pairs), heldout_pairs=len(held_pairs),
        accuracy=correct / len(held_pairs), majority_accuracy=max(n_pos, len(held_pairs) - n_pos) / len(held_pairs),
        roc_auc=roc_auc(held_labels, probs), train_s=round(train_s, 1),
        pairs_per_s=round(len(train_pairs) * cfg.epochs / train_s, 2), eval_s=round(eval_s, 1), losses=losses)
    write_json(Path(output) / "train_report.json", {"result": result.to_dict(), "config": cfg.model_dump(mode="json"),
                                                    "data": str(data_dir),
                                                    "heldout_query_ids": sorted(r.id for r in held_recs)})
    return result


def _fit(pairs: list[tuple[str, str]], labels: list[int], cfg: VerifierTrainConfig, output: Path,
         show_progress: bool):
    """CrossEncoderTrainer + BinaryCrossEntropyLoss; returns (model, logged losses)."""
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (CrossEncoder, CrossEncoderTrainer,
                                                     CrossEncoderTrainingArguments)
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    from ..models import device

    torch.manual_seed(cfg.seed)
    model = CrossEncoder(resolve_encoder(cfg.base_model), num_labels=1, max_length=cfg.max_length, device=device(),
                         local_files_only=True)
    n_pos = sum(labels)
    pos_weight = torch.tensor((len(labels) - n_pos) / max(n_pos, 1)) if cfg.balance else None
    dataset = Dataset.from_dict({"query": [q for q, _ in pairs], "passage": [p for _, p in pairs],
                                 "label": [float(y) for y in labels]})
    steps = math.ceil(len(pairs) / cfg.batch_size) * cfg.epochs
    args = CrossEncoderTrainingArguments(
        output_dir=str(output / "_trainer"), num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.lr, warmup_steps=int(math.ceil(steps * cfg.warmup_ratio)), seed=cfg.seed,
        save_strategy="no", report_to="none", logging_steps=max(1, steps // 20), disable_tqdm=not show_progress,
        use_cpu=device() == "cpu")
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset,
                                  loss=BinaryCrossEntropyLoss(model, pos_weight=pos_weight))
    trainer.train()
    import shutil

    shutil.rmtree(output / "_trainer", ignore_errors=True)
    losses = [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]
    return model, losses
