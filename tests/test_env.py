"""The environment a user's shell brings: OPENAI_BASE_URL / NEGFORGE_MODEL instead of the bundled
server, the served model from /v1/models, and the cache folder (NEGFORGE_CACHE_DIR, ~/.cache/negforge)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from negforge.synth.backends.endpoint import resolve_endpoint, served_models
from negforge.synth.config import GenerateConfig, LLMConfig, MineConfig, VerifyConfig
from negforge.synth.errors import BackendError
from negforge.synth.io import read_records

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENAI_BASE_URL", "NEGFORGE_MODEL", "OPENAI_MODEL", "NEGFORGE_CACHE_DIR", "XDG_CACHE_HOME")
    }
    return subprocess.run(
        [sys.executable, "-m", "negforge", *map(str, args)],
        capture_output=True,
        text=True,
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        cwd=cwd,
    )


class _Models(BaseHTTPRequestHandler):
    ids: list[str] = []

    def do_GET(self):  # noqa: N802
        body = json.dumps({"object": "list", "data": [{"id": i, "object": "model"} for i in self.ids]}).encode()
        self.send_response(200 if self.path.endswith("/models") else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def models_server():
    """A real HTTP server on 127.0.0.1 that lists the models in ``handler.ids``."""
    handler = type("H", (_Models,), {"ids": []})
    srv = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}/v1", handler
    srv.shutdown()


def test_resolve_endpoint_order(monkeypatch, models_server):
    url, handler = models_server
    for v in ("OPENAI_BASE_URL", "NEGFORGE_MODEL", "OPENAI_MODEL"):
        monkeypatch.delenv(v, raising=False)
    assert resolve_endpoint(LLMConfig()).base_url is None  # nothing set: the bundled server starts
    handler.ids = ["served-one"]
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    got = resolve_endpoint(LLMConfig())
    assert (got.base_url, got.model) == (url, "served-one")  # the model from /v1/models
    monkeypatch.setenv("OPENAI_MODEL", "from-openai-var")
    assert resolve_endpoint(LLMConfig()).model == "from-openai-var"
    monkeypatch.setenv("NEGFORGE_MODEL", "from-negforge-var")
    assert resolve_endpoint(LLMConfig()).model == "from-negforge-var"  # NEGFORGE_MODEL first
    assert resolve_endpoint(LLMConfig(model="my-model")).model == "my-model"  # the config's own choice wins
    other = "http://127.0.0.1:9/v1"
    assert resolve_endpoint(LLMConfig(base_url=other)).base_url == other  # the config's base_url wins
    monkeypatch.delenv("NEGFORGE_MODEL")
    monkeypatch.delenv("OPENAI_MODEL")
    handler.ids = ["a", "b"]
    with pytest.raises(BackendError, match="serves 2 models .*NEGFORGE_MODEL"):
        resolve_endpoint(LLMConfig())
    assert resolve_endpoint(LLMConfig(backend="vllm")).base_url is None  # vLLM never reads the variable


@pytest.mark.slow
def test_generate_uses_openai_base_url_and_the_served_model(local_server, tiny_beir, tmp_path):
    """With OPENAI_BASE_URL pointing at a running server (the real xllamacpp one), generate starts no
    server of its own and sends the model the server lists; its bar moves per finished request."""
    served = served_models(local_server.base_url, "local")
    assert len(served) == 1
    out = tmp_path / "gen.jsonl"
    res = _cli(
        "generate",
        "-d",
        tiny_beir,
        "-o",
        out,
        "--limit",
        1,
        "--no-cache",
        "--set",
        "num_negatives=1",
        env={"OPENAI_BASE_URL": local_server.base_url, "NEGFORGE_CACHE_DIR": str(tmp_path / "cache")},
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert f"using model {served[0]} at {local_server.base_url}" in res.stderr
    assert "local LLM server" not in res.stderr  # no bundled server was started
    assert "HTTP Request" not in res.stderr  # the HTTP client's INFO lines stay out (they are for -v)
    recs = read_records(out)
    assert len(recs) == 1
    models = {n.provenance.model for n in recs[0].negatives if n.provenance is not None}
    assert models <= {served[0]}
    # the bar moved inside the one batch, per finished request, before the record was done
    import re

    frames = [f for f in re.split(r"[\r\n]", res.stderr) if f.startswith("generate ") and "%|" in f]
    partial = [f for f in frames if not re.match(r"generate 0/1 rec:\s+0%", f) and "0/1 rec" in f]
    assert partial and all(" req, " in f and "tok/s" in f for f in partial), frames
    assert "1/1 rec" in frames[-1] and "100%" in frames[-1]


def test_cache_defaults_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("NEGFORGE_CACHE_DIR", str(tmp_path / "nf"))
    assert GenerateConfig().cache_dir == str(tmp_path / "nf" / "llm")
    assert MineConfig().encoder.cache_dir == VerifyConfig().encoder.cache_dir == str(tmp_path / "nf" / "embeddings")
    monkeypatch.delenv("NEGFORGE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert MineConfig().encoder.cache_dir == str(tmp_path / "xdg" / "negforge" / "embeddings")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert MineConfig().encoder.cache_dir == str(tmp_path / "home" / ".cache" / "negforge" / "embeddings")


def test_caches_live_outside_the_working_directory(tiny_beir, tmp_path):
    """Mining from two different folders builds the BM25 index once, under the cache folder, and
    writes nothing into either working directory."""
    home, a, b = tmp_path / "home", tmp_path / "a", tmp_path / "b"
    for d in (home, a, b):
        d.mkdir()
    args = ["mine", "-i", tiny_beir, "-d", tiny_beir, "--sources", "bm25", "-v"]
    first = _cli(*args, "-o", a / "m.jsonl", env={"HOME": str(home)}, cwd=a)
    assert first.returncode == 0, first.stderr
    assert "BM25 index saved to " + str(home / ".cache" / "negforge" / "embeddings") in first.stderr
    second = _cli(*args, "-o", b / "m.jsonl", env={"HOME": str(home)}, cwd=b)
    assert second.returncode == 0, second.stderr
    assert "BM25 index from cache " + str(home / ".cache" / "negforge" / "embeddings") in second.stderr
    assert sorted(p.name for p in a.iterdir()) == ["m.jsonl"] and sorted(p.name for p in b.iterdir()) == ["m.jsonl"]
    custom = _cli(
        *args, "-o", b / "n.jsonl", env={"HOME": str(home), "NEGFORGE_CACHE_DIR": str(tmp_path / "nf")}, cwd=b
    )
    assert custom.returncode == 0 and "BM25 index saved to " + str(tmp_path / "nf" / "embeddings") in custom.stderr
