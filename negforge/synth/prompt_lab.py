"""Prompt iteration: render the exact messages a step sends, try a template set on a sample, compare two.

* :func:`render_step` builds a step's messages with the same code the job uses (the set's flow,
  :mod:`negforge.synth.flows`), so what you read is what the model gets. Later steps need the earlier
  steps' output: that of a generated record when the record has it (``meta``, its llm negatives), else
  visible placeholders.
* :func:`run_trial` runs the whole flow on a few records, then scores every negative with the
  verifiers (default: the embedding verifier alone, positive-aware rule) and returns a
  :class:`Trial` with the numbers to compare prompts (or flows) by: parse failures, kept-rate,
  hardness (cosine(query, negative) / cosine(query, positive)) and the shortcut AUC (how well a
  classifier tells the kept negatives from real corpus documents); :func:`write_report` writes
  ``report.md`` and ``report.html`` for one trial or two side by side.
"""

from __future__ import annotations

import html
import logging
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .config import GenerateConfig, VerifyConfig
from .errors import ConfigError
from .flows import FLOWS, flow_class, make_flow
from .gen_report import GenerateReport as JobSummary
from .generate import generate_records
from .profile import corpus_profile
from .schema import Record, Source
from .templates import TemplateSet

log = logging.getLogger(__name__)


def all_steps() -> set[str]:
    return {step for name in FLOWS.names() for step in flow_class(name).STEPS}


def parse_template(spec: str, default_set: str) -> tuple[str, Optional[list[str]]]:
    """``mar_analyse`` -> (mar, [analyse]); ``analyse`` -> (default_set, [analyse]); ``mar`` -> (mar, None:
    every step of the set). A folder path is a whole set."""
    if spec in all_steps():
        return default_set, [spec]
    name, _, step = spec.rpartition("_")
    if name and step in all_steps() and "/" not in spec:
        return name, [step]
    return spec, None


def resolve_set(spec: str, template_dir: Optional[str] = None) -> tuple[str, Optional[str]]:
    """A template set given as a folder or a set name, validated -> (spec, template_dir)."""
    TemplateSet(spec, template_dir)  # a clear error (file and key) for a bad set
    return spec, template_dir


def _flow(cfg: GenerateConfig, records: Sequence[Record] = ()) -> Any:
    """The configured flow without a backend (rendering needs none), with the stored corpus profile if any."""
    profile = corpus_profile(cfg.profile, records, cache_dir=cfg.cache_dir, model=cfg.llm.model)
    return make_flow(None, cfg, JobSummary(), profile)


def render_step(
    record: Record, cfg: GenerateConfig, step: str, index: int = 0, records: Sequence[Record] = ()
) -> tuple[list[dict], dict[str, Any]]:
    """The messages of ``step`` for ``record`` (draft ``index``) and what was filled in. ``records``: the
    whole input, for the corpus profile when ``cfg.profile.corpus`` is not set (default: ``[record]``)."""
    flow = _flow(cfg, records or [record])
    if step not in flow.STEPS:
        raise ConfigError(
            f"set {flow.templates.name!r} (flow {flow.templates.flow}) has no step {step!r}; "
            f"steps: {', '.join(flow.STEPS)}"
        )
    return flow.preview(record, step, index)


def sample_records(records: Sequence[Record], n: int, seed: int = 0) -> list[Record]:
    """``n`` records drawn with a seeded RNG, in input order (the same sample for every prompt tried)."""
    if n >= len(records):
        return list(records)
    keep = set(random.Random(seed).sample(range(len(records)), n))
    return [r for i, r in enumerate(records) if i in keep]


@dataclass
class Trial:
    label: str
    template: str
    template_dir: Optional[str]
    template_hash: str
    records: list[Record]  # generated, then scored by the verifiers (verdict = the verifiers')
    summary: JobSummary
    dropped: dict[tuple[str, Any], str]  # (record id, draft index) -> what the flow said (reflection, meta_text)
    flow: str = "mar"
    shortcut: Optional[Any] = None  # ShortcutReport of the usable negatives against real documents
    profile: Optional[Any] = None  # the CorpusProfile the prompts got

    def usable(self) -> list[Any]:
        return [
            n for r in self.records for n in r.negatives_from(Source.llm) if n.kept and _key(r, n) not in self.dropped
        ]

    def stats(self) -> dict[str, Any]:
        s, negs = self.summary, [n for r in self.records for n in r.negatives_from(Source.llm)]
        gaps = [n.scores[k + "_pos"] - n.scores[k] for n in negs for k in ("embedding",) if k in n.scores]
        hard = [
            n.scores["embedding"] / n.scores["embedding_pos"]
            for n in negs
            if "embedding" in n.scores and n.scores.get("embedding_pos", 0) > 0
        ]
        sc = self.shortcut.sources[0] if self.shortcut is not None and self.shortcut.sources else None
        kept = [n for n in negs if n.kept]
        usable = self.usable()
        return {
            "flow": self.flow,
            "records": len(self.records),
            "drafts": s.drafts,
            "parse_failures": s.reasons.get("parse_error", 0) + s.reasons.get("reflect_parse_error", 0),
            "analyses_failed": s.analysis_failed,
            "reasks": sum(s.reasks.values()),
            "rejected_other": sum(
                v
                for k, v in s.reasons.items()
                if k not in ("parse_error", "reflect_parse_error", "reflection_drop", "meta_text")
            ),
            "dropped": s.status.get("dropped", 0),
            "negatives": len(negs),
            "verifier_kept": len(kept),
            "verifier_kept_rate": round(len(kept) / len(negs), 3) if negs else 0.0,
            "usable": len(usable),
            "usable_per_draft": round(len(usable) / s.drafts, 3) if s.drafts else 0.0,
            "mean_score_gap": round(statistics.fmean(gaps), 4) if gaps else None,
            "hardness_median": round(statistics.median(hard), 4) if hard else None,
            "hardness_mean": round(statistics.fmean(hard), 4) if hard else None,
            "shortcut_auc": sc.auc if sc else None,
            "shortcut_interval": [sc.low, sc.high] if sc and sc.auc is not None else None,
            "completion_tokens": s.usage.get("completion_tokens", 0),
            "wall_s": round(s.wall_s, 1),
        }


def _key(r: Record, n: Any) -> tuple[str, Any]:
    return r.id, n.provenance.extra.get("index")


def run_trial(
    records: list[Record],
    cfg: GenerateConfig,
    out_dir: Path,
    backend: Any,
    label: str,
    vcfg: Optional[VerifyConfig] = None,
    show_progress: bool = False,
    shortcut_encoder: Optional[str] = "bundled",
) -> Trial:
    """Generate for ``records`` (fresh, into ``out_dir/label.jsonl``), score with the verifiers and run the
    shortcut check on the usable negatives (``shortcut_encoder`` None: style features only)."""
    from .io import write_records
    from .verifiers import verify_records

    cfg = cfg.model_copy(update={"limit": None, "shard": 0, "num_shards": 1})
    ts = TemplateSet(cfg.template, cfg.template_dir)
    path = Path(out_dir) / f"{label}.jsonl"
    # a trial is always fresh (the LLM cache makes a rerun cheap)
    generated, summary = generate_records(records, None, cfg, backend=backend, show_progress=show_progress)
    if summary.records_failed:
        log.warning(
            "%s: %d records failed at the backend: %s",
            label,
            summary.records_failed,
            "; ".join(f"{f.id}: {f.error}" for f in summary.failed[:3]),
        )
    write_records(path, generated)
    # the flow's own drops (reflection, meta text) are remembered; the verifiers judge every negative afresh
    dropped = {}
    for r in generated:
        for n in r.negatives:
            if n.verdict is not None:
                dropped[_key(r, n)] = f"{n.verdict.rule}: {n.verdict.reason}"
            n.verdict = None
    vcfg = vcfg or VerifyConfig(verifiers=["embedding"])
    scored, _ = verify_records(generated, None, vcfg, show_progress=show_progress)
    write_records(Path(out_dir) / f"{label}.verified.jsonl", scored)
    trial = Trial(label, cfg.template, cfg.template_dir, ts.hash, scored, summary, dropped, flow=ts.flow)
    trial.profile = corpus_profile(cfg.profile, records, backend, cfg.llm.params, cfg.cache_dir)
    trial.shortcut = trial_shortcut(trial, cfg, records, shortcut_encoder)
    return trial


def trial_shortcut(trial: Trial, cfg: GenerateConfig, records: Sequence[Record], encoder: Optional[str]) -> Any:
    """The shortcut check of a trial's usable LLM negatives against real documents of the profiled corpus."""
    from .profile import corpus_texts
    from .shortcut import check_sources

    texts, _ = corpus_texts(cfg.profile, records, titles=False)  # negatives have no title: compare texts alone
    return check_sources(
        {"llm": [n.text for n in trial.usable()]}, texts, encoder=encoder, min_negatives=3, seed=cfg.seed
    )


# -- reports ---------------------------------------------------------------------------------------
_STAT_NAMES = [
    ("drafts", "drafts asked for"),
    ("parse_failures", "parse failures (drafts rejected)"),
    ("analyses_failed", "analyses that never parsed"),
    ("reasks", "re-asks"),
    ("rejected_other", "other rejections (backend, copy, duplicate)"),
    ("dropped", "dropped by the flow (reflection, meta text)"),
    ("negatives", "negatives scored"),
    ("verifier_kept_rate", "verifier kept-rate"),
    ("usable_per_draft", "usable per draft (kept by both)"),
    ("mean_score_gap", "mean cosine gap to the positive"),
    ("hardness_median", "hardness: median cos(q, neg) / cos(q, pos)"),
    ("shortcut_auc", "shortcut AUC (usable vs real docs)"),
    ("shortcut_interval", "its 95% interval"),
    ("completion_tokens", "completion tokens"),
    ("wall_s", "generation time (s)"),
]


def _neg_lines(n: Any, flow: str = "") -> dict[str, str]:
    a = n.provenance.attributes
    refl = (
        "; ".join(
            f"round {h['round']}: {h['decision']}" + (f" ({h['reason']})" if h.get("reason") else "")
            for h in n.provenance.extra.get("reflection") or []
        )
        or "none"
    )
    score = (
        f"cosine {n.scores['embedding']:.3f} vs positive {n.scores['embedding_pos']:.3f}"
        if "embedding" in n.scores
        else "not scored"
    )
    verdict = f"{n.verdict.status.value} ({n.verdict.reason})" if n.verdict else "not verified"
    if "flip" in a:
        attrs = (
            f"flip {a.get('flip')} = {a.get('flip_value') or '-'}; {a.get('edit')}, {a.get('difficulty')}, "
            f"domain {a.get('domain')}, ~{a.get('length_words')} words"
        )
    else:
        attrs = "; ".join(f"{k} {v}" for k, v in a.items())
    return {
        "text": n.text,
        "attributes": attrs,
        "reflection": refl + (f"; dropped by {flow}" if flow else ""),
        "verifier": f"{verdict}; {score}",
    }


def _by_id(trial: Trial) -> dict[str, Record]:
    return {r.id: r for r in trial.records}


def markdown_report(trials: list[Trial]) -> str:
    head = " | ".join(
        f"{t.label}: `{t.template}` (flow {t.flow}, {t.template_dir or 'built-in'}, {t.template_hash})" for t in trials
    )
    lines = [
        f"# Prompt trial: {head}",
        "",
        "| | " + " | ".join(t.label for t in trials) + " |",
        "|---|" + "---:|" * len(trials),
    ]
    stats = [t.stats() for t in trials]
    lines += [f"| {desc} | " + " | ".join(str(s[k]) for s in stats) + " |" for k, desc in _STAT_NAMES]
    for t in trials:
        lines += [f"\n> shortcut check ({t.label}): {w}" for w in (t.shortcut.warnings if t.shortcut else [])]
    p = trials[0].profile
    if p is not None:
        lines += [
            "",
            f"**Corpus profile** ({p.source}, {p.n_docs} docs, key {p.key}): description "
            f"{p.description!r} ({p.description_source}); length in words {p.length}",
        ]
        lines += [f"- example: {x}" for x in p.examples]
    for rec in trials[0].records:
        lines += ["", f"## {rec.id}: {rec.query}", "", f"**Positive.** {rec.positives[0].full_text}"]
        for t in trials:
            r = _by_id(t).get(rec.id)
            lines += ["", f"### {t.label}" if len(trials) > 1 else "### negatives"]
            if r is not None and r.meta.get("llm_analysis"):
                lines.append("Analysis: " + "; ".join(f"{k}: {v}" for k, v in r.meta["llm_analysis"].items()))
            if r is not None and r.meta.get("llm_requirements"):
                lines.append("Requirements: " + "; ".join(r.meta["llm_requirements"]))
            negs = r.negatives_from(Source.llm) if r is not None else []
            if not negs:
                lines.append("\n_no negative came through_")
            for i, n in enumerate(negs, 1):
                assert r is not None  # negs is empty otherwise
                d = _neg_lines(n, t.dropped.get(_key(r, n), ""))
                lines += [
                    "",
                    f"{i}. {d['text']}",
                    f"   - attributes: {d['attributes']}",
                    f"   - reflection: {d['reflection']}",
                    f"   - verifier: {d['verifier']}",
                ]
    return "\n".join(lines) + "\n"


def html_report(trials: list[Trial]) -> str:
    e = html.escape
    stats = [t.stats() for t in trials]
    rows = "".join(
        f"<tr><th>{e(desc)}</th>" + "".join(f"<td>{e(str(s[k]))}</td>" for s in stats) + "</tr>"
        for k, desc in _STAT_NAMES
    )
    heads = "".join(
        f"<th>{e(t.label)}: {e(t.template)} ({e(t.template_dir or 'built-in')}, {e(t.template_hash)})</th>"
        for t in trials
    )
    parts = [
        "<!doctype html><meta charset='utf-8'><title>negforge prompt trial</title><style>"
        "body{font-family:sans-serif;max-width:1400px;margin:auto}table{border-collapse:collapse;width:100%}"
        "td,th{border:1px solid #ccc;padding:6px;vertical-align:top;text-align:left}.kept{background:#eefbee}"
        ".rejected{background:#fdeeee}.meta{color:#555;font-size:90%}</style>",
        f"<h1>Prompt trial</h1><table><tr><th></th>{heads}</tr>{rows}</table>",
    ]
    for rec in trials[0].records:
        parts.append(
            f"<h2>{e(rec.id)}: {e(rec.query)}</h2><p><b>Positive.</b> {e(rec.positives[0].full_text)}</p>"
            f"<table><tr>{heads}</tr><tr>"
        )
        for t in trials:
            r = _by_id(t).get(rec.id)
            cell = []
            if r is not None and r.meta.get("llm_analysis"):
                cell.append(
                    "<p class='meta'>analysis: "
                    + e("; ".join(f"{k}: {v}" for k, v in r.meta["llm_analysis"].items()))
                    + "</p>"
                )
            for n in r.negatives_from(Source.llm) if r is not None else []:
                assert r is not None
                flow = t.dropped.get(_key(r, n), "")
                d, cls = _neg_lines(n, flow), "kept" if n.kept and not flow else "rejected"
                cell.append(
                    f"<div class='{cls}'><p>{e(d['text'])}</p><p class='meta'>attributes: {e(d['attributes'])}"
                    f"<br>reflection: {e(d['reflection'])}<br>verifier: {e(d['verifier'])}</p></div>"
                )
            parts.append("<td>" + ("".join(cell) or "<i>no negative came through</i>") + "</td>")
        parts.append("</tr></table>")
    return "\n".join(parts) + "\n"


def write_report(trials: list[Trial], out_dir: Path, stem: str = "report") -> tuple[Path, Path]:
    from .io import write_json, write_lines

    out_dir = Path(out_dir)
    md, page = out_dir / f"{stem}.md", out_dir / f"{stem}.html"
    write_lines(md, [markdown_report(trials)])
    write_lines(page, [html_report(trials)])
    write_json(
        out_dir / f"{stem}.json",
        {
            t.label: {
                "template": t.template,
                "template_dir": t.template_dir,
                "template_hash": t.template_hash,
                **t.stats(),
                "shortcut": t.shortcut.model_dump() if t.shortcut else None,
                "profile": t.profile.model_dump() if t.profile else None,
            }
            for t in trials
        },
    )
    return md, page
