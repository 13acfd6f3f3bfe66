"""The Python API: hard negatives for a dataset in one call, and each stage as a function.

>>> import negforge
>>> train = negforge.mine_hard_negatives("pairs.csv", sources=("bm25", "dense"), num_negatives=4)  # doctest: +SKIP
>>> train.column_names                                                                          # doctest: +SKIP
['anchor', 'positive', 'negative_1', 'negative_2', 'negative_3', 'negative_4', ...]

The stages take and return the one record schema, called the same way as everywhere in negforge,
``stage(records, dataset, config) -> (records, report)``, with a config's fields also accepted as
keywords (``negforge.mine(records, corpus, sources=["bm25"], num_negatives=4)``):

* :func:`read` any input (a ``datasets.Dataset``, a path, a Hub name: see
  :mod:`negforge.synth.inputs`) -> ``(records, dataset)``;
* :func:`generate` (LLM-written negatives), :func:`mine`, :func:`verify`, :func:`mix`;
* :func:`to_dataset` (an in-memory ``datasets.Dataset``) and :func:`export` (files for a trainer).

``dataset`` (the second argument) is a :class:`negforge.synth.data.Dataset` (corpus, queries,
qrels), ``None``, or anything :func:`negforge.synth.inputs.read_corpus` takes as a corpus (a list
of texts, a corpus JSONL). Nothing heavy is imported until a function runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional, Union

from pydantic import BaseModel

from .synth.data import Dataset
from .synth.errors import ConfigError
from .synth.schema import Record

log = logging.getLogger(__name__)


def read(
    source: Any,
    *,
    columns: Optional[dict] = None,
    split: str = "train",
    corpus: Any = None,
    limit: Optional[int] = None,
) -> tuple[list[Record], Dataset]:
    """Records and the :class:`Dataset` the input brings (see :func:`negforge.synth.inputs.read_input`).

    ``corpus`` is a Tevatron input's corpus file, or for any other input the pool to mine from.
    """
    from .synth.inputs import read_corpus, read_input

    fmt = "records"
    if isinstance(source, list) and all(isinstance(r, Record) for r in source):
        records, dataset = (source[:limit] if limit else source), Dataset()
    else:
        own = corpus if isinstance(corpus, (str, Path)) else None
        loaded = read_input(source, columns=columns, split=split, corpus=own, limit=limit)
        records, dataset, fmt = loaded.records, loaded.dataset, loaded.format
    if corpus is not None and fmt != "tevatron":  # an explicit pool replaces the input's own corpus
        dataset.corpus = read_corpus(corpus)
    return records, dataset


def _dataset(dataset: Any) -> Dataset:
    if dataset is None or isinstance(dataset, Dataset):
        return dataset or Dataset()
    from .synth.inputs import read_corpus

    return Dataset(corpus=read_corpus(dataset))


def _config(cls: type[BaseModel], config: Any, fields: dict[str, Any]):
    if config is None:
        return cls(**fields)
    if isinstance(config, dict):
        return cls(**{**config, **fields})
    if not isinstance(config, cls):
        raise ConfigError(f"config must be a {cls.__name__} or a dict, got {type(config).__name__}")
    return cls(**{**config.model_dump(), **fields}) if fields else config


def mine(records: list[Record], dataset: Any = None, config: Any = None, *, show_progress: bool = True, **fields: Any):
    """:func:`negforge.mixers.mine.mine_records` (``fields``: :class:`~negforge.synth.config.MineConfig`).
    Without a corpus, the records' own passages are the pool (as sentence-transformers does)."""
    from .mixers.mine import mine_records
    from .synth.config import MineConfig
    from .synth.data import corpus_from_records

    ds = _dataset(dataset)
    if ds.corpus is None:
        ds.corpus = corpus_from_records(records)
        log.info("no corpus given: mining from the records' own %d passages", len(ds.corpus))
    return mine_records(records, ds, _config(MineConfig, config, fields), show_progress=show_progress)


def verify(
    records: list[Record], dataset: Any = None, config: Any = None, *, show_progress: bool = True, **fields: Any
):
    """:func:`negforge.synth.verifiers.verify_records` (``fields``: :class:`~negforge.synth.config.VerifyConfig`)."""
    from .synth.config import VerifyConfig
    from .synth.verifiers import verify_records

    return verify_records(
        records, _dataset(dataset), _config(VerifyConfig, config, fields), show_progress=show_progress
    )


_verify_stage = verify  # mine_hard_negatives' `verify` argument shadows the name


def mix(records: list[Record], dataset: Any = None, config: Any = None, *, epoch: int = 0, **fields: Any):
    """:func:`negforge.mixers.hybrid.mix_records` (``fields``: :class:`~negforge.synth.config.MixConfig`)."""
    from .mixers.hybrid import mix_records
    from .synth.config import MixConfig

    return mix_records(records, _dataset(dataset), _config(MixConfig, config, fields), epoch=epoch)


def generate(
    records: list[Record],
    dataset: Any = None,
    config: Any = None,
    *,
    out_path: Optional[str] = None,
    backend: Any = None,
    show_progress: bool = True,
    **fields: Any,
):
    """LLM-written negatives (``fields``: :class:`~negforge.synth.config.GenerateConfig`):
    :func:`negforge.synth.generate.generate_records`. With ``out_path`` it runs as the resumable job
    (:func:`negforge.synth.job.run_generate_job`: appends there, resumes, failures file) and returns
    every input record, the done ones with their new negatives."""
    from .synth.config import GenerateConfig
    from .synth.generate import generate_records

    cfg = _config(GenerateConfig, config, fields)
    if out_path is None:
        return generate_records(records, _dataset(dataset), cfg, backend=backend, show_progress=show_progress)
    from .synth.io import read_records
    from .synth.job import run_generate_job

    report = run_generate_job(records, cfg, out_path, backend=backend, show_progress=show_progress)
    by_id = {r.id: r for r in read_records(out_path)} if Path(out_path).exists() else {}
    return [by_id.get(r.id, r) for r in records], report


def to_dataset(
    records: list[Record],
    format: str = "sentence-transformers",
    *,
    num_negatives: Optional[int] = None,
    allow_unverified: bool = False,
    scores: Optional[str] = "auto",
):
    """An in-memory ``datasets.Dataset`` in ``format`` and its report (:func:`negforge.trainer.export.to_dataset`)."""
    from .trainer.export import to_dataset as _to_dataset

    return _to_dataset(records, format, num_negatives, allow_unverified, scores)


def export(records: list[Record], format: str, path: Union[str, Path], **options: Any):
    """Files for a trainer (:func:`negforge.trainer.export.export_records`); returns the ExportReport."""
    from .trainer.export import export_records

    return export_records(records, format, path, **options)


def _verifiers(verify_: Any, has_qrels: bool) -> Optional[list[str]]:
    if verify_ is False or verify_ is None:
        return None
    if verify_ is True:
        return ["qrels", "embedding"] if has_qrels else ["embedding"]
    if isinstance(verify_, str):
        return [verify_]
    return list(verify_)


def mine_hard_negatives(
    dataset: Any,
    corpus: Any = None,
    *,
    sources: Iterable[str] = ("bm25", "dense"),
    num_negatives: int = 8,
    verify: Union[bool, str, Iterable[str]] = True,
    output_format: str = "sentence-transformers",
    columns: Optional[dict] = None,
    split: str = "train",
    qrels: Optional[dict] = None,
    encoder: Optional[str] = None,
    mine_options: Optional[dict] = None,
    verify_options: Optional[dict] = None,
    return_records: bool = False,
    show_progress: bool = True,
):
    """Mine, verify and flatten in one call: ``dataset`` in, a ``datasets.Dataset`` to train on out.

    ``dataset``: a ``datasets.Dataset`` of (query, positive) pairs or n-tuples, a path (CSV/TSV,
    Parquet, JSONL, a ``save_to_disk`` or BEIR folder) or a Hub name, or a list of records;
    ``columns`` maps its columns (``{"query": "question", "positive": "answer"}``).
    ``corpus``: the documents to mine (a list of texts, a corpus JSONL); default: the input's own
    corpus (BEIR, Tevatron), else every positive and negative text of the input.
    ``sources``: miners (``bm25``, ``dense``, ``click``), ``num_negatives`` per source.
    ``verify``: True (the embedding margin with the encoder, plus qrels when known), False (no
    check: negatives are exported unverified), or verifier names (``["embedding", "cross_encoder"]``).
    ``output_format``: a sentence-transformers layout (default: n-tuple ``anchor, positive,
    negative_1..n`` with ``scores``), ``flagembedding`` or ``parquet``.
    ``encoder``: the dense miner's and the verifier's model (default: the bundled MiniLM).

    Returns the dataset, or with ``return_records`` ``(dataset, records, reports)`` where
    ``reports`` holds the mine, verify and export reports.
    """
    records, ds = read(dataset, columns=columns, split=split, corpus=corpus)
    if qrels is not None:
        ds.qrels = qrels
    enc = {"encoder": encoder} if encoder else {}
    reports: dict[str, Any] = {}
    records, reports["mine"] = mine(
        records,
        ds,
        None,
        show_progress=show_progress,
        sources=list(sources),
        num_negatives=num_negatives,
        **enc,
        **(mine_options or {}),
    )
    names = _verifiers(verify, bool(ds.qrels))
    if names:
        records, reports["verify"] = _verify_stage(
            records, ds, None, show_progress=show_progress, verifiers=names, **enc, **(verify_options or {})
        )
    out, reports["export"] = to_dataset(records, output_format, allow_unverified=not names)
    log.info("%s", reports["export"].summary())
    return (out, records, reports) if return_records else out


__all__ = ["export", "generate", "mine", "mine_hard_negatives", "mix", "read", "to_dataset", "verify"]
