"""False-negative control: verifiers composed in the order ``VerifyConfig.verifiers`` lists.

>>> records, report = verify_records(records, load_beir(folder), VerifyConfig(verifiers=["qrels", "embedding"]))
...                                                                                # doctest: +SKIP
>>> print(report.table())                                                        # doctest: +SKIP

Every negative without a verdict (every negative with ``reverify``) is checked by each verifier
in turn; the first that rejects it sets ``verdict = rejected`` (rule = the verifier's name, reason =
its sentence with the numbers) and later verifiers skip it (counted as ``skipped``). A negative
that passes all of them gets ``verdict = kept`` with rule ``"all"`` and a reason listing what it
passed. All sources (llm, bm25, dense, click, imported) are treated alike. ``cfg.fn_action`` then
decides what a likely false negative becomes (drop, relabel into the positives, or drop the query:
:mod:`negforge.synth.verifiers.actions`).

Verifiers are registered by name in :data:`VERIFIERS` ("module:Class" strings, imported on first
use); a new one is a class with ``name`` and ``check(pairs) -> list[Check]`` built from a
:class:`~negforge.synth.verifiers.base.VerifyContext`.
"""

from __future__ import annotations

import logging
import time
from typing import Optional

from ..config import VerifyConfig
from ..data import Corpus, Dataset, Qrels
from ..registry import Registry
from ..schema import Negative, Record, Status, Verdict
from ..stages import stage_dataset
from .actions import apply_fn_action
from .base import Check, Pair, Verifier, VerifyContext, positive_aware
from .report import VerifyReport

log = logging.getLogger(__name__)

VERIFIERS: Registry[Verifier] = Registry("verifier")
VERIFIERS.register("qrels", "negforge.synth.verifiers.qrels:QrelsVerifier")
VERIFIERS.register("embedding", "negforge.synth.verifiers.embedding:EmbeddingVerifier")
VERIFIERS.register("cross_encoder", "negforge.synth.verifiers.cross_encoder:CrossEncoderVerifier")
VERIFIERS.register("llm_judge", "negforge.synth.verifiers.llm_judge:LLMJudgeVerifier")

__all__ = [
    "VERIFIERS",
    "Check",
    "Pair",
    "Verifier",
    "VerifyContext",
    "VerifyReport",
    "build_verifiers",
    "positive_aware",
    "verify_records",
]


def build_verifiers(
    cfg: VerifyConfig, qrels: Optional[Qrels] = None, corpus: Optional[Corpus] = None, show_progress: bool = True
) -> list[Verifier]:
    """Instantiate ``cfg.verifiers`` in order; an unknown or repeated name is a ConfigError."""
    from ..errors import ConfigError

    if not cfg.verifiers:
        raise ConfigError(f"verify.verifiers is empty; list some of: {', '.join(VERIFIERS.names())}")
    dup = [v for v in cfg.verifiers if cfg.verifiers.count(v) > 1]
    if dup:
        raise ConfigError(f"verify.verifiers lists {dup[0]!r} twice")
    ctx = VerifyContext(cfg, qrels, corpus, show_progress)
    return [VERIFIERS.create(name, ctx) for name in cfg.verifiers]


def verify_records(
    records: list[Record], dataset: Optional[Dataset], cfg: VerifyConfig, *, show_progress: bool = True
) -> tuple[list[Record], VerifyReport]:
    """Set ``scores`` and ``verdict`` on every negative that needs it; returns new records and counts.

    ``dataset.qrels`` feeds the qrels rule, ``dataset.corpus`` the embedding cache (both optional).
    The input records are not modified. Negatives that already carry a verdict are left as they
    are unless ``cfg.reverify`` (they are counted as ``already``).
    """
    t0 = time.perf_counter()
    dataset = stage_dataset("verify_records", dataset, cfg, VerifyConfig)
    verifiers = build_verifiers(cfg, dataset.qrels, dataset.corpus, show_progress)
    out = [r.model_copy(deep=True) for r in records]
    report = VerifyReport(rules=[v.name for v in verifiers])
    todo: list[Pair] = []
    for r in out:
        for n in r.negatives:
            src = _src(n)
            report.total(src)["negatives"] += 1
            if n.verdict is not None and not cfg.reverify:
                report.total(src)["already"] += 1
                continue
            n.verdict = None
            todo.append((r, n))
    passed: dict[int, list[str]] = {id(n): [] for _, n in todo}
    rejected: set[int] = set()
    flagged: dict[int, tuple[str, Check]] = {}  # likely false negatives: id(negative) -> (rule, check)
    for v in verifiers:
        pending = [(r, n) for r, n in todo if id(n) not in rejected]
        for _, n in todo:
            if id(n) in rejected:
                report.count(_src(n), v.name, "skipped")
        checks = v.check(pending) if pending else []
        if len(checks) != len(pending):
            raise RuntimeError(f"verifier {v.name!r} returned {len(checks)} checks for {len(pending)} negatives")
        for (_, n), c in zip(pending, checks):
            _apply(v.name, n, c, report)
            if c.passed:
                passed[id(n)].append(f"{v.name} ({c.reason})")
            else:
                rejected.add(id(n))
                if c.false_negative:
                    flagged[id(n)] = (v.name, c)
        usage = getattr(v, "usage", None)  # verifiers with an LLM count its usage
        if usage is not None:
            report.usage = usage.to_dict()
        log.info("%s: checked %d, dropped %d", v.name, len(pending), sum(not c.passed for c in checks))
    for _, n in todo:
        report.total(_src(n))["checked"] += 1
        if id(n) in rejected:
            report.total(_src(n))["dropped"] += 1
        else:
            report.total(_src(n))["kept"] += 1
            n.verdict = Verdict(status=Status.kept, rule="all", reason="passed " + "; ".join(passed[id(n)]))
    out = apply_fn_action(out, flagged, cfg, report)
    report.wall_s = time.perf_counter() - t0
    log.info(
        "verify: %d checked, %d kept, %d dropped in %.1f s", report.checked, report.kept, report.dropped, report.wall_s
    )
    return out, report


def _src(n: Negative) -> str:
    return n.source.value if hasattr(n.source, "value") else str(n.source)


def _apply(rule: str, n: Negative, c: Check, report: VerifyReport) -> None:
    src = _src(n)
    n.scores.update(c.scores)
    report.count(src, rule, "checked")
    if c.note:
        report.count(src, rule, c.note)
    if not c.passed:
        n.verdict = Verdict(status=Status.rejected, rule=rule, reason=c.reason)
        report.count(src, rule, "dropped")
        report.example(rule, c.reason)
