"""The trainers' own dataset readers, to load our exports back the way the trainers do.

* FlagEmbedding: the installed package's own ``FlagEmbedding/abc/finetune/embedder/AbsDataset.py``
  (and ``AbsArguments.py``), loaded from their files: ``import FlagEmbedding`` itself needs an
  older transformers than this environment's (its reranker modules import
  ``transformers.modeling_attn_mask_utils``), but the dataset file needs only ``datasets``,
  ``torch.distributed`` and ``transformers.TrainingArguments``. ``scripts/setup.sh`` installs the
  package with ``--no-deps`` (the files are all the tests need).
  :func:`flag_getitem_copy` is a line-for-line copy of its ``__getitem__`` (FlagEmbedding 1.4.2),
  used where the package is missing; a test checks the copy against the real one.
* Tevatron: the PyPI release (0.1.0) predates the current readers, so this is a copy of
  ``TrainDataset`` from texttron/tevatron ``src/tevatron/retriever/dataset.py`` (main): both the
  id-based format (``query_id, query_text, positive_document_ids, negative_document_ids`` + a
  corpus with ``docid, text``) and the legacy one (``positive_passages``/``negative_passages``),
  including ``random.choices`` when a query has fewer negatives than ``train_group_size - 1``, and
  the legacy distillation reader's per-passage ``score``.
"""

from __future__ import annotations

import importlib.util
import math
import random
import sys
import types
from pathlib import Path
from typing import Any, Optional

import datasets


def _json(path: Path, cache: Path) -> datasets.Dataset:
    return datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache))


# ---------------------------------------------------------------- FlagEmbedding
def flagembedding_dataset_module() -> Optional[types.ModuleType]:
    """FlagEmbedding's AbsDataset module from the installed package's files, or None if not installed."""
    spec = importlib.util.find_spec("FlagEmbedding")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "abc" / "finetune" / "embedder"
    if not (folder / "AbsDataset.py").is_file():
        return None
    pkg_name = "_flagembedding_embedder_files"
    if pkg_name + ".AbsDataset" in sys.modules:
        return sys.modules[pkg_name + ".AbsDataset"]
    pkg = types.ModuleType(pkg_name)
    pkg.__path__ = [str(folder)]
    sys.modules[pkg_name] = pkg
    for name in ("AbsArguments", "AbsDataset"):
        s = importlib.util.spec_from_file_location(f"{pkg_name}.{name}", folder / f"{name}.py")
        mod = importlib.util.module_from_spec(s)
        sys.modules[s.name] = mod
        s.loader.exec_module(mod)
    return sys.modules[pkg_name + ".AbsDataset"]


def flag_real_items(
    path: Path, cache: Path, train_group_size: int, knowledge_distillation: bool, monkeypatch
) -> list[tuple[str, list[str], Optional[list[float]]]]:
    """Every item of FlagEmbedding's own ``AbsEmbedderTrainDataset`` over ``path``."""
    mod = flagembedding_dataset_module()
    args_mod = sys.modules[mod.__name__.rsplit(".", 1)[0] + ".AbsArguments"]
    monkeypatch.setattr(mod.dist, "get_rank", lambda *a, **k: 0)  # its loader logs on rank 0 only
    args = args_mod.AbsEmbedderDataArguments(
        train_data=[str(path)],
        cache_path=str(cache),
        train_group_size=train_group_size,
        knowledge_distillation=knowledge_distillation,
    )
    ds = mod.AbsEmbedderTrainDataset(args, tokenizer=None)
    return [ds[i] for i in range(len(ds))]


def flag_getitem_copy(
    data: dict[str, Any], train_group_size: int, knowledge_distillation: bool, rng: random.Random = random
) -> tuple[str, list[str], Optional[list[float]]]:
    """FlagEmbedding 1.4.2 ``AbsEmbedderTrainDataset.__getitem__`` (no instruction, no text shuffle)."""
    query = data["query"]
    passages, teacher_scores = [], []
    assert isinstance(data["pos"], list) and isinstance(data["neg"], list)
    pos_idx = rng.choice(list(range(len(data["pos"]))))
    passages.append(data["pos"][pos_idx])
    neg_all_idx = list(range(len(data["neg"])))
    if len(data["neg"]) < train_group_size - 1:
        num = math.ceil((train_group_size - 1) / len(data["neg"]))  # ZeroDivisionError on neg: []
        neg_idxs = rng.sample(neg_all_idx * num, train_group_size - 1)
    else:
        neg_idxs = rng.sample(neg_all_idx, train_group_size - 1)
    for neg_idx in neg_idxs:
        passages.append(data["neg"][neg_idx])
    if knowledge_distillation:
        assert isinstance(data["pos_scores"], list) and isinstance(data["neg_scores"], list)
        teacher_scores.append(data["pos_scores"][pos_idx])
        for neg_idx in neg_idxs:
            teacher_scores.append(data["neg_scores"][neg_idx])
        if not all(isinstance(score, (int, float)) for score in teacher_scores):
            raise ValueError("pos_score or neg_score must be digit")
    else:
        teacher_scores = None
    return query, passages, teacher_scores


def flag_copy_items(
    path: Path, cache: Path, train_group_size: int, knowledge_distillation: bool, seed: int = 0
) -> list[tuple[str, list[str], Optional[list[float]]]]:
    ds = _json(path, cache)
    if knowledge_distillation and not {"pos_scores", "neg_scores"} <= set(ds.column_names):
        raise ValueError("`pos_scores` and `neg_scores` not found in the features of training data")
    rng = random.Random(seed)
    return [flag_getitem_copy(ds[i], train_group_size, knowledge_distillation, rng) for i in range(len(ds))]


# ---------------------------------------------------------------- Tevatron
class TevatronTrainDataset:
    """tevatron.retriever.dataset.TrainDataset (+ DistilTrainDataset's legacy scores), text only."""

    def __init__(
        self,
        train_path: Path,
        cache: Path,
        train_group_size: int,
        corpus_path: Optional[Path] = None,
        seed: int = 42,
        epoch: int = 0,
        query_prefix: str = "",
        passage_prefix: str = "",
    ):
        self.train_data = _json(train_path, cache)
        self.corpus = _json(corpus_path, cache) if corpus_path is not None else None
        self.train_group_size, self.seed, self.epoch = train_group_size, seed, epoch
        self.query_prefix, self.passage_prefix = query_prefix, passage_prefix
        self.docid_to_index = {}
        if self.corpus is not None:
            self.docid_to_index = {d: i for i, d in enumerate(self.corpus.select_columns(["docid"])["docid"])}

    def __len__(self) -> int:
        return len(self.train_data)

    def _get_info_from_docid(self, docid: str, prefix: str) -> str:
        document_info = self.corpus[self.docid_to_index[docid]]
        assert document_info["docid"] == docid
        text = document_info.get("text", "")
        return prefix + ("" if text is None else text)

    def _select(self, items: list, hashed_seed: int) -> list:
        negative_size = self.train_group_size - 1
        if len(items) < negative_size:
            return random.choices(items, k=negative_size)  # IndexError on an empty list
        if self.train_group_size == 1:
            return []
        offset = self.epoch * negative_size % len(items)
        selected = list(items)
        random.Random(hashed_seed).shuffle(selected)
        selected = selected * 2
        return selected[offset : offset + negative_size]

    def __getitem__(self, item: int) -> tuple[str, list[str], list[Any]]:
        """(query, [positive, negatives...], [legacy scores or None per document])."""
        group = self.train_data[item]
        epoch, hashed_seed = self.epoch, hash(item + self.seed)
        if "positive_passages" in group:
            query = self.query_prefix + group["query"]
            pos = group["positive_passages"][(hashed_seed + epoch) % len(group["positive_passages"])]
            docs = [pos, *self._select(group["negative_passages"], hashed_seed)]
            texts = [self.passage_prefix + (d["title"] + " " + d["text"] if "title" in d else d["text"]) for d in docs]
            return query, texts, [d.get("score") for d in docs]
        query = self.query_prefix + (group.get("query_text", "") or "")
        pos_ids, neg_ids = group["positive_document_ids"], group["negative_document_ids"]
        ids = [pos_ids[(hashed_seed + epoch) % len(pos_ids)], *self._select(neg_ids, hashed_seed)]
        return query, [self._get_info_from_docid(d, self.passage_prefix) for d in ids], [None] * len(ids)
