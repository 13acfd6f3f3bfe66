"""The whole pipeline through the real CLI entry point, on a real SciFact slice, with the real
local LLM server that negforge starts itself, real BM25/faiss mining, the real encoder and training."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from negforge.synth.cli import app
from negforge.synth.io import read_records
from negforge.synth.schema import Source, Status

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tiny_beir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = {
        "data": str(tiny_beir),
        "out_dir": str(out / "run"),
        "llm_queries": 3,
        "generate": {
            "num_negatives": 2,
            "reflection_rounds": 1,
            "cache_dir": str(out / "llm-cache"),
            "llm": {"n_ctx": 4096, "concurrency": 2, "params": {"max_tokens": 320}},
        },
        "mine": {"num_negatives": 4, "cache_dir": str(out / "emb")},
        "mix": {"k": 3},
        "train": {"batch_size": 8, "max_seq_length": 64},
        "eval": {"max_seq_length": 64, "cache_dir": str(out / "emb")},
    }
    (out / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(app, ["run", str(out / "cfg.yaml"), "--quiet"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out / "run", result.output


def test_run_prints_before_and_after_metrics(run_dir):
    path, output = run_dir
    assert "base model" in output and "fine-tuned" in output
    metrics = json.loads((path / "metrics.json").read_text())
    for key in ("ndcg@10", "recall@10", "recall@100", "mrr@10"):
        assert 0.0 <= metrics["metrics_before"][key] <= 1.0
        assert 0.0 <= metrics["metrics_after"][key] <= 1.0
    # the fine-tuned model is a different model, so at least one figure moves
    assert metrics["metrics_before"] != metrics["metrics_after"]
    assert set(metrics["timings_s"]) >= {
        "generated",
        "mined",
        "verified",
        "mixed",
        "train",
        "eval_before",
        "eval_after",
    }


def test_records_carry_every_source_with_provenance_and_verdicts(run_dir):
    path, _ = run_dir
    verified = read_records(path / "verified.jsonl")
    negs = [n for r in verified for n in r.negatives]
    sources = {n.source for n in negs}
    assert {Source.llm, Source.bm25, Source.dense} <= sources
    assert all(n.verdict is not None and n.verdict.reason for n in negs)
    llm = [n for n in negs if n.source == Source.llm]
    assert all(n.provenance.template and n.provenance.template_hash and n.provenance.model for n in llm)
    mined = [n for n in negs if n.source in (Source.bm25, Source.dense)]
    assert all(n.provenance.rank and n.doc_id for n in mined)
    # no labelled positive survives as a kept negative
    for r in verified:
        assert not {n.doc_id for n in r.negatives if n.kept} & r.positive_ids()


def test_mixed_records_hold_only_kept_negatives(run_dir):
    path, _ = run_dir
    mixed = read_records(path / "mixed.jsonl")
    assert mixed and all(len(r.negatives) <= 3 for r in mixed)
    assert all(n.verdict.status == Status.kept for r in mixed for n in r.negatives)
    assert (path / "model").is_dir()


def test_run_writes_the_report(run_dir):
    """report/: the loss at every logged step, metrics before/after, the verifier's summary and the
    cosine histograms with every source, the LLM's included."""
    path, _ = run_dir
    rep = path / "report"
    md = (rep / "report.md").read_text()
    assert (rep / "training.png").stat().st_size > 5000 and (rep / "cosines.png").stat().st_size > 5000
    metrics = json.loads((path / "metrics.json").read_text())
    steps = metrics["summaries"]["train"][0]["steps"]
    assert f"Training loss at {steps} logged steps" in md  # every step, not every 10th
    assert "| base model (test) |" in md and "| fine-tuned (test) |" in md
    rows = {line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ")}
    assert {"llm", "bm25", "dense"} <= rows  # the verifier's table, one row per source
    cos = md[md.index("## Cosine similarity") :]
    groups = {line.split("|")[1].strip() for line in cos.splitlines() if line.startswith("| ")}
    assert "positive" in groups and {"llm", "llm rejected"} & groups and {"bm25", "bm25 rejected"} & groups
    assert "report" in metrics["timings_s"]


def test_report_takes_the_model_given_not_the_path_stored_at_training(run_dir, tmp_path):
    """A model folder moved elsewhere (its train_result.json names a path that is gone), reported from
    another working directory, with the run's metrics.json as the metrics."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    path, _ = run_dir
    moved = tmp_path / "moved-model"
    shutil.copytree(path / "model", moved)
    res_file = moved / "train_result.json"
    res_file.write_text(res_file.read_text().replace(str(path / "model"), "gone/model"))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [
        sys.executable,
        "-m",
        "negforge",
        "report",
        "-m",
        str(moved),
        "-r",
        str(path / "verified.jsonl"),
        "--metrics",
        str(path / "metrics.json"),
        "-o",
        str(tmp_path / "rep"),
        "--sample",
        "6",
        "-q",
        "--set",
        "max_seq_length=64",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    assert f"# Training report: {moved}" in md and "| fine-tuned (test) |" in md and "6 of " in md
    # the run folder form picks everything up by itself
    res = subprocess.run(
        [sys.executable, "-m", "negforge", "report", str(path), "-o", str(tmp_path / "rep2"), "--sample", "6", "-q"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert "## Verifier" in (tmp_path / "rep2" / "report.md").read_text()
