"""Per-epoch validation during training, with the same metrics as ``negforge eval``.

:func:`build_validator` samples a corpus (every relevant document of the split plus seeded random others
up to ``eval_corpus_size``, so it is cheap enough to run every epoch) and returns a sentence-transformers
evaluator whose numbers are computed by :mod:`negforge.trainer.evaluate`: graded nDCG, judged-0 rows
non-relevant, identical ids ignored. (sentence-transformers' own InformationRetrievalEvaluator counts
every judged document as grade 1 and keeps a document whose id is the query's.)
"""

from __future__ import annotations

import random
from typing import Any

from sentence_transformers.base.evaluation.evaluator import BaseEvaluator

from negforge.synth.data import Dataset

from .evaluate import METRICS, metrics_from_run, run_from_embeddings


class BeirValidator(BaseEvaluator):
    """nDCG@10, Recall@10/100, MRR@10 of the model being trained on a (sampled) BEIR split."""

    def __init__(
        self,
        data: Dataset,
        doc_ids: list[str],
        name: str = "val",
        batch_size: int = 64,
        ignore_identical_ids: bool = True,
    ) -> None:
        super().__init__()
        qrels, corpus = data.need_qrels("validation"), data.need_corpus("validation")
        self.qrels = {q: r for q, r in qrels.items() if any(s > 0 for s in r.values())}
        self.qids = sorted(self.qrels)
        self.query_texts = [data.queries[q] for q in self.qids]
        texts = corpus.full_texts()
        self.doc_ids = doc_ids
        self.doc_texts = [texts[corpus.index(d)] for d in doc_ids]
        self.name, self.batch_size, self.ignore_identical_ids = name, batch_size, ignore_identical_ids
        self.primary_metric = "cosine_ndcg@10"

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        import numpy as np

        enc = {
            "batch_size": self.batch_size,
            "normalize_embeddings": True,
            "convert_to_numpy": True,
            "show_progress_bar": False,
        }
        docs = np.asarray(model.encode(self.doc_texts, **enc), dtype=np.float32)
        queries = np.asarray(model.encode(self.query_texts, **enc), dtype=np.float32)
        run = run_from_embeddings(self.qids, queries, self.doc_ids, docs, 100, self.ignore_identical_ids)
        m = metrics_from_run(self.qrels, run, self.ignore_identical_ids)
        metrics = self.prefix_name_to_metrics({f"cosine_{k}": m[k] for k in METRICS}, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics


def build_validator(
    data: Dataset, eval_corpus_size: int, seed: int = 0, batch_size: int = 64, ignore_identical_ids: bool = True
) -> BeirValidator:
    qrels, corpus = data.need_qrels("validation"), data.need_corpus("validation")
    relevant = {d for r in qrels.values() for d, s in r.items() if s > 0 and d in corpus}
    others = [d for d in corpus.ids if d not in relevant]
    random.Random(seed).shuffle(others)
    keep = relevant | set(others[: max(0, eval_corpus_size - len(relevant))])
    return BeirValidator(data, sorted(keep), batch_size=batch_size, ignore_identical_ids=ignore_identical_ids)
