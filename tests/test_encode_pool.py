"""Corpus encoding in several processes (sentence-transformers' multi-process pool, ``encoder.processes`` in the
shared encoder config of mine / verify / eval) gives the single-process vectors within float tolerance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from negforge.synth.config import EncoderConfig, EvalConfig, MineConfig, RunConfig, VerifyConfig
from negforge.synth.data import Corpus
from negforge.synth.errors import ConfigError


def _docs(path: Path, n: int) -> list[dict]:
    with path.open() as f:
        return [json.loads(next(f)) for _ in range(n)]


@pytest.mark.slow
def test_two_processes_equal_one_on_two_corpora(scifact_dir, tmp_path):
    from negforge.mixers.dense import DenseMiner
    from negforge.mixers.embeddings import corpus_embeddings

    # a slice of two corpora (scientific abstracts, web passages), lengths as they come
    docs = _docs(scifact_dir / "corpus.jsonl", 32) + _docs(scifact_dir.parent / "trec-dl-2019" / "corpus.jsonl", 16)
    corpus = Corpus([d["_id"] for d in docs], [d.get("title", "") for d in docs], [d["text"] for d in docs])
    one = np.array(corpus_embeddings(corpus, "bundled", tmp_path / "one", 16, 256, show_progress=False))
    # through the miner's config, as `negforge mine` runs it
    enc = EncoderConfig(processes=2, cache_dir=str(tmp_path / "two"), batch_size=16)
    miner = DenseMiner(corpus, MineConfig(encoder=enc), show_progress=False)
    two = np.array(miner.emb)
    assert two.shape == one.shape == (48, 384)
    np.testing.assert_allclose(two, one, atol=2e-5)
    assert np.allclose(np.linalg.norm(two, axis=1), 1.0, atol=1e-4)
    assert not np.allclose(two[:32].mean(0), two[32:].mean(0), atol=1e-2)  # real, different vectors
    # bf16 autocast is not the sentence-transformers model the pool runs: a clear error, not silent fp32
    with pytest.raises(ConfigError, match="encoder.processes=2 needs the torch encoder backend at fp32"):
        corpus_embeddings(
            corpus, "bundled", tmp_path / "bf16", 16, 256, show_progress=False, precision="bf16", processes=2
        )


def test_processes_is_in_the_shared_encoder_config():
    for cls in (MineConfig, VerifyConfig, EvalConfig):
        assert cls().encoder.processes == 1 and cls(encoder={"processes": 4}).encoder.processes == 4
    with pytest.raises(ValueError):
        EncoderConfig(processes=0)
    run = RunConfig.model_validate({"encoder": {"processes": 3}})  # a run config's top-level encoder section
    assert run.mine.encoder.processes == run.verify.encoder.processes == 3
