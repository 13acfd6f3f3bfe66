"""The report's pieces that need no model: the sample keeps every negative source, and the metrics
files of `negforge eval` and `negforge run` both read."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from negforge.synth.errors import InputError
from negforge.synth.schema import Negative, Passage, Record, Source, Status, Verdict
from negforge.trainer.report import group_of, load_metrics, sample_records


def _rec(i: int, sources: list[tuple[str, bool]]) -> Record:
    negs = [
        Negative(
            text=f"n{i}-{k}",
            source=Source(s),
            verdict=Verdict(status=Status.rejected if rej else Status.kept, rule="x", reason="y"),
        )
        for k, (s, rej) in enumerate(sources)
    ]
    return Record(id=str(i), query=f"q{i}", positives=[Passage(text=f"p{i}")], negatives=negs)


def test_sample_keeps_every_source_even_a_rare_one():
    records = [_rec(i, [("bm25", False), ("dense", i % 3 == 0)]) for i in range(300)]
    records[17] = _rec(17, [("bm25", False), ("llm", True)])  # the LLM wrote for two queries only
    records[230] = _rec(230, [("llm", False), ("dense", False)])
    for seed in range(5):
        sample = sample_records(records, 20, seed)
        assert len(sample) == 20 and len({r.id for r in sample}) == 20
        groups = Counter(group_of(n) for r in sample for n in r.negatives)
        assert {"llm", "llm rejected", "bm25", "dense", "dense rejected"} <= set(groups), groups
    assert sample_records(records, 20, 1) == sample_records(records, 20, 1)  # seeded
    assert sample_records(records[:5], 20) == records[:5]


def test_metrics_from_eval_and_run_files(tmp_path):
    ev = tmp_path / "model" / "eval_test.json"
    ev.parent.mkdir()
    ev.write_text(json.dumps({"model": "m", "split": "test", "metrics": {"ndcg@10": 0.5}}))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"eval": {"split": "dev"}}))
    (run / "metrics.json").write_text(
        json.dumps({"metrics_before": {"ndcg@10": 0.4}, "metrics_after": {"ndcg@10": 0.6}})
    )
    rows = load_metrics([ev, run / "metrics.json"], model_dir=ev.parent)
    assert rows == {
        "fine-tuned (test)": {"ndcg@10": 0.5},
        "base model (dev)": {"ndcg@10": 0.4},
        "fine-tuned (dev)": {"ndcg@10": 0.6},
    }
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"something": 1}))
    with pytest.raises(InputError, match="bad.json: neither an eval JSON .* nor the metrics.json"):
        load_metrics([bad])
