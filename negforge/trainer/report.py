"""The training report: loss per logged step, validation per epoch, the metrics before and after, the
verifier's summary, and how the model sees positives versus each negative source (kept and
rejected apart) before and after training (PNG via matplotlib's Agg backend + markdown).

``negforge run`` writes it into ``<out_dir>/report``; ``negforge report`` builds it for any model
folder (or a run folder). The records are sampled so that every negative source appears.

The cosine histograms embed, for a sample of records, the query, its positives and its negatives
with the base and the fine-tuned encoder. Documents with a corpus ``doc_id`` are read from the
cached corpus embeddings when the evaluation already wrote them (same cache layout as
:func:`negforge.trainer.evaluate.evaluate_model`); the others are encoded directly.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from negforge.synth.data import Corpus
from negforge.synth.errors import InputError
from negforge.synth.paths import cache_path as cache_folder
from negforge.synth.schema import Record, Status

from .evaluate import METRICS, embedding_cache_dir, metrics_table

log = logging.getLogger(__name__)

REJECTED = "rejected"


@dataclass
class ReportInputs:
    train_result: dict[str, Any]  # trainer.train.load_result(model folder)
    records: list[Record] = field(default_factory=list)  # for the cosine histograms (may be empty)
    base_encoder: Optional[str] = None  # None: the train result's encoder is unknown, histograms skipped
    corpus: Optional[Corpus] = None  # to reuse cached corpus embeddings for docs with a doc_id
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> evaluate_model output
    model: Optional[str] = None  # the fine-tuned model folder (None: the train result's model_path)
    verify_summary: Optional[dict[str, Any]] = None  # a VerifyReport's JSON (negforge verify / run)
    max_records: int = 200
    seed: int = 0
    cache_dir: str = field(default_factory=lambda: cache_folder("embeddings"))
    max_seq_length: int = 256
    batch_size: int = 64
    backend: str = "torch"  # encoder runtime (negforge.mixers.runtime), as the run's eval encoded the corpus
    precision: str = "fp32"


def _doc_vectors(
    texts: list[str], doc_ids: list[Optional[str]], encoder: str, inp: ReportInputs, model, show_progress: bool = False
) -> np.ndarray:
    from negforge.mixers.embeddings import cache_path, corpus_embeddings, encode_texts

    cached = None
    if inp.corpus is not None:
        cdir = embedding_cache_dir(encoder, inp.cache_dir)
        if cache_path(encoder, inp.corpus, cdir, inp.max_seq_length, inp.backend, inp.precision).exists():
            cached = corpus_embeddings(
                inp.corpus,
                encoder,
                cdir,
                max_seq_length=inp.max_seq_length,
                show_progress=False,
                backend=inp.backend,
                precision=inp.precision,
            )
    corpus = inp.corpus
    from_cache = [
        i for i, d in enumerate(doc_ids) if cached is not None and corpus is not None and d is not None and d in corpus
    ]
    skip = set(from_cache)
    todo = [i for i in range(len(texts)) if i not in skip]
    log.info("%s: %d documents from the corpus cache, encoding the other %d", encoder, len(from_cache), len(todo))
    fresh = encode_texts([texts[i] for i in todo], encoder, inp.batch_size, model=model, show_progress=show_progress)
    out = np.zeros((len(texts), fresh.shape[1]), dtype=np.float32)
    out[todo] = fresh
    if from_cache and cached is not None and corpus is not None:
        out[from_cache] = np.asarray(cached[[corpus.index(str(doc_ids[i])) for i in from_cache]])
    return out


def group_of(n) -> str:
    """A negative's histogram group: its source, with rejected ones apart (``llm rejected``)."""
    rejected = n.verdict is not None and n.verdict.status == Status.rejected
    return f"{n.source.value} {REJECTED}" if rejected else n.source.value


def sample_records(records: list[Record], k: int, seed: int = 0) -> list[Record]:
    """At most ``k`` records, drawn (seeded) so that every negative group appears: the records holding
    a group share the draw in turn, rarest group first, then the rest fill up at random."""
    if len(records) <= k:
        return list(records)
    rng = random.Random(seed)
    by_group: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        for g in dict.fromkeys(group_of(n) for n in r.negatives):
            by_group.setdefault(g, []).append(i)
    queues = [rng.sample(ids, len(ids)) for _, ids in sorted(by_group.items(), key=lambda kv: len(kv[1]))]
    chosen: dict[int, None] = {}
    while len(chosen) < k and any(queues):
        for q in queues:
            while q and q[-1] in chosen:
                q.pop()
            if q and len(chosen) < k:
                chosen[q.pop()] = None
    rest = [i for i in range(len(records)) if i not in chosen]
    chosen.update(dict.fromkeys(rng.sample(rest, min(len(rest), k - len(chosen)))))
    return [records[i] for i in sorted(chosen)]


def cosine_by_group(
    records: list[Record], encoder: str, inp: ReportInputs, show_progress: bool = False
) -> dict[str, np.ndarray]:
    """cos(query, doc) per group: "positive" and each negative group (:func:`group_of`)."""
    from negforge.mixers.embeddings import encode_texts, get_encoder

    model = get_encoder(encoder, inp.max_seq_length, inp.backend, inp.precision, inp.cache_dir, fresh=True)
    log.info("%s: encoding %d queries", encoder, len(records))
    q = encode_texts([r.query for r in records], encoder, inp.batch_size, model=model, show_progress=show_progress)
    owner: list[int] = []
    group: list[str] = []
    texts: list[str] = []
    ids: list[Optional[str]] = []
    for i, r in enumerate(records):
        rows = [("positive", p) for p in r.positives] + [(group_of(n), n) for n in r.negatives]
        for g, p in rows:
            owner.append(i)
            group.append(g)
            texts.append(p.full_text)
            ids.append(p.doc_id)
    d = _doc_vectors(texts, ids, encoder, inp, model, show_progress)
    cos = np.einsum("ij,ij->i", q[owner], d)
    return {g: cos[[k for k, x in enumerate(group) if x == g]] for g in dict.fromkeys(group)}


def plot_training(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    val = result.get("validation") or []
    fig, axes = plt.subplots(1, 2 if val else 1, figsize=(11 if val else 6, 4), squeeze=False)
    ax = axes[0][0]
    losses = result.get("losses") or []
    steps, values = [x["step"] for x in losses], [x["loss"] for x in losses]
    ax.plot(steps, values, marker="." if len(steps) <= 60 else None, linewidth=0.8, alpha=0.6, label="per logged step")
    w = max(1, len(values) // 10)
    if w > 1:  # a moving average over a tenth of the points, so the trend shows through the noise
        smooth = np.convolve(values, np.ones(w) / w, mode="valid")
        ax.plot(steps[w - 1 :], smooth, linewidth=2, label=f"mean of {w}")
        ax.legend()
    ax.set(xlabel="step", ylabel="training loss", title=f"{result.get('loss', '')} loss ({len(steps)} logged steps)")
    if val:
        ax = axes[0][1]
        for m in ("ndcg@10", "recall@100", "mrr@10"):
            ax.plot([x["epoch"] for x in val], [x.get(m, np.nan) for x in val], marker="o", label=m)
        ax.set(xlabel="epoch", ylabel="validation", title="validation per epoch")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_cosines(before: dict[str, np.ndarray], after: dict[str, np.ndarray], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    bins = np.linspace(-0.2, 1.0, 41)
    for ax, (title, groups) in zip(axes, (("base model", before), ("fine-tuned", after))):
        for g, v in groups.items():
            ax.hist(
                np.clip(v, bins[0], bins[-1]),
                bins=bins,
                histtype="step",
                density=True,
                linewidth=1.5,
                label=f"{g} (n={len(v)})",
            )
        ax.set(xlabel="cosine(query, document)", title=title)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("density")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _cosine_table(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> str:
    rows = ["| group | n | mean cos (base) | mean cos (fine-tuned) | change |", "|---|---:|---:|---:|---:|"]
    for g in before:
        b, a = float(before[g].mean()), float(after[g].mean())
        rows.append(f"| {g} | {len(before[g])} | {b:.3f} | {a:.3f} | {a - b:+.3f} |")
    return "\n".join(rows)


def _verify_table(summary: dict[str, Any]) -> list[str]:
    totals = summary.get("totals") or {}
    lines = [
        "## Verifier",
        "",
        f"Rules, in order: {' -> '.join(summary.get('rules', [])) or '-'}; "
        f"{summary.get('checked', 0)} negatives checked, {summary.get('kept', 0)} kept, "
        f"{summary.get('dropped', 0)} dropped.",
        "",
        "| source | negatives | checked | kept | dropped | kept % |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s, c in totals.items():
        share = f"{100 * c.get('kept', 0) / c['checked']:.1f}" if c.get("checked") else "–"
        lines.append(
            f"| {s} | {c.get('negatives', 0)} | {c.get('checked', 0)} | {c.get('kept', 0)} | "
            f"{c.get('dropped', 0)} | {share} |"
        )
    by_rule = summary.get("by_rule") or {}
    drops = {(s, r): o.get("dropped", 0) for s, rules in by_rule.items() for r, o in rules.items() if o.get("dropped")}
    if drops:
        lines += ["", "Dropped by rule: " + ", ".join(f"{r} {n} ({s})" for (s, r), n in drops.items()) + "."]
    return lines + [""]


def build_report(out_dir: str | Path, inp: ReportInputs, show_progress: bool = False) -> Path:
    """Write ``training.png``, ``cosines.png`` (when records and a base encoder are given) and
    ``report.md`` into ``out_dir``; returns the markdown path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = inp.train_result
    model = inp.model or str(res.get("model_path", ""))
    lines = [
        f"# Training report: {model}",
        "",
        f"Loss `{res.get('loss')}`, {res.get('steps')} steps, {res.get('epochs')} epochs, "
        f"{res.get('examples')} examples, {res.get('samples_per_s')} samples/s on {res.get('device')} "
        f"(x{res.get('world_size', 1)}), {res.get('wall_s')} s.",
        "",
    ]
    losses = res.get("losses") or []
    if losses:
        lines += [
            f"Training loss at {len(losses)} logged steps: first {losses[0]['loss']:.4f} (step "
            f"{losses[0]['step']}), last {losses[-1]['loss']:.4f} (step {losses[-1]['step']}).",
            "",
        ]
    lines += ["![training](training.png)", ""]
    plot_training(res, out / "training.png")
    if res.get("validation"):
        lines += [
            "## Validation per epoch",
            "",
            "| epoch | step | " + " | ".join(METRICS) + " |",
            "|---:|---:|" + "---:|" * len(METRICS),
        ]
        lines += [
            f"| {v['epoch']} | {v['step']} | " + " | ".join(f"{v.get(m, float('nan')):.4f}" for m in METRICS) + " |"
            for v in res["validation"]
        ]
        lines.append("")
    if inp.metrics:
        lines += ["## Evaluation", "", metrics_table(inp.metrics), ""]
    if inp.verify_summary:
        lines += _verify_table(inp.verify_summary)
    if inp.records and inp.base_encoder:
        sample = sample_records(list(inp.records), inp.max_records, inp.seed)
        log.info(
            "report: cosine histograms on %d of %d records (every negative source present)",
            len(sample),
            len(inp.records),
        )
        before = cosine_by_group(sample, inp.base_encoder, inp, show_progress)
        after = cosine_by_group(sample, model, inp, show_progress)
        plot_cosines(before, after, out / "cosines.png")
        lines += [
            "## Cosine similarity: query vs positive and vs each negative source",
            "",
            f"{len(sample)} of {len(inp.records)} records, drawn so that every source appears; base "
            f"`{inp.base_encoder}` vs the fine-tuned model. A rejected group holds the negatives the verifier "
            "dropped.",
            "",
            _cosine_table(before, after),
            "",
            "![cosines](cosines.png)",
            "",
        ]
    md = out / "report.md"
    md.write_text("\n".join(lines))
    return md


def load_metrics(files: list[Path], model_dir: Optional[Path] = None) -> dict[str, dict[str, float]]:
    """Rows for the evaluation table from ``negforge eval`` JSON files (``model``, ``split``,
    ``metrics``) and ``negforge run`` metrics.json files (``metrics_before``, ``metrics_after``)."""
    out: dict[str, dict[str, float]] = {}
    for f in files:
        try:
            obj = json.loads(Path(f).read_text())
            if "metrics_before" in obj or "metrics_after" in obj:
                split = _run_split(Path(f).parent)
                for key, name in (("metrics_before", "base model"), ("metrics_after", "fine-tuned")):
                    if obj.get(key):
                        out[f"{name} ({split})"] = obj[key]
                continue
            mine = model_dir is not None and Path(f).parent.resolve() == Path(model_dir).resolve()
            out[f"{'fine-tuned' if mine else obj['model']} ({obj['split']})"] = obj["metrics"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(
                f"{f}: neither an eval JSON of `negforge eval` nor the metrics.json of `negforge run` "
                f"({type(e).__name__}: {e})"
            ) from None
    return out


def _run_split(run_dir: Path) -> str:
    try:
        return json.loads((run_dir / "config.json").read_text())["eval"]["split"]
    except (OSError, ValueError, KeyError, TypeError):
        return "test"


def run_inputs(run_dir: str | Path, records: Optional[list[Record]] = None, **overrides: Any) -> ReportInputs:
    """The report inputs of a ``negforge run`` folder: its model, verified records, metrics.json and
    verifier summary. With several training epochs (mix.epochs) their logged losses are joined."""
    from .train import load_result

    run = Path(run_dir)
    metrics_path = run / "metrics.json"
    if not metrics_path.is_file():
        raise InputError(f"{run}: no metrics.json here; give the --output folder of `negforge run`")
    metrics = json.loads(metrics_path.read_text())
    model = Path(metrics.get("model_path") or run / "model")
    model = model if model.is_absolute() or model.is_dir() else run / model.name
    res = dict(load_result(model))
    epochs = (metrics.get("summaries") or {}).get("train") or []
    if len(epochs) > 1:  # one training per mix epoch: one curve, steps counted on
        joined, offset = [], 0
        for e in epochs:
            joined += [{**x, "step": x["step"] + offset} for x in e.get("losses", [])]
            offset += int(e.get("steps") or 0)
        res["losses"] = joined
    if records is None:
        from negforge.synth.io import read_records

        records = read_records(run / "verified.jsonl") if (run / "verified.jsonl").is_file() else []
    kw: dict[str, Any] = dict(
        train_result=res,
        records=records,
        base_encoder=epochs[0].get("encoder") if epochs else res.get("encoder"),
        model=str(model),
        metrics=load_metrics([metrics_path]),
        verify_summary=(metrics.get("summaries") or {}).get("verified"),
    )
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return ReportInputs(**kw)
