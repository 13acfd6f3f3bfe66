"""Corpus embeddings computed once per (encoder, corpus) and cached on disk as a float32 memmap.

The cache file is ``<cache_dir>/<encoder-slug>-<corpus fingerprint>.f32`` plus a ``.json``
sidecar (shape, model, dim). It is written in batches to a temp file and renamed when complete,
so a crash never leaves a half cache that looks whole; reads are memory-mapped, so a
million-passage corpus costs one float32 copy on disk and only the pages touched in memory.
Embeddings are L2-normalised: inner product = cosine.

``backend`` / ``precision`` choose the runtime (:mod:`negforge.mixers.runtime`): torch (the
SentenceTransformer), onnx (ONNX Runtime) or openvino; each (backend, precision) other than
torch/fp32 gets its own cache file (``...-onnx-int8-...``), as its vectors differ slightly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np

from negforge.synth.data import Corpus
from negforge.synth.models import load_encoder, resolve_encoder

log = logging.getLogger(__name__)


def _default_cache(cache_dir: str | os.PathLike | None) -> str | os.PathLike:
    """``cache_dir``, or ``embeddings/`` under negforge's cache folder (:mod:`negforge.synth.paths`)."""
    if cache_dir is not None:
        return cache_dir
    from negforge.synth.paths import cache_path as _cache_folder

    return _cache_folder("embeddings")


def _slug(encoder: str) -> str:
    base = Path(encoder.rstrip("/")).name or "encoder"
    return f"{base}-{hashlib.sha1(encoder.encode()).hexdigest()[:8]}"


def _runtime_tag(backend: str, precision: str) -> str:
    from .runtime import resolve_precision

    precision = resolve_precision(backend, precision)
    return "" if (backend, precision) == ("torch", "fp32") else f"-{backend}-{precision}"


def cache_path(
    encoder: str,
    corpus: Corpus,
    cache_dir: str | os.PathLike,
    max_seq_length: int,
    backend: str = "torch",
    precision: str = "fp32",
) -> Path:
    tag = _runtime_tag(backend, precision)
    return Path(cache_dir) / f"{_slug(resolve_encoder(encoder))}-L{max_seq_length}{tag}-{corpus.fingerprint()}.f32"


class _TorchBF16:
    """A SentenceTransformer whose ``encode`` runs under CPU bf16 autocast (float32 out)."""

    def __init__(self, model):
        self.model = model

    def get_embedding_dimension(self) -> int:
        return _dim(self.model)

    def encode(self, texts, **kw) -> np.ndarray:
        import torch

        kw.pop("convert_to_numpy", None)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = self.model.encode(texts, convert_to_tensor=True, **kw)
        return out.float().cpu().numpy()


def get_encoder(
    encoder: str,
    max_seq_length: Optional[int] = None,
    backend: str = "torch",
    precision: str = "fp32",
    cache_dir: str | os.PathLike | None = None,
    fresh: bool = False,
):
    """An object with ``encode`` / ``get_embedding_dimension`` for (encoder, backend, precision).

    ``fresh`` skips the per-process cache (a folder retrained in this process must be re-read;
    runtime exports are keyed by the folder's content, so they are always fresh)."""
    from .runtime import RuntimeEncoder, resolve_precision

    precision = resolve_precision(backend, precision)
    cache_dir = _default_cache(cache_dir)
    if backend != "torch":
        return (
            _runtime_encoder(encoder, max_seq_length, backend, precision, str(cache_dir))
            if not fresh
            else RuntimeEncoder(encoder, backend, precision, max_seq_length, cache_dir)
        )
    if fresh:
        from sentence_transformers import SentenceTransformer

        from negforge.synth.models import device

        model = SentenceTransformer(resolve_encoder(encoder), device=device())
        if max_seq_length:
            model.max_seq_length = max_seq_length
    else:
        model = load_encoder(encoder, max_seq_length)
    return _TorchBF16(model) if precision == "bf16" else model


@lru_cache(maxsize=4)
def _runtime_encoder(encoder: str, max_seq_length: Optional[int], backend: str, precision: str, cache_dir: str):
    from .runtime import RuntimeEncoder

    return RuntimeEncoder(encoder, backend, precision, max_seq_length, cache_dir)


def _dim(model) -> int:
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get())


def encode_texts(
    texts: Sequence[str],
    encoder: str,
    batch_size: int = 64,
    max_seq_length: Optional[int] = None,
    show_progress: bool = False,
    model=None,
    backend: str = "torch",
    precision: str = "fp32",
    cache_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """Normalised float32 embeddings of ``texts`` (no cache: for queries and generated passages)."""
    model = model or get_encoder(encoder, max_seq_length, backend, precision, cache_dir)
    if not len(texts):
        return np.zeros((0, _dim(model)), dtype=np.float32)
    return np.asarray(
        model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        ),
        dtype=np.float32,
    )


def pool_devices(processes: int) -> list[str]:
    """One device per pool process: the GPUs in turn when there are any, else the CPU."""
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [f"cuda:{i % n}" for i in range(processes)] if n else ["cpu"] * processes


class EncodePool:
    """sentence-transformers' multi-process pool over ``model`` (a SentenceTransformer), as a context manager;
    ``encode`` has :func:`encode_texts`' output (normalised float32). On CPU each process gets an equal share
    of the cores (``OMP_NUM_THREADS`` unless set), so N processes do not each start a thread per core."""

    def __init__(self, model, processes: int):
        from sentence_transformers import SentenceTransformer

        if not isinstance(model, SentenceTransformer):
            from negforge.synth.errors import ConfigError

            raise ConfigError(
                f"encoder.processes={processes} needs the torch encoder backend at fp32 (the "
                "sentence-transformers pool); use processes: 1 with onnx / openvino / bf16"
            )
        self.model, self.devices = model, pool_devices(processes)
        self.pool: Optional[dict] = None

    def __enter__(self) -> EncodePool:
        threads = max(1, (os.cpu_count() or 1) // len(self.devices))
        old = os.environ.get("OMP_NUM_THREADS")
        if old is None and self.devices[0] == "cpu":
            os.environ["OMP_NUM_THREADS"] = str(threads)  # read by the spawned processes' torch
        try:
            self.pool = self.model.start_multi_process_pool(target_devices=self.devices)
        finally:
            if old is None:
                os.environ.pop("OMP_NUM_THREADS", None)
        return self

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return np.asarray(
            self.model.encode(
                list(texts), pool=self.pool, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
            ),
            dtype=np.float32,
        )

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.model.stop_multi_process_pool(self.pool)
            self.pool = None


def corpus_embeddings(
    corpus: Corpus,
    encoder: str,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
    max_seq_length: int = 256,
    show_progress: bool = True,
    model=None,
    chunk: int = 4096,
    backend: str = "torch",
    precision: str = "fp32",
    processes: int = 1,
) -> np.memmap:
    """Memory-mapped (len(corpus), dim) float32 matrix, computed on first use and reused after
    (``cache_dir`` None: ``embeddings/`` under negforge's cache folder, see :mod:`negforge.synth.paths`).
    ``model`` (optional) must be the encoder for (``backend``, ``precision``): it names the cache file.
    ``processes`` > 1 encodes in that many processes (:class:`EncodePool`; the vectors equal one process's
    within float tolerance, so they share the cache file)."""
    cache_dir = _default_cache(cache_dir)
    path = cache_path(encoder, corpus, cache_dir, max_seq_length, backend, precision)
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        log.info("corpus embeddings from cache %s", path)
        return np.memmap(path, dtype=np.float32, mode="r", shape=tuple(meta["shape"]))
    model = model or get_encoder(encoder, max_seq_length, backend, precision, cache_dir)
    dim = _dim(model)
    from negforge.synth.io import write_json
    from negforge.synth.outputs import clean_stale_temps

    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path.parent)  # full-size temp matrices of crashed jobs
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    texts = corpus.full_texts()
    from contextlib import nullcontext

    from tqdm.auto import tqdm

    try:
        out = np.memmap(tmp, dtype=np.float32, mode="w+", shape=(len(corpus), dim))
        with (
            tqdm(total=len(texts), desc="encode corpus", unit="doc", disable=not show_progress) as bar,
            EncodePool(model, processes) if processes > 1 else nullcontext() as pool,
        ):
            for start in range(0, len(texts), chunk):
                part = texts[start : start + chunk]
                out[start : start + len(part)] = (
                    pool.encode(part, batch_size)
                    if pool is not None
                    else encode_texts(part, encoder, batch_size, model=model)
                )
                bar.update(len(part))
        out.flush()
        del out
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    write_json(
        meta_path,
        {
            "shape": [len(corpus), dim],
            "encoder": encoder,
            "backend": backend,
            "precision": precision,
            "max_seq_length": max_seq_length,
            "corpus": corpus.fingerprint(),
        },
    )
    return np.memmap(path, dtype=np.float32, mode="r", shape=(len(corpus), dim))
