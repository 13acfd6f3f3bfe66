"""The cross-encoder training loop behind ``negforge verifier train``.

sentence-transformers' ``CrossEncoderTrainer`` with ``BinaryCrossEntropyLoss`` (positives weighted
by #neg/#pos when ``balance``), linear warmup then linear decay, and a callback that every
``eval_every`` steps scores the **dev** pairs (queries carved out of the training set, never trained
on), logs the step, loss, dev ROC-AUC, elapsed time and ETA, and keeps the weights of the best dev
ROC-AUC in memory. At the end the best weights are restored: the saved model is the best checkpoint,
chosen without looking at the held-out queries the final figure is reported on.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger(__name__)


def _dev_callback(model, pairs: list[tuple[str, str]], labels: list[int], every: int, batch_size: int):
    from transformers import TrainerCallback

    from .cross_encoder import predict_probs
    from .train import roc_auc

    class DevEval(TrainerCallback):
        """Dev ROC-AUC every ``every`` steps (and at the last step); keeps the best weights."""

        def __init__(self) -> None:
            self.history: list[dict[str, Any]] = []
            self.best_auc, self.best_step, self.best_state = -1.0, 0, None
            self.t0 = time.perf_counter()

        def _loss(self, state) -> Optional[float]:
            losses = [h["loss"] for h in state.log_history if "loss" in h]
            return float(losses[-1]) if losses else None

        def on_step_end(self, args, state, control, **kw):
            step, total = state.global_step, state.max_steps
            if not pairs or (step % every and step != total):
                return
            auc = roc_auc(labels, predict_probs(model, pairs, batch_size))
            model.model.train()
            elapsed = time.perf_counter() - self.t0
            eta = elapsed / step * (total - step)
            self.history.append(
                {
                    "step": step,
                    "epoch": round(state.epoch or 0.0, 3),
                    "dev_roc_auc": round(auc, 4),
                    "loss": self._loss(state),
                    "elapsed_s": round(elapsed, 1),
                }
            )
            if auc > self.best_auc:
                self.best_auc, self.best_step = auc, step
                self.best_state = {k: v.detach().clone() for k, v in model.model.state_dict().items()}
            log.info(
                "verifier train: step %d/%d, loss %s, dev ROC-AUC %.3f (best %.3f at step %d); %.0f s elapsed, "
                "ETA %.0f s",
                step,
                total,
                f"{self._loss(state):.3f}" if self._loss(state) is not None else "-",
                auc,
                self.best_auc,
                self.best_step,
                elapsed,
                eta,
            )

    return DevEval()


def fit(
    pairs: list[tuple[str, str]],
    labels: list[int],
    dev_pairs: list[tuple[str, str]],
    dev_labels: list[int],
    cfg,
    output: Path,
    show_progress: bool,
) -> tuple[Any, dict[str, Any]]:
    """Train; returns (model with the best dev weights, {"losses", "dev", "best_step", "steps"})."""
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    from ..models import device, resolve_encoder

    torch.manual_seed(cfg.seed)
    model = CrossEncoder(
        resolve_encoder(cfg.base_model), num_labels=1, max_length=cfg.max_length, device=device(), local_files_only=True
    )
    if cfg.freeze_layers:
        _freeze(model.model, cfg.freeze_layers)
    n_pos = sum(labels)
    pos_weight = torch.tensor((len(labels) - n_pos) / max(n_pos, 1)) if cfg.balance else None
    dataset = Dataset.from_dict(
        {"query": [q for q, _ in pairs], "passage": [p for _, p in pairs], "label": [float(y) for y in labels]}
    )
    steps = math.ceil(len(pairs) / cfg.batch_size) * cfg.epochs
    every = cfg.eval_steps or max(1, math.ceil(steps / cfg.evals))
    args = CrossEncoderTrainingArguments(
        output_dir=str(output / "_trainer"),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.lr,
        warmup_steps=int(math.ceil(steps * cfg.warmup_ratio)),
        lr_scheduler_type="linear",
        weight_decay=0.01,
        seed=cfg.seed,
        save_strategy="no",
        report_to="none",
        logging_steps=max(1, steps // 20),
        disable_tqdm=not show_progress,
        use_cpu=device() == "cpu",
    )
    dev = _dev_callback(model, dev_pairs, dev_labels, every, cfg.batch_size * 2)
    trainer = CrossEncoderTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        callbacks=[dev],
        loss=BinaryCrossEntropyLoss(model, pos_weight=pos_weight),
    )
    log.info(
        "verifier train: %d pairs (%d positive), %d steps of %d, dev ROC-AUC every %d steps on %d pairs",
        len(pairs),
        n_pos,
        steps,
        cfg.batch_size,
        every,
        len(dev_pairs),
    )
    trainer.train()
    shutil.rmtree(output / "_trainer", ignore_errors=True)
    kept_auc = None
    if dev.best_state is not None:
        from .cross_encoder import predict_probs
        from .train import roc_auc

        model.model.load_state_dict(dev.best_state)
        model.model.eval()
        kept_auc = roc_auc(dev_labels, predict_probs(model, dev_pairs, cfg.batch_size * 2))  # the restore, checked
        log.info("verifier train: kept the weights of step %d (dev ROC-AUC %.3f)", dev.best_step, kept_auc)
    losses = [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]
    return model, {
        "losses": losses,
        "dev": dev.history,
        "best_step": dev.best_step if dev.best_state else steps,
        "steps": steps,
        "kept_dev_roc_auc": kept_auc,
    }


def _freeze(hf_model, n: int) -> None:
    """No gradients for the embeddings and the first ``n`` encoder layers of a BERT-like model."""
    base = getattr(hf_model, hf_model.base_model_prefix, hf_model)
    layers = base.encoder.layer
    if n > len(layers):
        from ..errors import ConfigError

        raise ConfigError(f"freeze_layers={n} but the model has {len(layers)} layers")
    for module in [base.embeddings, *layers[:n]]:
        for p in module.parameters():
            p.requires_grad_(False)
    log.info("verifier train: embeddings and %d of %d layers frozen", n, len(layers))
