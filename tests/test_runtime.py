"""Encoder runtimes (ONNX Runtime, OpenVINO) against the torch SentenceTransformer, on real SciFact text."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from negforge.mixers.embeddings import cache_path, corpus_embeddings, encode_texts, get_encoder
from negforge.mixers.runtime import PRECISIONS, RuntimeEncoder, content_key, resolve_precision
from negforge.synth.data import Corpus, load_beir
from negforge.synth.errors import ConfigError

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def texts(tiny_beir):
    corpus = load_beir(tiny_beir, "train").corpus
    # long abstracts (truncated at 256 tokens), short ones, and a one-word text: padding differs per batch
    return corpus.full_texts()[:24] + ["aspirin", "A short claim about proteins."]


@pytest.fixture(scope="module")
def reference(texts):
    return encode_texts(texts, "bundled", 8, 256)


@pytest.fixture(scope="module")
def runtime_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("runtimes")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_fp32_runtimes_match_torch(backend, texts, reference, runtime_cache):
    vecs = encode_texts(texts, "bundled", 8, 256, backend=backend, precision="fp32", cache_dir=runtime_cache)
    assert vecs.dtype == np.float32 and vecs.shape == reference.shape
    assert np.abs(vecs - reference).max() < 1e-5
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend,precision,min_cos", [("onnx", "int8", 0.95), ("openvino", "int8", 0.99), ("torch", "bf16", 0.999)]
)
def test_reduced_precisions_stay_close(backend, precision, min_cos, texts, reference, runtime_cache):
    vecs = encode_texts(texts, "bundled", 8, 256, backend=backend, precision=precision, cache_dir=runtime_cache)
    cos = (vecs * reference).sum(1)
    assert cos.min() > min_cos
    assert np.abs(vecs - reference).max() > 1e-6  # it really ran at the lower precision


@pytest.mark.slow
def test_export_cached_by_content(tmp_path, encoder_path, texts):
    cache = tmp_path / "cache"
    first = RuntimeEncoder(encoder_path, "onnx", "fp32", 256, cache)
    onnx_file = first.folder / "model.onnx"
    stamp = onnx_file.stat().st_mtime_ns
    again = RuntimeEncoder(encoder_path, "onnx", "fp32", 256, cache)
    assert again.folder == first.folder and onnx_file.stat().st_mtime_ns == stamp  # reused, not re-exported
    # A changed model (here: its pooling switched to CLS) is a new key and a new export, with other vectors.
    copy = tmp_path / "model"
    shutil.copytree(encoder_path, copy)
    pooling = copy / "1_Pooling" / "config.json"
    pooling.write_text(
        pooling.read_text()
        .replace('"pooling_mode_cls_token": false', '"pooling_mode_cls_token": true')
        .replace('"pooling_mode_mean_tokens": true', '"pooling_mode_mean_tokens": false')
    )
    assert content_key(copy) != content_key(Path(encoder_path))
    cls = RuntimeEncoder(str(copy), "onnx", "fp32", 256, cache)
    assert cls.folder != first.folder
    torch_cls = get_encoder(str(copy), 256, fresh=True)
    a, b = cls.encode(texts[:4]), np.asarray(torch_cls.encode(texts[:4], normalize_embeddings=True))
    assert np.abs(a - b).max() < 1e-5  # the model's own pooling is in the graph
    assert np.abs(a - first.encode(texts[:4])).max() > 1e-2


def test_content_key_ignores_notes_and_checkpoints(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "config.json").write_text("{}")
    key = content_key(tmp_path)
    (tmp_path / "README.md").write_text("notes")
    (tmp_path / "train_result.json").write_text("{}")
    (tmp_path / "checkpoints" / "checkpoint-5").mkdir(parents=True)
    (tmp_path / "checkpoints" / "checkpoint-5" / "model.safetensors").write_bytes(b"old")
    assert content_key(tmp_path) == key
    (tmp_path / "model.safetensors").write_bytes(b"weights2")
    assert content_key(tmp_path) != key


def test_precision_checks():
    assert resolve_precision("onnx", "auto") == "fp32" and resolve_precision("torch", "auto") == "fp32"
    assert resolve_precision("openvino", "auto") in ("fp32", "bf16")
    for backend, valid in PRECISIONS.items():
        assert resolve_precision(backend, valid[0]) == valid[0]
    with pytest.raises(ConfigError, match="valid: fp32, int8"):
        resolve_precision("onnx", "bf16")
    with pytest.raises(ConfigError, match="valid: torch, onnx, openvino"):
        resolve_precision("tensorrt", "fp32")


@pytest.mark.slow
def test_corpus_cache_per_runtime(tiny_beir, tmp_path):
    full = load_beir(tiny_beir, "train").corpus
    corpus = Corpus(ids=full.ids[:40], titles=full.titles[:40], texts=full.texts[:40])
    paths = {
        (b, p): cache_path("bundled", corpus, tmp_path, 256, b, p)
        for b, p in [("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8"), ("openvino", "fp32")]
    }
    assert len(set(paths.values())) == 4
    assert "-onnx-" not in paths[("torch", "fp32")].name  # torch keeps the file name it always had
    emb = corpus_embeddings(corpus, "bundled", tmp_path, 32, 256, show_progress=False, backend="onnx", precision="int8")
    assert paths[("onnx", "int8")].exists() and emb.shape == (len(corpus), 384)
