"""`negforge run` with refresh_every_epochs: the dense negatives are mined again by the model being trained
(as ANCE), verified and mixed again; provenance names that model; the counts are reported; a rerun whose
training gives other weights redoes the refresh instead of reusing it. Real CLI, real bundled MiniLM,
tests/data/tiny-beir, no LLM stage (llm_queries 0)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from negforge.synth.cli import app
from negforge.synth.config import RunConfig
from negforge.synth.errors import ConfigError
from negforge.synth.io import read_records
from negforge.synth.schema import Source


def _cfg(beir: Path, out: Path, **train) -> dict:
    return {
        "data": str(beir),
        "out_dir": str(out / "run"),
        "llm_queries": 0,
        "refresh_every_epochs": 1,
        "shortcut_check": False,
        "report": False,
        "encoder": {"max_seq_length": 64, "cache_dir": str(out / "emb")},
        "mine": {"num_negatives": 3, "range_max": 12},
        "mix": {"k": 2, "epochs": 2},
        "train": {"batch_size": 4, "max_seq_length": 64, "lr": 3e-4, "warmup_ratio": 0.0, **train},
    }


def _run(cfg: dict, path: Path) -> dict:
    path.write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(app, ["run", str(path), "-q"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return json.loads((Path(cfg["out_dir"]) / "metrics.json").read_text())


def _dense(path: Path) -> dict[str, list]:
    return {r.id: [n for n in r.negatives if n.source == Source.dense] for r in read_records(path)}


@pytest.mark.slow
def test_refresh_mines_with_the_trained_model_and_a_rerun_never_reuses_stale_negatives(generic_beir, tmp_path):
    from negforge.mixers.runtime import content_key

    cfg = _cfg(generic_beir, tmp_path)
    run = Path(cfg["out_dir"])
    metrics = _run(cfg, tmp_path / "cfg.yaml")
    trained = run / "model.epoch0"
    sha = content_key(trained)

    before, after = _dense(run / "verified.jsonl"), _dense(run / "verified.refresh1.jsonl")
    assert all(n.provenance.model == "bundled:all-MiniLM-L6-v2" for ns in before.values() for n in ns)
    new = [n for ns in after.values() for n in ns]
    assert new and all(n.provenance.model == str(trained) for n in new)  # mined by the model trained in epoch 0
    assert all(
        n.provenance.extra["model_sha256"] == sha and n.provenance.extra["refresh_after_epoch"] == 1 for n in new
    )
    assert all(n.verdict is not None for n in new)  # verified again
    changed = [q for q in before if {n.doc_id for n in before[q]} != {n.doc_id for n in after[q]}]
    assert changed, "the trained model mined the same dense negatives for every query"
    # the other sources are carried over as they were
    base = {r.id: r for r in read_records(run / "verified.jsonl")}
    for r in read_records(run / "verified.refresh1.jsonl"):
        assert [n for n in r.negatives if n.source != Source.dense] == [
            n for n in base[r.id].negatives if n.source != Source.dense
        ]
    # epoch 1 mixes from the refreshed pool only; epoch 0 from the base model's
    ep0, ep1 = _dense(run / "mixed.epoch0.jsonl"), _dense(run / "mixed.epoch1.jsonl")
    assert all(n.provenance.model != str(trained) for ns in ep0.values() for n in ns)
    assert any(ep1.values()) and all(n.provenance.model == str(trained) for ns in ep1.values() for n in ns)
    # the counts, reported in metrics.json, are the files' counts
    (rep,) = metrics["summaries"]["refresh"]
    assert rep["after_epoch"] == 1 and rep["model"] == str(trained) and rep["model_sha256"] == sha
    assert rep["dense_before"] == sum(map(len, before.values())) and rep["dense_after"] == len(new)
    assert rep["records_changed"] == len(changed) and rep["records"] == len(after)
    assert rep["kept_after"] + rep["rejected_after"] == len(new)
    assert {"mined.refresh1", "verified.refresh1"} <= set(metrics["timings_s"])
    assert [t["encoder"] for t in metrics["summaries"]["train"]] == ["bundled:all-MiniLM-L6-v2", str(trained)]

    # A rerun whose epoch-0 training gives other weights must mine again, not reuse the old refresh.
    metrics2 = _run(_cfg(generic_beir, tmp_path, lr=1e-4), tmp_path / "cfg2.yaml")
    sha2 = content_key(trained)
    assert sha2 != sha
    assert metrics2["timings_s"]["mined"] == 0.0  # the base pool is reused: its inputs did not change
    assert metrics2["timings_s"]["mined.refresh1"] > 0.0  # the refresh is redone
    new2 = [n for ns in _dense(run / "verified.refresh1.jsonl").values() for n in ns]
    assert new2 and all(n.provenance.extra["model_sha256"] == sha2 for n in new2)
    assert metrics2["summaries"]["refresh"][0]["model_sha256"] == sha2


def test_refresh_config_errors_say_what_to_change(tmp_path):
    from negforge.synth.config import load_config

    with pytest.raises(ConfigError, match="set mix.epochs above 1"):
        load_config(RunConfig, None, ["refresh_every_epochs=1"])
    with pytest.raises(ConfigError, match="add dense to mine.sources"):
        load_config(RunConfig, None, ["refresh_every_epochs=1", "mix.epochs=2", "mine.sources=[bm25]"])
    cfg = load_config(RunConfig, None, ["refresh_every_epochs=2", "mix.epochs=3", "llm_queries=0"])
    assert (cfg.refresh_every_epochs, cfg.mix.epochs, cfg.llm_queries) == (2, 3, 0)
