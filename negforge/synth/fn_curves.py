"""False-negative curves: known-false-negative recall against the share of negatives dropped, per verifier.

A verifier is a trade-off, not a point: a stricter threshold catches more false negatives and throws
away more good hard negatives. This module measures the whole trade-off on records where some false
negatives are **known**:

* ``plant_false_negatives``: on every record with >= 2 positives, one positive (a real relevant
  document) is moved into the negatives (``provenance.extra["planted"]``); the others stay as the
  positive reference. Negatives the qrels mark relevant count as known too.
* every model verifier listed (``embedding``, ``cross_encoder``, ``llm_judge``) scores **every**
  negative independently (not only those an earlier verifier kept);
* for the positive-aware rules (embedding, cross-encoder) the threshold is ``perc_pos``: a negative is
  dropped when ``score > perc_pos × positive score``, i.e. when its ratio ``score / positive`` exceeds
  it. Sweeping it over every observed ratio gives the curve. The LLM judge has two points (drop on
  "yes"; drop on "yes" or "partly");
* combinations: ``any`` (drop when either rule fires) and ``both`` over a grid of per-verifier
  thresholds; their curve is the Pareto front (most recall at each share dropped), each point naming
  its thresholds.

``dropped`` is the share of the *other* negatives (not known false negatives) a threshold drops: the
price in hard negatives. Some of those are relevant but unlabelled, so it is an upper bound on harm.
Today's defaults (``VerifyConfig().perc_pos``, ``judge_partly_rejects``) are marked on each curve.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .config import VerifyConfig
from .data import Corpus, Qrels
from .schema import Negative, Provenance, Record, Source

log = logging.getLogger(__name__)

PLANTED = "planted"
RATIO_RULES = ("embedding", "cross_encoder")
LEVELS = (0.05, 0.10, 0.15, 0.20, 0.30)  # share-dropped budgets the summary table reads the curves at
GRID = 41  # per-verifier thresholds tried in a combination (quantiles of the observed ratios)


def plant_false_negatives(records: list[Record]) -> list[Record]:
    """Copies of ``records``; where a record has >= 2 positives its last one becomes a planted negative."""
    out = []
    for r in records:
        r = r.model_copy(deep=True)
        if len(r.positives) >= 2:
            p = r.positives.pop()
            r.negatives.append(
                Negative(
                    text=p.text,
                    title=p.title,
                    doc_id=p.doc_id,
                    source=Source.imported,
                    provenance=Provenance(extra={PLANTED: True}),
                )
            )
        out.append(r)
    return out


def known_fn(records: list[Record], qrels: Optional[Qrels]) -> np.ndarray:
    """Per negative (records in order): planted, or marked relevant by the qrels (grade > 0)."""
    flags = []
    for r in records:
        rel = (qrels or {}).get(r.id, {})
        own = r.positive_ids()  # a copy of the record's own positive is a duplicate, not a false negative
        flags += [
            bool(n.provenance.extra.get(PLANTED))
            or (n.doc_id is not None and n.doc_id not in own and rel.get(n.doc_id, 0) > 0)
            for n in r.negatives
        ]
    return np.array(flags, dtype=bool)


def score_negatives(
    records: list[Record],
    cfg: VerifyConfig,
    names: list[str],
    qrels: Optional[Qrels] = None,
    corpus: Optional[Corpus] = None,
    show_progress: bool = False,
) -> dict[str, np.ndarray]:
    """Per verifier in ``names``: one score per negative (records in order), each verifier on every negative.

    Ratio rules give ``score / positive score`` (NaN where the positive score is <= 0); the judge gives
    1 (yes), 0.5 (partly), 0 (no) or NaN (unparseable).
    """
    from .verifiers import VERIFIERS
    from .verifiers.base import VerifyContext

    pairs = [(r, n) for r in records for n in r.negatives]
    ctx = VerifyContext(cfg, qrels, corpus, show_progress)
    out = {}
    for name in names:
        checks = VERIFIERS.create(name, ctx).check(pairs)
        if name in RATIO_RULES:
            vals = [
                c.scores[name] / c.scores[f"{name}_pos"] if c.scores.get(f"{name}_pos", 0) > 0 else np.nan
                for c in checks
            ]
        else:
            vals = [c.scores.get(name, np.nan) for c in checks]
        out[name] = np.array(vals, dtype=float)
    return out


def _point(drop: np.ndarray, fn: np.ndarray, **extra: Any) -> dict[str, Any]:
    neg = ~fn
    return {
        "dropped": round(float(drop[neg].mean()) if neg.any() else 0.0, 4),
        "recall": round(float(drop[fn].mean()) if fn.any() else 0.0, 4),
        **extra,
    }


def ratio_curve(ratio: np.ndarray, fn: np.ndarray, default: float) -> dict[str, Any]:
    """Every threshold between observed ratios (drop when ratio > t), best first; plus the default point."""
    r = np.nan_to_num(ratio, nan=-np.inf)
    cuts = np.unique(r[np.isfinite(r)])
    ts = np.concatenate([[cuts[0] - 1e-9], cuts]) if len(cuts) else np.array([default])
    pts = [_point(r > t, fn, threshold=float(t)) for t in ts]  # exact: a rounded t would drop its own point
    return {"points": pareto(pts), "default": _point(r > default, fn, threshold=default)}


def judge_curve(score: np.ndarray, fn: np.ndarray, partly_rejects: bool) -> dict[str, Any]:
    s = np.nan_to_num(score, nan=-1.0)
    pts = [_point(s >= 1.0, fn, threshold="yes"), _point(s >= 0.5, fn, threshold="yes or partly")]
    return {"points": pts, "default": pts[1] if partly_rejects else pts[0]}


def pareto(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The points no other point beats (less or equally dropped, more recall), by share dropped."""
    best, front = -1.0, []
    for p in sorted(points, key=lambda p: (p["dropped"], -p["recall"])):
        if p["recall"] > best:
            front.append(p)
            best = p["recall"]
    return front


def combo_curve(scores: dict[str, np.ndarray], names: list[str], fn: np.ndarray, mode: str) -> dict[str, Any]:
    """Pareto front of ``any`` / ``both`` over a quantile grid of each ratio rule's threshold."""
    a, b = (np.nan_to_num(scores[n], nan=-np.inf) for n in names)
    qs = np.linspace(0.5, 1.0, GRID)
    ta = np.unique(np.quantile(a[np.isfinite(a)], qs)) if np.isfinite(a).any() else np.array([np.inf])
    tb = np.unique(np.quantile(b[np.isfinite(b)], qs)) if np.isfinite(b).any() else np.array([np.inf])
    pts = []
    for x in np.concatenate([ta, [np.inf]]):
        da = a > x
        for y in np.concatenate([tb, [np.inf]]):
            drop = (da | (b > y)) if mode == "any" else (da & (b > y))
            pts.append(_point(drop, fn, threshold={names[0]: _t(x), names[1]: _t(y)}))
    return {"points": pareto(pts), "default": None}


def _t(x: float) -> Optional[float]:
    return None if not np.isfinite(x) else float(x)


def fn_curves(
    records: list[Record], scores: dict[str, np.ndarray], fn: np.ndarray, cfg: Optional[VerifyConfig] = None
) -> dict[str, Any]:
    """Curves per verifier and for the combinations of the ratio rules present (see the module doc)."""
    cfg = cfg or VerifyConfig()
    curves: dict[str, Any] = {}
    for name, s in scores.items():
        curves[name] = (
            ratio_curve(s, fn, cfg.perc_pos) if name in RATIO_RULES else judge_curve(s, fn, cfg.judge_partly_rejects)
        )
    ratio = [n for n in RATIO_RULES if n in scores]
    if len(ratio) == 2:
        for mode in ("any", "both"):
            curves[f"{ratio[0]} {mode} {ratio[1]}"] = combo_curve(scores, ratio, fn, mode)
    return {
        "known_fn": int(fn.sum()),
        "negatives": int((~fn).sum()),
        "records": len(records),
        "curves": curves,
        "summary": summary(curves),
    }


def at_budget(points: list[dict[str, Any]], budget: float) -> Optional[dict[str, Any]]:
    """The point with the most recall among those dropping at most ``budget``."""
    ok = [p for p in points if p["dropped"] <= budget]
    return max(ok, key=lambda p: (p["recall"], -p["dropped"])) if ok else None


def summary(curves: dict[str, Any], levels: tuple[float, ...] = LEVELS) -> dict[str, Any]:
    return {
        name: {"default": c["default"], **{f"{lv:.2f}": at_budget(c["points"], lv) for lv in levels}}
        for name, c in curves.items()
    }


def _pct(x: Optional[float]) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def markdown(res: dict[str, Any], title: str = "False-negative curves") -> str:
    lv = list(next(iter(res["summary"].values()), {}).keys())[1:]
    lines = [
        f"### {title}",
        "",
        f"{res['records']} queries, {res['known_fn']} known false negatives (planted or qrels-relevant), "
        f"{res['negatives']} other negatives. Cell: FN recall at the best threshold that drops at most that "
        "share of the other negatives (threshold in brackets). *default*: today's setting.",
        "",
        "| verifier | default: dropped / recall | " + " | ".join(f"≤ {float(x):.0%} dropped" for x in lv) + " |",
        "|---|---|" + "---|" * len(lv),
    ]
    for name, row in res["summary"].items():
        d = row["default"]
        cells = [f"{_pct(p['recall'])} ({_fmt(p['threshold'])})" if p else "–" for p in (row[x] for x in lv)]
        lines.append(
            f"| {name} | "
            + (f"{_pct(d['dropped'])} / {_pct(d['recall'])} ({_fmt(d['threshold'])})" if d else "–")
            + " | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def _fmt(t: Any) -> str:
    if isinstance(t, dict):
        return ", ".join(f"{k[:3]} {'off' if v is None else f'{v:.3f}'}" for k, v in t.items())
    return f"{t:.3f}" if isinstance(t, float) else str(t)


def plot_curves(res: dict[str, Any], path: str | Path, title: str = "", goal: tuple[float, float] = (0.15, 0.85)):
    """One PNG: recall (y) against share dropped (x) per curve, the default marked, the goal corner shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for name, c in res["curves"].items():
        xs = [p["dropped"] for p in c["points"]]
        ys = [p["recall"] for p in c["points"]]
        style = ("--" if " any " in name or " both " in name else "-") + ("o" if len(xs) <= 5 else "")
        # steps: between two front points only the left one's recall is reached
        (line,) = ax.plot(xs, ys, style, drawstyle="steps-post", label=name, markersize=4)
        if c["default"]:
            ax.plot(
                [c["default"]["dropped"]],
                [c["default"]["recall"]],
                "*",
                color=line.get_color(),
                markersize=13,
                markeredgecolor="black",
            )
    ax.fill_between(
        [0, goal[0]],
        goal[1],
        1.02,
        color="tab:green",
        alpha=0.12,
        label=f"goal: ≥ {goal[1]:.0%} caught, ≤ {goal[0]:.0%} dropped",
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("share of other negatives dropped")
    ax.set_ylabel("known false negatives caught (recall)")
    ax.set_title(title or f"{res['known_fn']} known FN, {res['negatives']} negatives (★ = default)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
