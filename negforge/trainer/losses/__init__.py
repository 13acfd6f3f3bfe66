"""Training losses by name. ``mnrl`` and ``cached_mnrl`` are sentence-transformers' own; ``mnrl_xbm``
(MNRL with a memory bank of earlier steps' passages as extra negatives) and the multi-positive losses
(``jointlh``, ``summarglh``, ``lsepair``, ``rand1lh``) live here, one per file.

A loss class with ``multi_positive = True`` gets the positive_1..m + ``label`` column layout; the
others get anchor, positive, negative_1..n (see :func:`negforge.trainer.train.build_columns`).
"""

from __future__ import annotations

from typing import Any

from negforge.synth.registry import Registry

LOSSES: Registry = Registry("loss")
_ST = "sentence_transformers.sentence_transformer.losses"
LOSSES.register("mnrl", f"{_ST}:MultipleNegativesRankingLoss")
LOSSES.register("cached_mnrl", f"{_ST}:CachedMultipleNegativesRankingLoss")
LOSSES.register("mnrl_xbm", "negforge.trainer.losses.mnrl_xbm:MNRLMemoryBankLoss")
LOSSES.register("jointlh", "negforge.trainer.losses.jointlh:JointLHLoss")
LOSSES.register("summarglh", "negforge.trainer.losses.summarglh:SumMargLHLoss")
LOSSES.register("lsepair", "negforge.trainer.losses.lsepair:LSEPairLoss")
LOSSES.register("rand1lh", "negforge.trainer.losses.rand1lh:Rand1LHLoss")


def is_multi_positive(name: str) -> bool:
    return bool(getattr(LOSSES.get(name), "multi_positive", False))


def build_loss(
    name: str,
    model: Any,
    scale: float = 20.0,
    mini_batch_size: int = 8,
    seed: int = 0,
    entropy_weight: float = 0.0,
    queue_size: int = 0,
    momentum: float = 0.0,
) -> Any:
    """The loss ``name`` bound to ``model``; raises ConfigError listing the valid names. ``entropy_weight`` > 0
    adds the query-view entropy term (:mod:`negforge.trainer.losses.entropy`); ``queue_size`` / ``momentum``
    are the memory bank of ``mnrl_xbm`` (:mod:`negforge.trainer.losses.mnrl_xbm`)."""
    from negforge.synth.errors import ConfigError

    cls = LOSSES.get(name)
    kwargs: dict[str, Any] = {"scale": scale}
    if name == "cached_mnrl":
        kwargs["mini_batch_size"] = mini_batch_size
    if name == "rand1lh":
        kwargs["seed"] = seed
    if name == "mnrl_xbm":
        kwargs.update(queue_size=queue_size, momentum=momentum)
    elif queue_size or momentum:
        hint = " (GradCache with a memory bank is not supported)" if name == "cached_mnrl" else ""
        raise ConfigError(
            f"train.queue_size / train.momentum are the memory bank of loss mnrl_xbm, not {name}{hint}: "
            "set train.loss=mnrl_xbm, or queue_size=0 and momentum=0"
        )
    if entropy_weight > 0 and name in ("cached_mnrl", "mnrl_xbm"):
        raise ConfigError(f"train.entropy_weight works with mnrl and the multi-positive losses, not {name}")
    loss = cls(model, **kwargs)
    if entropy_weight > 0:
        from .entropy import QueryViewEntropyLoss

        loss = QueryViewEntropyLoss(loss, entropy_weight, scale)
    return loss


__all__ = ["LOSSES", "build_loss", "is_multi_positive"]
