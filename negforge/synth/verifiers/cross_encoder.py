"""The cross-encoder verifier: the same positive-aware rules on a cross-encoder's scores.

Scores are **sigmoid probabilities** in (0, 1) for every model (we pass ``activation_fn=Sigmoid``
to ``predict`` whatever the saved model's default is), never raw logits: a raw logit is often
negative, and ``score > pos × perc_pos`` with a negative ``pos`` would accept negatives that
outscore the positive. With probabilities the positive score is always > 0, so the ratio rule is
well defined. ``scores["cross_encoder"]`` is P(relevant | query, negative) and
``scores["cross_encoder_pos"]`` the highest P over the record's positives.

Any single-logit ``sentence_transformers.CrossEncoder`` path works: one trained by
``negforge verifier train`` or a user's own reranker.
"""

from __future__ import annotations

import logging
from functools import lru_cache

from ..errors import ConfigError
from .base import Check, Pair, VerifyContext, positive_aware

log = logging.getLogger(__name__)


@lru_cache(maxsize=2)
def load_cross_encoder(path: str, max_length: int | None = None):
    from sentence_transformers import CrossEncoder

    from ..models import device

    try:
        model = CrossEncoder(path, device=device(), max_length=max_length, local_files_only=True)
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"cannot load cross-encoder {path!r} ({e}); set verify.cross_encoder to a CrossEncoder "
            "directory, e.g. one written by `negforge verifier train --output DIR`"
        ) from None
    if model.num_labels != 1:
        raise ConfigError(
            f"cross-encoder {path!r} has {model.num_labels} labels; the verifier needs a "
            "single-logit relevance model (num_labels=1)"
        )
    log.info("loaded cross-encoder %s (max_length %s)", path, model.max_length)
    return model


def predict_probs(
    model, pairs: list[tuple[str, str]], batch_size: int = 32, show_progress: bool = False
) -> list[float]:
    """Sigmoid probabilities for (query, passage) pairs, in order."""
    import torch

    if not pairs:
        return []
    probs = model.predict(
        pairs,
        batch_size=batch_size,
        activation_fn=torch.nn.Sigmoid(),
        show_progress_bar=show_progress,
        convert_to_numpy=True,
    )
    return [float(x) for x in probs]


class CrossEncoderVerifier:
    name = "cross_encoder"

    def __init__(self, ctx: VerifyContext):
        self.cfg, self.show_progress = ctx.cfg, ctx.show_progress
        if not ctx.cfg.cross_encoder:
            raise ConfigError(
                "verifiers lists 'cross_encoder' but verify.cross_encoder is not set: train one with "
                "`negforge verifier train --data BEIR_DIR --output DIR` and pass "
                "--set cross_encoder=DIR (or drop 'cross_encoder' from verify.verifiers)"
            )
        self.model = load_cross_encoder(ctx.cfg.cross_encoder)

    def check(self, pairs: list[Pair]) -> list[Check]:
        if not pairs:
            return []
        records = list({r.id: r for r, _ in pairs}.values())
        todo = [(r.query, p.full_text) for r in records for p in r.positives]
        todo += [(r.query, n.full_text) for r, n in pairs]
        unique = list(dict.fromkeys(todo))
        probs = dict(zip(unique, predict_probs(self.model, unique, self.cfg.encoder.batch_size, self.show_progress)))
        pos_score = {r.id: max(probs[(r.query, p.full_text)] for p in r.positives) for r in records}
        return [
            positive_aware(
                self.name,
                probs[(r.query, n.full_text)],
                pos_score[r.id],
                self.cfg.perc_pos,
                self.cfg.abs_margin,
                what="P(relevant)",
            )
            for r, n in pairs
        ]
