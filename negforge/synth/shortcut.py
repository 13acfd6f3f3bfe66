"""Shortcut check: can a simple classifier tell a source's negatives from real corpus documents?

A retriever trained on LLM-written negatives can learn to spot LLM text by its style instead of its
meaning (a *source-dependent shortcut*, CausalNeg, arXiv 2606.01304). For each negative source
(llm, bm25, dense, ...) this module trains a logistic regression, cross-validated, on the encoder's
embeddings plus length and punctuation features, to tell that source's kept negatives from as many
real corpus documents (a seeded sample that holds none of the negatives), and reports the
out-of-fold ROC-AUC with a bootstrap interval. About 0.5: the negatives read like the corpus;
near 1: they are easy to spot, and a warning says so.

scikit-learn is used when installed (``pip install scikit-learn``); otherwise a small numpy logistic
regression does the same job.
"""

from __future__ import annotations

import logging
import math
import string
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
from pydantic import BaseModel, Field

from .reports import Report
from .schema import Record, normalise_text
from .seeding import text_rng

log = logging.getLogger(__name__)

REPEATS = 3  # cross-validation repeats (different fold shuffles) per check
WARN_AUC = 0.8  # a source with AUC at least this (and an interval above 0.5) is easy to spot
_PUNCT = set(string.punctuation)


class SourceShortcut(BaseModel):
    source: str
    negatives: int
    real: int
    auc: Optional[float] = None  # None when there were too few negatives to cross-validate
    low: Optional[float] = None  # bootstrap interval (``level``) of the out-of-fold AUC
    high: Optional[float] = None
    easy_to_spot: bool = False
    note: str = ""


class ShortcutReport(Report):
    features: str
    folds: int
    level: float
    warn_auc: float
    sources: list[SourceShortcut] = Field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        return [
            f"{s.source} negatives are easy to tell from real documents: AUC {s.auc:.2f} "
            f"[{s.low:.2f}, {s.high:.2f}] (a retriever can learn their style instead of their meaning)"
            for s in self.sources
            if s.easy_to_spot
        ]

    def table(self) -> str:
        rows = [f"{'source':<10} {'negatives':>9} {'real':>6}  AUC [{self.level:.0%} interval]"]
        for s in self.sources:
            auc = f"{s.auc:.3f} [{s.low:.3f}, {s.high:.3f}]" if s.auc is not None else f"- ({s.note})"
            flag = "  EASY TO SPOT" if s.easy_to_spot else ""
            rows.append(f"{s.source:<10} {s.negatives:>9} {s.real:>6}  {auc}{flag}")
        return "\n".join(rows)


# -- features -----------------------------------------------------------------------------------
def style_features(texts: Sequence[str]) -> np.ndarray:
    """Length and punctuation features per text (log words, word length, sentence length, rates)."""
    out = []
    for t in texts:
        words = t.split()
        n_w, n_c = max(len(words), 1), max(len(t), 1)
        sentences = max(sum(t.count(c) for c in ".!?"), 1)
        out.append(
            [
                math.log1p(len(words)),
                sum(len(w) for w in words) / n_w,
                len(words) / sentences,
                t.count(",") / n_w,
                sum(t.count(c) for c in ".!?") / n_w,
                sum(c.isdigit() for c in t) / n_c,
                sum(c.isupper() for c in t) / n_c,
                sum(c in "()[]" for c in t) / n_c,
                sum(c in "\"'" for c in t) / n_c,
                sum(c in ":;" for c in t) / n_c,
                sum(c in _PUNCT for c in t) / n_c,
                len({w.lower() for w in words}) / n_w,
            ]
        )
    return np.asarray(out, dtype=np.float64).reshape(len(texts), 12)


def _ranks(s: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(s, kind="mergesort"), kind="mergesort") / max(len(s) - 1, 1)


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC-AUC as the Mann-Whitney statistic (ties count half)."""
    y, s = np.asarray(y).astype(bool), np.asarray(s, dtype=np.float64)
    pos, neg = s[y], s[~y]
    if not len(pos) or not len(neg):
        raise ValueError("ROC-AUC needs both classes")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # average rank (1-based) of each tie group
    return float((ranks[y].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _fit_predict_numpy(X: np.ndarray, y: np.ndarray, Xt: np.ndarray, l2: float = 1.0) -> np.ndarray:
    """L2-regularised logistic regression by Newton steps (the fallback without scikit-learn)."""
    mu, sd = X.mean(0), X.std(0) + 1e-9
    A, At = np.c_[(X - mu) / sd, np.ones(len(X))], np.c_[(Xt - mu) / sd, np.ones(len(Xt))]
    w = np.zeros(A.shape[1])
    reg = np.eye(len(w)) * l2
    reg[-1, -1] = 0.0
    for _ in range(50):
        p = 1 / (1 + np.exp(-A @ w))
        grad = A.T @ (p - y) + reg @ w
        hess = (A * (p * (1 - p))[:, None]).T @ A + reg + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return At @ w


def _fit_predict(X: np.ndarray, y: np.ndarray, Xt: np.ndarray) -> np.ndarray:
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        return _fit_predict_numpy(X, y, Xt)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    clf.fit(X, y)
    return clf.decision_function(Xt)


def cross_val_scores(X: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold classifier scores, stratified folds from a seeded shuffle."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=int)
    for cls in (0, 1):
        idx = np.flatnonzero(y == cls)
        rng.shuffle(idx)
        fold[idx] = np.arange(len(idx)) % folds
    out = np.empty(len(y))
    for k in range(folds):
        test = fold == k
        out[test] = _fit_predict(X[~test], y[~test], X[test])
    return out


def bootstrap_interval(
    y: np.ndarray, s: np.ndarray, level: float = 0.95, n: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of the AUC over resamples of the (stratified) out-of-fold scores."""
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    aucs = []
    for _ in range(n):
        idx = np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]
        aucs.append(roc_auc(y[idx], s[idx]))
    a = (1 - level) / 2
    return float(np.quantile(aucs, a)), float(np.quantile(aucs, 1 - a))


def separability(
    negatives: Sequence[str], real: Sequence[str], embed: Any = None, folds: int = 5, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(AUC, low, high) of a cross-validated classifier telling ``negatives`` from ``real`` texts (the out-of-fold
    scores of ``REPEATS`` cross-validations averaged; the interval bootstraps those scores).
    ``embed``: texts -> (n, d) array (None: length and punctuation features only)."""
    texts = list(negatives) + list(real)
    X = style_features(texts)
    if embed is not None:
        X = np.c_[X, np.asarray(embed(texts), dtype=np.float64)]
    y = np.r_[np.ones(len(negatives)), np.zeros(len(real))]
    k = max(2, min(folds, len(negatives), len(real)))
    # out-of-fold scores of REPEATS differently shuffled cross-validations, ranked and averaged: less noise
    s = np.mean([_ranks(cross_val_scores(X, y, k, seed + i)) for i in range(REPEATS)], axis=0)
    low, high = bootstrap_interval(y, s, level, seed=seed)
    return roc_auc(y, s), low, high


def negatives_by_source(records: Sequence[Record], only_kept: bool = True) -> dict[str, list[str]]:
    """The negatives' texts per source: the kept ones, or all when no negative has a verdict yet. A source
    whose negatives were all rejected is there with no text (the report says so instead of leaving it out)."""
    any_verdict = any(n.verdict is not None for r in records for n in r.negatives)
    out: dict[str, list[str]] = {}
    for r in records:
        for n in r.negatives:
            texts = out.setdefault(n.source.value, [])
            if only_kept and any_verdict and not n.kept:
                continue
            texts.append(n.text)
    return out


def check_sources(
    by_source: dict[str, list[str]],
    corpus_texts: Sequence[str],
    encoder: Optional[str] = "bundled",
    max_per_source: int = 300,
    min_negatives: int = 5,
    folds: int = 5,
    seed: int = 0,
    level: float = 0.95,
    warn_auc: float = WARN_AUC,
    runtime: Optional[dict[str, str]] = None,
) -> ShortcutReport:
    """One :class:`SourceShortcut` per source of ``by_source`` (source -> negative texts).
    ``runtime``: the encoder's ``backend`` / ``precision`` (:mod:`negforge.mixers.runtime`; default torch)."""
    embed = None
    if encoder is not None:
        from negforge.mixers.embeddings import encode_texts

        from .models import DEFAULT_ENCODER

        name = DEFAULT_ENCODER if encoder == "bundled" else encoder
        rt: dict[str, Any] = dict(runtime or {})
        embed = lambda texts: encode_texts(texts, name, **rt)  # noqa: E731
    report = ShortcutReport(
        features="style" + (f" + embeddings ({encoder})" if encoder else ""),
        folds=folds,
        level=level,
        warn_auc=warn_auc,
    )
    corpus = list(dict.fromkeys(corpus_texts))
    for source in sorted(by_source):
        rng = text_rng(seed, source)
        texts = list(dict.fromkeys(by_source[source]))
        if len(texts) > max_per_source:
            texts = rng.sample(texts, max_per_source)
        taken = {normalise_text(t) for t in texts}
        pool = [t for t in corpus if normalise_text(t) not in taken]
        real = rng.sample(pool, min(len(texts), len(pool)))
        entry = SourceShortcut(source=source, negatives=len(texts), real=len(real))
        if not texts:
            entry.note = "no kept negative"
        elif min(len(texts), len(real)) < min_negatives:
            entry.note = f"fewer than {min_negatives} negatives or documents"
        else:
            auc, low, high = separability(texts, real, embed, folds, seed, level)
            entry.auc, entry.low, entry.high = round(auc, 4), round(low, 4), round(high, 4)
            entry.easy_to_spot = auc >= warn_auc and low > 0.5
        report.sources.append(entry)
    for w in report.warnings:
        log.warning("shortcut check: %s", w)
    return report


def shortcut_check(
    records: Sequence[Record],
    corpus_texts: Sequence[str],
    encoder: Optional[str] = "bundled",
    only_kept: bool = True,
    **kwargs: Any,
) -> ShortcutReport:
    """Per negative source of ``records``, how well its negatives can be told from real corpus documents.

    Texts are compared without titles (generated negatives have none). ``only_kept``: the kept negatives
    (verified); unverified ones count when no negative has a verdict. ``encoder``: a sentence-transformers
    name or path (``bundled``: MiniLM); None: style features only. Other keywords go to :func:`check_sources`.
    """
    return check_sources(negatives_by_source(records, only_kept), corpus_texts, encoder, **kwargs)


def shortcut_records(
    records: Sequence[Record], dataset: Any, encoder: Optional[str] = "bundled", **kwargs: Any
) -> tuple[list[Record], ShortcutReport]:
    """The stage shape: ``(records, dataset, ...) -> (records unchanged, report)``; real documents are the
    dataset's corpus texts."""
    corpus = getattr(dataset, "corpus", None)
    if corpus is None:
        from .errors import InputError

        raise InputError("the shortcut check needs the corpus (real documents): give --data BEIR_DIR")
    return list(records), shortcut_check(records, list(corpus.texts), encoder, **kwargs)
