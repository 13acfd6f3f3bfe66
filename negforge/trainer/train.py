"""Contrastive fine-tuning of a sentence-transformers encoder on negforge records.

Records are the mixer's output (query, positives, chosen negatives). They become trainer columns
here and nowhere earlier (:func:`build_columns`); :func:`train_model` runs sentence-transformers'
``SentenceTransformerTrainer`` with no-duplicates batches, the loss named in the config, bf16/fp16
autocast on a GPU (fp32 on CPU), optional checkpoints and resume, and saves the model to
``cfg.output_dir`` with ``train_result.json`` beside it.

Several processes: run the CLI under torchrun, e.g.
``torchrun --nproc_per_node 2 -m negforge train --input mixed.jsonl --output DIR`` (gloo on CPU,
NCCL on GPUs); each process reads the records and trains on its share of every batch.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

from pydantic import Field

from negforge.synth.config import TrainConfig
from negforge.synth.data import Dataset
from negforge.synth.errors import ConfigError, InputError
from negforge.synth.models import resolve_encoder
from negforge.synth.reports import PathStr, Report
from negforge.synth.schema import Passage, Record, Status
from negforge.synth.seeding import text_rng

from .losses import build_loss, is_multi_positive
from .positives import RowKeys, select_positives

log = logging.getLogger(__name__)

RESULT_FILE = "train_result.json"


class ColumnStats(Report):
    """What :func:`build_columns` did to the records, so a short dataset is never a surprise."""

    records: int = 0
    examples: int = 0
    dropped_no_negatives: int = 0  # records without a usable negative (num_hard_negatives > 0)
    filled_negatives: int = 0  # records with fewer than n negatives: theirs repeated in turn
    sampled_negatives: int = 0  # records with more than n: n drawn with a (seed, record id) RNG
    rejected_negatives_skipped: int = 0  # negatives whose verdict is "rejected"
    truncated_positives: int = 0  # records with more than max_positives positives


def _usable_negatives(record: Record, stats: ColumnStats) -> list[str]:
    texts = []
    for n in record.negatives:
        if n.verdict is not None and n.verdict.status == Status.rejected:
            stats.rejected_negatives_skipped += 1
        else:
            texts.append(n.full_text)
    return texts


def _pick(texts: list[str], n: int, seed: int, record_id: str, stats: ColumnStats) -> list[str]:
    if len(texts) < n:
        stats.filled_negatives += 1
        return [texts[i % len(texts)] for i in range(n)]
    if len(texts) > n:
        stats.sampled_negatives += 1
        return text_rng(seed, record_id).sample(texts, n)
    return texts


def build_columns(
    records: list[Record], cfg: TrainConfig, multi_positive: bool = False, epoch: int = 0
) -> tuple[dict[str, list], ColumnStats]:
    """Trainer columns from records, in dataset column order (see :func:`build_rows`)."""
    cols, stats, _ = build_rows(records, cfg, multi_positive, blocks=1, first_epoch=epoch)
    return cols, stats


def build_rows(
    records: list[Record], cfg: TrainConfig, multi_positive: bool = False, blocks: int = 1, first_epoch: int = 0
) -> tuple[dict[str, list], ColumnStats, list[RowKeys]]:
    """Trainer columns from records, plus what each row puts in a batch (for the query-aware sampler).

    Positives: up to ``max_positives`` per query, chosen by ``positive_rule`` (first / grade / sample;
    :func:`negforge.trainer.sampler.select_positives`). Single-positive losses (mnrl, cached_mnrl):
    ``anchor, positive, negative_1..n``, one row per (query, chosen positive); rows of one query never
    share a batch. Multi-positive losses: ``anchor, positive_1..m, negative_1..n, label`` with m the
    largest chosen count; unused slots repeat positive_1 and are masked out by ``label``.
    n = ``num_hard_negatives``: records with fewer negatives repeat theirs, records with none are
    dropped (counted), records with more get n drawn with a seeded RNG. Rejected negatives are never
    used; unverified ones are (the mixer decides what to pass on). ``blocks`` > 1 (positive_rule
    "sample" over several epochs) repeats the rows once per epoch, each block with that epoch's draw.
    """
    stats = ColumnStats(records=len(records))
    n, cap = cfg.num_hard_negatives, cfg.max_positives
    kept: list[tuple[Record, list[str]]] = []
    for r in records:
        negs = _usable_negatives(r, stats)
        if n and not negs:
            stats.dropped_no_negatives += 1
            continue
        if cap is not None and len(r.positives) > cap:
            stats.truncated_positives += 1
        kept.append((r, _pick(negs, n, cfg.seed, r.id, stats) if n else []))
    neg_docs = {id(r): {x.full_text: x for x in r.negatives} for r, _ in kept}
    own = {id(r): RowKeys.own_of(r) for r, _ in kept}
    rows: list[tuple[Record, list[Passage], list[str], int]] = []
    for b in range(blocks):
        for r, negs in kept:
            rows.append((r, select_positives(r, cap, cfg.positive_rule, cfg.seed, first_epoch + b), negs, b))
    neg_cols = [f"negative_{j + 1}" for j in range(n)]
    keys: list[RowKeys] = []
    if multi_positive:
        m = max((len(pos) for _, pos, _, _ in rows), default=1)
        cols: dict[str, list] = {
            "anchor": [],
            **{f"positive_{j + 1}": [] for j in range(m)},
            **{c: [] for c in neg_cols},
            "label": [],
        }
        for r, pos, negs, b in rows:
            cols["anchor"].append(r.query)
            for j in range(m):
                cols[f"positive_{j + 1}"].append(pos[j].full_text if j < len(pos) else pos[0].full_text)
            for c, t in zip(neg_cols, negs):
                cols[c].append(t)
            cols["label"].append([1] * len(pos) + [0] * (m - len(pos)))
            keys.append(RowKeys.of(r, pos, _as_passages(negs, neg_docs[id(r)]), b, own[id(r)]))
    else:
        cols = {"anchor": [], "positive": [], **{c: [] for c in neg_cols}}
        for r, pos, negs, b in rows:
            for p in pos:
                cols["anchor"].append(r.query)
                cols["positive"].append(p.full_text)
                for c, t in zip(neg_cols, negs):
                    cols[c].append(t)
                keys.append(RowKeys.of(r, [p], _as_passages(negs, neg_docs[id(r)]), b, own[id(r)]))
    stats.examples = len(cols["anchor"])
    if stats.dropped_no_negatives:
        log.warning(
            "dropped %d of %d records that have no usable negative (num_hard_negatives=%d; "
            "set it to 0 to train with in-batch negatives only)",
            stats.dropped_no_negatives,
            len(records),
            n,
        )
    log.info(
        "training data: %d examples from %d records; %d records without a usable negative dropped, %d filled "
        "and %d sampled to the negative count, %d rejected negatives skipped, %d with positives cut",
        stats.examples,
        stats.records,
        stats.dropped_no_negatives,
        stats.filled_negatives,
        stats.sampled_negatives,
        stats.rejected_negatives_skipped,
        stats.truncated_positives,
    )
    return cols, stats, keys


def _as_passages(texts: list[str], by_text: Mapping[str, Passage]) -> list[Passage]:
    return [by_text.get(t) or Passage(text=t) for t in texts]


class TrainResult(Report):
    model_path: PathStr
    encoder: str  # the model training started from
    loss: str
    steps: int
    epochs: float
    examples: int
    samples_per_s: float
    wall_s: float
    device: str
    world_size: int = 1
    losses: list[dict[str, float]] = Field(default_factory=list)  # {"step", "epoch", "loss"} per logging step
    validation: list[dict[str, float]] = Field(default_factory=list)  # {"step", "epoch", "ndcg@10", ...}
    columns: dict[str, int] = Field(default_factory=dict)
    memory_bank: dict[str, Any] = Field(default_factory=dict)  # mnrl_xbm: queue fill, false negatives left out


def _precision() -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"use_cpu": True}
    return {"bf16": True} if torch.cuda.is_bf16_supported() else {"fp16": True}


def _resume_checkpoint(cfg: TrainConfig, ckpt_dir: Path) -> Optional[str]:
    if cfg.resume_from is None:
        return None
    if cfg.resume_from == "latest":
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
        if last is None:
            raise ConfigError(
                f"resume_from=latest: no checkpoint under {ckpt_dir}; train with save_steps first or drop resume_from"
            )
        return last
    if not (Path(cfg.resume_from) / "trainer_state.json").is_file():
        raise ConfigError(
            f"resume_from={cfg.resume_from!r} is not a checkpoint folder (no trainer_state.json); "
            f"pass one of {ckpt_dir}/checkpoint-N or 'latest'"
        )
    return cfg.resume_from


def build_validator(data: Dataset, cfg: TrainConfig, batch_size: int = 64):
    """A per-epoch evaluator on ``data``'s qrels over a corpus sample: every relevant document plus random
    others up to ``eval_corpus_size`` (seeded); the metrics are ``negforge eval``'s (graded, judged-0
    rows non-relevant, identical ids ignored; see :mod:`negforge.trainer.validate`)."""
    from .validate import build_validator as _build

    return _build(data, cfg.eval_corpus_size, cfg.seed, batch_size)


def _histories(log_history: list[dict]) -> tuple[list[dict], list[dict]]:
    losses, validation = [], []
    for e in log_history:
        if "loss" in e:
            losses.append({"step": e["step"], "epoch": round(e.get("epoch", 0.0), 4), "loss": e["loss"]})
        metrics = {k[len("eval_val_cosine_") :]: v for k, v in e.items() if k.startswith("eval_val_cosine_")}
        if metrics:
            validation.append({"step": e["step"], "epoch": round(e.get("epoch", 0.0), 4), **metrics})
    return losses, validation


def _batch_sampler(cfg: TrainConfig, row_keys: list[RowKeys], no_duplicates: Any) -> Any:
    if cfg.batch_sampler == "no_duplicates":
        return no_duplicates
    from functools import partial

    from .sampler import QueryAwareBatchSampler

    return partial(QueryAwareBatchSampler, rows=row_keys)


def train_model(
    records: list[Record], cfg: TrainConfig, show_progress: bool = True, eval_data: Optional[Dataset] = None
) -> TrainResult:
    """Fine-tune ``cfg.encoder`` on ``records`` with ``cfg.loss``; save to ``cfg.output_dir``.

    With ``eval_data`` (a BEIR split) the model is validated on it before training and after every
    epoch (nDCG@10, Recall@10/100, MRR@10 over a sampled corpus; see :func:`build_validator`).
    """
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )

    multi = is_multi_positive(cfg.loss)  # raises ConfigError listing the valid losses
    blocks = cfg.epochs if cfg.positive_rule == "sample" and cfg.epochs > 1 else 1
    if blocks > 1 and cfg.batch_sampler != "query_aware":
        raise ConfigError(
            "positive_rule=sample over several epochs needs batch_sampler=query_aware "
            "(it reads one block of rows per epoch)"
        )
    cols, stats, row_keys = build_rows(records, cfg, multi, blocks)
    if not stats.examples:
        raise InputError(f"no training examples out of {len(records)} records (see the counts: {stats.to_dict()})")
    out_dir, ckpt_dir = Path(cfg.output_dir), Path(cfg.output_dir) / "checkpoints"
    resume = _resume_checkpoint(cfg, ckpt_dir)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    precision = _precision()
    args = SentenceTransformerTrainingArguments(
        output_dir=str(ckpt_dir),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.lr,
        warmup_steps=cfg.warmup_ratio,
        seed=cfg.seed,
        batch_sampler=_batch_sampler(cfg, row_keys, BatchSamplers.NO_DUPLICATES),
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        report_to="none",
        disable_tqdm=not show_progress,
        save_strategy="steps" if cfg.save_steps else "no",
        save_steps=cfg.save_steps or 500,
        save_total_limit=3,
        eval_strategy="epoch" if eval_data is not None else "no",
        eval_on_start=eval_data is not None,
        ddp_backend="gloo" if world > 1 and not torch.cuda.is_available() else None,
        **precision,
    )
    model = SentenceTransformer(resolve_encoder(cfg.encoder))
    model.max_seq_length = cfg.max_seq_length
    loss = build_loss(
        cfg.loss,
        model,
        scale=cfg.scale,
        mini_batch_size=cfg.mini_batch_size,
        seed=cfg.seed,
        entropy_weight=cfg.entropy_weight,
        queue_size=cfg.queue_size,
        momentum=cfg.momentum,
    )
    if hasattr(loss, "remember_positives"):  # memory bank: no query's own positive as a bank negative
        loss.remember_positives([r.query for r in records], [[p.full_text for p in r.positives] for r in records])
    validator = build_validator(eval_data, cfg) if eval_data is not None else None
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=Dataset.from_dict(cols), loss=loss, evaluator=validator
    )
    _quiet_log_lines(trainer)
    log.info(
        "training %s with %s on %d examples (%s, %d process%s)",
        cfg.encoder,
        cfg.loss,
        stats.examples,
        "cuda" if torch.cuda.is_available() else "cpu",
        world,
        "es" if world > 1 else "",
    )
    t = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=resume)
    wall = time.perf_counter() - t
    losses, validation = _histories(trainer.state.log_history)
    result = TrainResult(
        model_path=out_dir,
        encoder=cfg.encoder,
        loss=cfg.loss,
        steps=trainer.state.global_step,
        epochs=round(trainer.state.epoch or 0, 4),
        examples=stats.examples,
        samples_per_s=round(output.metrics.get("train_samples_per_second", 0.0), 3),
        wall_s=round(wall, 2),
        device="cuda" if torch.cuda.is_available() else "cpu",
        world_size=world,
        losses=losses,
        validation=validation,
        columns=stats.to_dict(),
        memory_bank=loss.stats() if hasattr(loss, "stats") else {},
    )
    trainer.save_model(str(out_dir))
    if trainer.is_world_process_zero():
        (out_dir / RESULT_FILE).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    log.info("saved %s (%d steps, %.1f samples/s)", out_dir, result.steps, result.samples_per_s)
    return result


def _quiet_log_lines(trainer: Any) -> None:
    """No raw log dict per logging step on the console (transformers prints ``{'loss': ...}``: through the
    bar, or with ``print`` when the bar is off): the bar shows the latest loss instead; the losses are
    kept in the result either way."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class _LossOnBar(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and self.training_bar is not None and logs and "loss" in logs:
                self.training_bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)

    trainer.remove_callback(PrinterCallback)
    if any(isinstance(cb, ProgressCallback) for cb in trainer.callback_handler.callbacks):
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_LossOnBar())


def load_result(path: str | os.PathLike) -> dict[str, Any]:
    """The ``train_result.json`` of a trained model folder (or the file itself)."""
    p = Path(path)
    p = p / RESULT_FILE if p.is_dir() else p
    if not p.is_file():
        raise InputError(f"{p}: no training result here; pass the --output folder of `negforge train`")
    return json.loads(p.read_text())


def dataset_loss(model: Any, cols: dict[str, list], loss_fn: Any, batch_size: int = 64) -> float:
    """Mean loss over ``cols`` in fixed-order batches, without gradients: a deterministic check
    that training lowered the loss on the data it saw (in-batch negatives = the fixed batches)."""
    import torch

    names = [c for c in cols if c != "label"]
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(cols["anchor"]), batch_size):
            feats = [
                {
                    k: v.to(model.device) if isinstance(v, torch.Tensor) else v
                    for k, v in model.preprocess(cols[c][start : start + batch_size]).items()
                }
                for c in names
            ]
            labels = torch.tensor(cols["label"][start : start + batch_size]) if "label" in cols else None
            n = len(cols["anchor"][start : start + batch_size])
            total += float(loss_fn(feats, labels)) * n
            count += n
    model.train(was_training)
    return total / count
