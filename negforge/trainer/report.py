"""The training report: loss curve, validation metric per epoch, and how the model sees positives
versus each negative source, before and after training (PNG via matplotlib's Agg backend + markdown).

The cosine histograms embed, for a sample of records, the query, its positives and its negatives
with the base and the fine-tuned encoder. Documents with a corpus ``doc_id`` are read from the
cached corpus embeddings when the evaluation already wrote them (same cache layout as
:func:`negforge.trainer.evaluate.evaluate_model`); the others are encoded directly.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from negforge.synth.data import Corpus
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
    max_records: int = 200
    seed: int = 0
    cache_dir: str = field(default_factory=lambda: cache_folder("embeddings"))
    max_seq_length: int = 256
    batch_size: int = 64


def _doc_vectors(texts: list[str], doc_ids: list[Optional[str]], encoder: str, inp: ReportInputs, model) -> np.ndarray:
    from negforge.mixers.embeddings import cache_path, corpus_embeddings, encode_texts

    cached = None
    if inp.corpus is not None:
        cdir = embedding_cache_dir(encoder, inp.cache_dir)
        if cache_path(encoder, inp.corpus, cdir, inp.max_seq_length).exists():
            cached = corpus_embeddings(inp.corpus, encoder, cdir, max_seq_length=inp.max_seq_length, show_progress=False)
    from_cache = [i for i, d in enumerate(doc_ids) if cached is not None and d is not None and d in inp.corpus]
    skip = set(from_cache)
    todo = [i for i in range(len(texts)) if i not in skip]
    fresh = encode_texts([texts[i] for i in todo], encoder, inp.batch_size, model=model)
    out = np.zeros((len(texts), fresh.shape[1]), dtype=np.float32)
    out[todo] = fresh
    if from_cache:
        out[from_cache] = np.asarray(cached[[inp.corpus.index(doc_ids[i]) for i in from_cache]])
    log.info("%s: %d documents from the corpus cache, %d encoded", encoder, len(from_cache), len(todo))
    return out


def cosine_by_group(records: list[Record], encoder: str, inp: ReportInputs) -> dict[str, np.ndarray]:
    """cos(query, doc) per group: "positive", each negative source (kept or unverified negatives)
    and "rejected" (negatives a verifier rejected, any source)."""
    from sentence_transformers import SentenceTransformer

    from negforge.mixers.embeddings import encode_texts
    from negforge.synth.models import resolve_encoder

    model = SentenceTransformer(resolve_encoder(encoder))
    model.max_seq_length = inp.max_seq_length
    q = encode_texts([r.query for r in records], encoder, inp.batch_size, model=model)
    owner, group, texts, ids = [], [], [], []
    for i, r in enumerate(records):
        for p in r.positives:
            owner.append(i), group.append("positive"), texts.append(p.full_text), ids.append(p.doc_id)
        for n in r.negatives:
            rejected = n.verdict is not None and n.verdict.status == Status.rejected
            owner.append(i), group.append(REJECTED if rejected else n.source.value)
            texts.append(n.full_text), ids.append(n.doc_id)
    d = _doc_vectors(texts, ids, encoder, inp, model)
    cos = np.einsum("ij,ij->i", q[owner], d)
    return {g: cos[[k for k, x in enumerate(group) if x == g]] for g in dict.fromkeys(group)}


def plot_training(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    val = result.get("validation") or []
    fig, axes = plt.subplots(1, 2 if val else 1, figsize=(11 if val else 6, 4), squeeze=False)
    ax = axes[0][0]
    steps = [x["step"] for x in result.get("losses", [])]
    ax.plot(steps, [x["loss"] for x in result.get("losses", [])], marker=".")
    ax.set(xlabel="step", ylabel="training loss", title=f"{result.get('loss', '')} loss")
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
            ax.hist(np.clip(v, bins[0], bins[-1]), bins=bins, histtype="step", density=True, linewidth=1.5,
                    label=f"{g} (n={len(v)})")
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


def build_report(out_dir: str | Path, inp: ReportInputs, show_progress: bool = False) -> Path:
    """Write ``training.png``, ``cosines.png`` (when records and a base encoder are given) and
    ``report.md`` into ``out_dir``; returns the markdown path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = inp.train_result
    lines = [f"# Training report: {res.get('model_path', '')}", "",
             f"Loss `{res.get('loss')}`, {res.get('steps')} steps, {res.get('epochs')} epochs, "
             f"{res.get('examples')} examples, {res.get('samples_per_s')} samples/s on {res.get('device')} "
             f"(x{res.get('world_size', 1)}), {res.get('wall_s')} s.", ""]
    losses = res.get("losses") or []
    if losses:
        lines += [f"Training loss: first logged {losses[0]['loss']:.4f} (step {losses[0]['step']}), "
                  f"last {losses[-1]['loss']:.4f} (step {losses[-1]['step']}).", ""]
    lines += ["![training](training.png)", ""]
    plot_training(res, out / "training.png")
    if res.get("validation"):
        lines += ["## Validation per epoch", "", "| epoch | step | " + " | ".join(METRICS) + " |",
                  "|---:|---:|" + "---:|" * len(METRICS)]
        lines += [f"| {v['epoch']} | {v['step']} | " + " | ".join(f"{v.get(m, float('nan')):.4f}" for m in METRICS) + " |"
                  for v in res["validation"]]
        lines.append("")
    if inp.metrics:
        lines += ["## Evaluation", "", metrics_table(inp.metrics), ""]
    if inp.records and inp.base_encoder:
        sample = list(inp.records)
        if len(sample) > inp.max_records:
            sample = random.Random(inp.seed).sample(sample, inp.max_records)
        before = cosine_by_group(sample, inp.base_encoder, inp)
        after = cosine_by_group(sample, str(res.get("model_path")), inp)
        plot_cosines(before, after, out / "cosines.png")
        lines += ["## Cosine similarity: query vs positive and vs each negative source", "",
                  f"{len(sample)} records; base `{inp.base_encoder}` vs the fine-tuned model.", "",
                  _cosine_table(before, after), "", "![cosines](cosines.png)", ""]
    md = out / "report.md"
    md.write_text("\n".join(lines))
    return md
