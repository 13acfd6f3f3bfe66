"""False-negative report: how many negatives per source are really positives, before and after verification.

A negative is a **certain false negative** when the qrels mark its doc relevant for the query (or
it is one of the record's positives by id or by normalised text): exactly what the ``qrels``
verifier removes. That makes "FN rate after the full verifier" 0 by construction whenever the
qrels rule runs, which says nothing about the verifier's judgement. So the report gives:

* ``fn_before``: certain FN / negatives, as the records came in;
* ``model``: the model-based rules alone (``cfg.verifiers`` without ``qrels``) run on *every*
  negative: how many they drop, how many certain FN they catch (``fn_recall``), the certain-FN
  rate among the negatives they keep (``fn_after``), and the share of their drops that are
  certain FN (``drop_precision``; the rest are unlabelled — hard, or relevant but unjudged,
  which the qrels cannot tell apart);
* ``all``: the full verifier (qrels first, then the model rules): ``kept``, ``kept_share`` and
  ``fn_after`` (0 by construction);
* ``judge``: where the records carry ``scores["llm_judge"]``, the share of judged negatives the
  LLM judge calls relevant (yes) and yes-or-partly;
* ``sweep``: for each model score, the FN recall and the share dropped at several ``perc_pos``
  values (from the recorded scores, no re-encoding), to pick a threshold.

Plots (matplotlib, Agg): per model score, one panel per source with the score distributions of
positives, kept negatives, dropped negatives and certain FN.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from pydantic import Field

from .config import VerifyConfig
from .data import Dataset
from .errors import InputError
from .io import write_lines
from .reports import Report
from .schema import Negative, Record, Status
from .stages import stage_dataset
from .verifiers import verify_records
from .verifiers.base import VerifyContext, positive_aware
from .verifiers.qrels import QrelsVerifier

log = logging.getLogger(__name__)

MODEL_SCORES = ("embedding", "cross_encoder")
PLOT_GROUPS = {
    "positive (max per query)": "tab:blue",
    "negative kept": "tab:green",
    "negative dropped": "tab:orange",
    "certain FN (qrels)": "tab:red",
}
SWEEP = (0.8, 0.85, 0.9, 0.95, 1.0)


Group = Callable[[Record, Negative], str]  # the table row (and plot panel) of a negative; default: its source


def _source(_: Record, n: Negative) -> str:
    return n.source.value if hasattr(n.source, "value") else str(n.source)


def _share(a: int, b: int) -> Optional[float]:
    return round(a / b, 4) if b else None


class FNReport(Report):
    """The false-negative report (see the module doc); :meth:`table` is its markdown."""

    model_rules: list[str]
    perc_pos: float
    abs_margin: float
    records: int
    sources: dict[str, dict[str, Any]]  # group -> counts and rates (``all`` last)
    sweep: dict[str, list[dict[str, Any]]]  # model score -> one row per perc_pos
    verify: Optional[dict[str, Any]] = None  # the model rules' VerifyReport
    plots: list[str] = Field(default_factory=list)
    curves: Optional[dict[str, Any]] = None  # negforge.synth.fn_curves.fn_curves, when asked for

    def table(self) -> str:
        return markdown(self)


def fn_report(
    records: list[Record],
    dataset: Optional[Dataset],
    cfg: VerifyConfig,
    *,
    out_dir: Optional[str | Path] = None,
    show_progress: bool = True,
    group: Group = _source,
    prefix: str = "fn_report",
    curves: bool = False,
) -> tuple[list[Record], FNReport]:
    """Compute the report (see the module doc); with ``out_dir`` also write ``{prefix}.{json,md}`` and PNGs.

    ``dataset.qrels`` define the certain false negatives (required); ``dataset.corpus`` is optional.
    The records come back unchanged: the report judges them, it does not verify them.
    ``group(record, negative)`` names the row a negative is counted in (default: its source), e.g. to
    give planted false negatives their own row. ``curves``: also the false-negative curves of
    :mod:`negforge.synth.fn_curves` (each model rule on every negative, with a false negative planted
    on every record with >= 2 positives), drawn to ``{prefix}_curves.png``.
    """
    dataset = stage_dataset("fn_report", dataset, cfg, VerifyConfig)
    if dataset.qrels is None:
        raise InputError(
            "fn-report needs qrels (they define the certain false negatives): pass a Dataset with "
            "qrels, e.g. load_beir(folder, split)"
        )
    qrels, corpus = dataset.qrels, dataset.corpus
    model_rules = [v for v in cfg.verifiers if v != "qrels"]
    certain = QrelsVerifier(VerifyContext(cfg, qrels, corpus, show_progress)).check(
        [(r, n) for r in records for n in r.negatives]
    )
    is_fn = iter(not c.passed for c in certain)
    fn_flags = [[next(is_fn) for _ in r.negatives] for r in records]
    checked = records
    model_report = None
    if model_rules:
        checked, model_report = verify_records(
            records,
            dataset,
            cfg.model_copy(update={"verifiers": model_rules, "reverify": True}),
            show_progress=show_progress,
        )
    rows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r, flags in zip(checked, fn_flags):
        for n, fn in zip(r.negatives, flags):
            for src in (group(r, n), "all"):
                c = rows[src]
                c["negatives"] += 1
                c["certain_fn"] += fn
                dropped = model_rules and n.verdict is not None and n.verdict.status == Status.rejected
                c["model_dropped"] += bool(dropped)
                c["model_caught"] += bool(dropped and fn)
                c["model_kept_fn"] += bool(fn and not dropped)
                c["all_kept"] += bool(not fn and not dropped)
                j = n.scores.get("llm_judge")
                if j is not None:
                    c["judged"] += 1
                    c["judge_yes"] += j >= 1.0
                    c["judge_yes_partly"] += j >= 0.5
    sources = sorted(rows, key=lambda s: (s == "all", s))
    table = {s: _row(rows[s]) for s in sources}
    report = FNReport(
        model_rules=model_rules,
        perc_pos=cfg.perc_pos,
        abs_margin=cfg.abs_margin,
        records=len(records),
        sources=table,
        sweep=sweep(checked, fn_flags, cfg.abs_margin),
        verify=model_report.to_dict() if model_report else None,
    )
    if curves and model_rules:
        from .fn_curves import fn_curves, known_fn, plant_false_negatives, score_negatives

        planted = plant_false_negatives(records)
        fn_mask = known_fn(planted, qrels)
        if fn_mask.any():
            report.curves = fn_curves(
                planted, score_negatives(planted, cfg, model_rules, qrels, corpus, show_progress), fn_mask, cfg
            )
        else:
            log.warning("fn-report: no record has 2 positives or a qrels-relevant negative: no curve to draw")
    if out_dir is not None:
        out = Path(out_dir)
        report.write_json(out / f"{prefix}.json")
        write_lines(out / f"{prefix}.md", [markdown(report) + "\n"])
        report.plots = [str(p) for p in plot_scores(checked, fn_flags, out, group, prefix)]
        if report.curves:
            from .fn_curves import plot_curves

            report.plots.append(str(plot_curves(report.curves, out / f"{prefix}_curves.png")))
        report.write_json(out / f"{prefix}.json")
    return records, report


def _row(c: dict[str, int]) -> dict[str, Any]:
    model_kept = c["negatives"] - c["model_dropped"]
    return {
        "negatives": c["negatives"],
        "certain_fn": c["certain_fn"],
        "fn_before": _share(c["certain_fn"], c["negatives"]),
        "model": {
            "dropped": c["model_dropped"],
            "dropped_share": _share(c["model_dropped"], c["negatives"]),
            "fn_caught": c["model_caught"],
            "fn_recall": _share(c["model_caught"], c["certain_fn"]),
            "fn_after": _share(c["model_kept_fn"], model_kept),
            "drop_precision": _share(c["model_caught"], c["model_dropped"]),
        },
        "all": {
            "kept": c["all_kept"],
            "kept_share": _share(c["all_kept"], c["negatives"]),
            "fn_after": 0.0 if c["all_kept"] else None,
        },
        "judge": (
            {
                "judged": c["judged"],
                "yes": _share(c["judge_yes"], c["judged"]),
                "yes_or_partly": _share(c["judge_yes_partly"], c["judged"]),
            }
            if c["judged"]
            else None
        ),
    }


def sweep(
    records: list[Record], fn_flags: list[list[bool]], abs_margin: float, values: tuple[float, ...] = SWEEP
) -> dict[str, list[dict[str, Any]]]:
    """Per model score: FN recall and dropped share at each perc_pos (from the scores on the records)."""
    out = {}
    for name in MODEL_SCORES:
        pts = [
            (n.scores[name], n.scores[f"{name}_pos"], fn)
            for r, flags in zip(records, fn_flags)
            for n, fn in zip(r.negatives, flags)
            if name in n.scores and f"{name}_pos" in n.scores
        ]
        if not pts:
            continue
        n_fn = sum(fn for *_, fn in pts)
        rows = []
        for perc in values:
            drop = [not positive_aware(name, s, p, perc, abs_margin).passed for s, p, _ in pts]
            caught = sum(d and fn for d, (*_, fn) in zip(drop, pts))
            rows.append(
                {
                    "perc_pos": perc,
                    "dropped_share": _share(sum(drop), len(pts)),
                    "fn_recall": _share(caught, n_fn),
                    "drop_precision": _share(caught, sum(drop)),
                }
            )
        out[name] = rows
    return out


def _pct(x: Optional[float]) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def markdown(report: FNReport) -> str:
    rules = " + ".join(report.model_rules) or "none"
    lines = [
        f"# False-negative report ({report.records} queries)",
        "",
        f"Model rules: {rules} (perc_pos {report.perc_pos}, abs_margin {report.abs_margin}). "
        "A *certain FN* is a negative the qrels mark relevant (or a copy of a positive). "
        "*After, model rules alone*: the rules run without the qrels rule; the honest measure. "
        "*After, all rules*: qrels rule first, so certain FN are 0 by construction.",
        "",
        "| source | negatives | FN before | model: dropped | model: FN caught | model: FN after | "
        "model: drops that are FN | all rules: kept | all rules: FN after | judge yes | judge yes/partly |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s, row in report.sources.items():
        m, a, j = row["model"], row["all"], row["judge"] or {}
        lines.append(
            f"| {s} | {row['negatives']} | {_pct(row['fn_before'])} ({row['certain_fn']}) | "
            f"{_pct(m['dropped_share'])} | {_pct(m['fn_recall'])} ({m['fn_caught']}/{row['certain_fn']}) | "
            f"{_pct(m['fn_after'])} | {_pct(m['drop_precision'])} | {_pct(a['kept_share'])} ({a['kept']}) | "
            f"{_pct(a['fn_after'])} | {_pct(j.get('yes'))} | {_pct(j.get('yes_or_partly'))} |"
        )
    for name, rows in report.sweep.items():
        lines += [
            "",
            f"Threshold sweep on `{name}` (all sources):",
            "",
            "| perc_pos | dropped | FN recall | drops that are FN |",
            "|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['perc_pos']} | {_pct(r['dropped_share'])} | {_pct(r['fn_recall'])} | {_pct(r['drop_precision'])} |"
            for r in rows
        ]
    if report.curves:
        from .fn_curves import markdown as curves_md

        lines += ["", curves_md(report.curves, "False-negative curves (planted false negatives)")]
    return "\n".join(lines)


def plot_scores(
    records: list[Record], fn_flags: list[list[bool]], out_dir: Path, group: Group = _source, prefix: str = "fn_report"
) -> list[Path]:
    """One PNG per model score: per source, positives vs kept vs dropped negatives vs certain FN."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for name in MODEL_SCORES:
        groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        seen_pos: set[tuple[str, str]] = set()
        for r, flags in zip(records, fn_flags):
            for n, fn in zip(r.negatives, flags):
                if name not in n.scores:
                    continue
                src = group(r, n)
                if (src, r.id) not in seen_pos and f"{name}_pos" in n.scores:
                    seen_pos.add((src, r.id))
                    groups[src]["positive (max per query)"].append(n.scores[f"{name}_pos"])
                kept = n.verdict is None or n.verdict.status == Status.kept
                groups[src]["negative kept" if kept else "negative dropped"].append(n.scores[name])
                if fn:
                    groups[src]["certain FN (qrels)"].append(n.scores[name])
        if not groups:
            continue
        srcs = sorted(groups)
        values = [v for g in groups.values() for vals in g.values() for v in vals]
        lo, hi = min(values), max(values)
        bins = [lo + (hi - lo) * i / 40 for i in range(41)] if hi > lo else 10  # shared by every panel
        fig, axes = plt.subplots(1, len(srcs), figsize=(4.5 * len(srcs), 3.6), squeeze=False)
        for ax, src in zip(axes[0], srcs):
            for label, colour in PLOT_GROUPS.items():  # same colour for a group in every panel
                vals = groups[src].get(label)
                if vals:
                    ax.hist(vals, bins=bins, alpha=0.45, color=colour, label=f"{label} ({len(vals)})", density=True)
            ax.set_title(f"{src}: {name} score")
            ax.set_xlabel(name)
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"{prefix}_{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
