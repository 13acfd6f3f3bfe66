"""The default run's mine and verify stages, then the FlagEmbedding and Tevatron exports read back by
those trainers' own readers (issue #15): no hand-made records. `negforge mine` and `negforge verify`
run through the CLI with `-c configs/default.yaml` (BM25 + dense, qrels + embedding margin, the run's
OpenVINO encoder) on a real SciFact slice; the verifier leaves some records with no kept negative,
as it left 19 of the default run's 809, and those are the records that crashed the readers."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from consumer_loaders import TevatronTrainDataset, flag_copy_items, flag_real_items, flagembedding_dataset_module
from typer.testing import CliRunner

from negforge.synth.cli import app
from negforge.synth.io import read_records

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


def _negforge(*args: str) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


@pytest.fixture(scope="module")
def run(tiny_beir, tmp_path_factory):
    """(folder, verified records): 20 SciFact train queries, 3 negatives per miner."""
    out = tmp_path_factory.mktemp("export-run")
    common = ["-c", CONFIG, "-d", tiny_beir, "--set", f"encoder.cache_dir={out / 'emb'}", "-q"]
    _negforge("mine", "-i", tiny_beir, "-o", out / "mined.jsonl", "--set", "mine.num_negatives=3", *common)
    _negforge("verify", "-i", out / "mined.jsonl", "-o", out / "verified.jsonl", *common)
    records = read_records(out / "verified.jsonl")
    assert {n.source.value for r in records for n in r.negatives} == {"bm25", "dense"}
    assert all(n.verdict is not None for r in records for n in r.negatives)
    return out, records


def _kept(records):
    """The records an export must hold (those with a kept negative), with only their kept negatives."""
    return [
        r.model_copy(update={"negatives": [n for n in r.negatives if n.kept]})
        for r in records
        if any(n.kept for n in r.negatives)
    ]


def _skipped_line(output: str, records) -> None:
    empty = sum(not any(n.kept for n in r.negatives) for r in records)
    assert empty >= 1, "the slice no longer leaves a record without a kept negative: the test lost its point"
    assert re.search(rf"wrote {len(records) - empty} of {len(records)} records", output), output
    assert f"{empty} records with no kept negative left out" in output, output


def test_flagembedding_export_of_the_default_stages_passes_its_reader(run, monkeypatch):
    out, records = run
    path = out / "train.flag.jsonl"
    output = _negforge("export", "-i", out / "verified.jsonl", "-f", "flagembedding", "-o", path)
    _skipped_line(output, records)
    expect = _kept(records)
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert [row["id"] for row in rows] == [r.id for r in expect]
    rejected = {r.id: {n.full_text for n in r.negatives if not n.kept} for r in records}
    assert any(rejected.values()) and not any(rejected[row["id"]] & set(row["neg"]) for row in rows)
    # FlagEmbedding's own AbsEmbedderTrainDataset (its copy where the package is missing), knowledge
    # distillation on: group 8 is more than any record's kept negatives, the path that divided by len(neg)
    random.seed(0)
    if flagembedding_dataset_module() is not None:
        items = flag_real_items(path, out / "flag-cache", 8, True, monkeypatch)
    else:
        items = flag_copy_items(path, out / "flag-cache", 8, True)
    assert len(items) == len(expect)
    for (query, passages, teacher), r in zip(items, expect):
        assert query == r.query and passages[0] in [p.full_text for p in r.positives]
        by_text = {n.full_text: n.scores["embedding"] for n in r.negatives}
        assert len(passages) == 8 and set(passages[1:]) <= set(by_text)
        assert teacher[1:] == [by_text[p] for p in passages[1:]]
        pos_score = {n.scores["embedding_pos"] for n in r.negatives}  # the verifier's positive score, one per record
        assert len(pos_score) == 1 and teacher[0] == pos_score.pop()


def test_tevatron_exports_of_the_default_stages_pass_its_reader(run):
    out, records = run
    output = _negforge("export", "-i", out / "verified.jsonl", "-f", "tevatron", "-o", out / "tev")
    _skipped_line(output, records)
    expect = _kept(records)
    train, corpus = out / "tev" / "train.jsonl", out / "tev" / "corpus.jsonl"
    rows = [json.loads(x) for x in train.read_text().splitlines()]
    assert [row["query_id"] for row in rows] == [r.id for r in expect]
    assert [row["negative_document_ids"] for row in rows] == [[n.doc_id for n in r.negatives] for r in expect]
    for group_size in (2, 8):  # 8: fewer kept negatives than 7 everywhere, the random.choices path
        ds = TevatronTrainDataset(train, out / "tev-cache", group_size, corpus_path=corpus)
        assert len(ds) == len(expect)
        for i, r in enumerate(expect):
            query, texts, _ = ds[i]
            assert query == r.query and texts[0] in [p.full_text for p in r.positives]
            assert len(texts) == group_size and set(texts[1:]) <= {n.full_text for n in r.negatives}
    # the legacy passages format, with the verifier's score on every passage
    output = _negforge("export", "-i", out / "verified.jsonl", "-f", "tevatron-legacy", "-o", out / "tev.jsonl")
    _skipped_line(output, records)
    ds = TevatronTrainDataset(out / "tev.jsonl", out / "tev-cache2", 8)
    assert len(ds) == len(expect)
    for i, r in enumerate(expect):
        query, texts, scores = ds[i]
        by_text = {n.full_text: n.scores["embedding"] for n in r.negatives}
        assert query == r.query and len(texts) == 8
        assert scores[1:] == [by_text[t.strip()] for t in texts[1:]]
