"""Exports read back by the consumers' own loaders: datasets (disk / json / parquet) and one
sentence-transformers training step on the exported dataset."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from negforge.mixers.mine import mine_records
from negforge.synth.config import MineConfig
from negforge.synth.data import load_beir, records_from_beir, records_from_flag_jsonl
from negforge.synth.errors import ConfigError, InputError
from negforge.synth.io import write_records
from negforge.synth.schema import Negative, Passage, Provenance
from negforge.trainer.export import FORMATS, export_records


@pytest.fixture(scope="module")
def records(tiny_beir):
    beir = load_beir(tiny_beir, "train")
    recs, _ = mine_records(records_from_beir(beir)[:8], beir, MineConfig(sources=["bm25"], num_negatives=3), show_progress=False)
    # a generated (LLM) negative without a doc id, and a record with two positives and one negative
    gen = Negative(text="A generated passage that almost answers the claim.", source="llm",
                   provenance=Provenance(model="smollm2", template="mar_generate"))
    recs[0] = recs[0].model_copy(update={"negatives": [*recs[0].negatives, gen]})
    recs[1] = recs[1].model_copy(update={"positives": [*recs[1].positives, Passage(text="Second positive.", title="T")],
                                         "negatives": recs[1].negatives[:1]})
    return recs


def _load(kind, path, tmp_path):
    from datasets import load_dataset

    return load_dataset(kind, data_files=str(path), split="train", cache_dir=str(tmp_path / "hf"))


def test_sentence_transformers_columns_load_from_disk(records, tmp_path):
    from datasets import load_from_disk

    path = export_records(records, "sentence-transformers", tmp_path / "st")
    ds = load_from_disk(str(path))
    assert ds.column_names == ["anchor", "positive", "negative_1", "negative_2", "negative_3", "negative_4"]
    assert len(ds) == sum(len(r.positives) for r in records) == 9
    row = ds[0]
    assert row["anchor"] == records[0].query and row["positive"] == records[0].positives[0].full_text
    assert [row[f"negative_{i}"] for i in range(1, 5)] == [n.full_text for n in records[0].negatives]
    assert records[0].negatives[0].title and row["negative_1"].startswith(records[0].negatives[0].title)
    # record 1: two positives, one negative repeated to fill the columns
    r1 = [x for x in ds if x["anchor"] == records[1].query]
    assert [x["positive"] for x in r1] == [p.full_text for p in records[1].positives]
    assert all({x[f"negative_{i}"] for i in range(1, 5)} == {records[1].negatives[0].full_text} for x in r1)
    # fewer columns on request; exporting again replaces the folder
    again = load_from_disk(str(export_records(records, "sentence-transformers", path, num_negatives=2)))
    assert again.column_names == ["anchor", "positive", "negative_1", "negative_2"]


def test_triplets_one_row_per_negative(records, tmp_path):
    from datasets import load_from_disk

    ds = load_from_disk(str(export_records(records, "sentence-transformers-triplet", tmp_path / "tri")))
    assert ds.column_names == ["anchor", "positive", "negative"]
    assert len(ds) == sum(len(r.positives) * len(r.negatives) for r in records)
    want = {(r.query, p.full_text, n.full_text) for r in records for p in r.positives for n in r.negatives}
    assert {(x["anchor"], x["positive"], x["negative"]) for x in ds} == want


def test_flag_jsonl_loads_with_datasets_and_round_trips(records, tmp_path):
    path = export_records(records, "flag", tmp_path / "flag.jsonl")
    ds = _load("json", path, tmp_path)
    assert set(ds.column_names) == {"query", "pos", "neg", "id"} and len(ds) == len(records)
    assert ds[0]["neg"][-1] == "A generated passage that almost answers the claim."
    back = records_from_flag_jsonl(path)  # our own FlagEmbedding reader
    assert [r.query for r in back] == [r.query for r in records]
    assert [[n.full_text for n in r.negatives] for r in back] == [[n.full_text for n in r.negatives] for r in records]


def test_tevatron_jsonl(records, tmp_path):
    ds = _load("json", export_records(records, "tevatron", tmp_path / "tev.jsonl"), tmp_path)
    assert set(ds.column_names) == {"query_id", "query", "positive_passages", "negative_passages"}
    row = ds[0]
    assert row["query_id"] == records[0].id
    assert row["positive_passages"][0] == {"docid": records[0].positives[0].doc_id,
                                           "title": records[0].positives[0].title, "text": records[0].positives[0].text}
    assert [p["docid"] for p in row["negative_passages"][:-1]] == [n.doc_id for n in records[0].negatives[:-1]]
    gen = row["negative_passages"][-1]
    assert gen["docid"].startswith("h") and len(gen["docid"]) == 17  # content hash for a generated passage
    again = _load("json", export_records(records, "tevatron", tmp_path / "tev2.jsonl"), tmp_path / "2")
    assert again[0]["negative_passages"][-1]["docid"] == gen["docid"]  # stable across exports


def test_parquet(records, tmp_path):
    ds = _load("parquet", export_records(records, "parquet", tmp_path / "mix.parquet"), tmp_path)
    assert ds.column_names == ["id", "query", "positive", "negative", "negative_source", "negative_doc_id"]
    assert ds["id"] == [r.id for r in records]
    assert ds[0]["negative_source"] == ["bm25"] * 3 + ["llm"] and ds[0]["negative_doc_id"][-1] is None
    assert ds[1]["positive"] == [p.full_text for p in records[1].positives]


def test_errors_and_cli(records, tmp_path):
    from negforge.synth.cli import app

    with pytest.raises(ConfigError, match="valid: " + ", ".join(FORMATS)):
        export_records(records, "tsv", tmp_path / "x")
    bare = [r.model_copy(update={"negatives": []}) for r in records]
    with pytest.raises(InputError, match="no record has a negative"):
        export_records(bare, "sentence-transformers", tmp_path / "x")
    (tmp_path / "notds").mkdir()
    (tmp_path / "notds" / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not a saved dataset"):
        export_records(records, "sentence-transformers", tmp_path / "notds")
    assert (tmp_path / "notds" / "keep.txt").is_file()

    src = tmp_path / "mixed.jsonl"
    write_records(src, [*records, bare[0].model_copy(update={"id": "no-negatives"})])
    res = CliRunner().invoke(app, ["export", "--input", str(src), "--format", "flag", "--output",
                                   str(tmp_path / "cli.jsonl"), "-q"])
    assert res.exit_code == 0, res.output
    assert len((tmp_path / "cli.jsonl").read_text().splitlines()) == len(records) + 1
    res = CliRunner().invoke(app, ["export", "--input", str(src), "--format", "sentence-transformers", "--output",
                                   str(tmp_path / "cli_st"), "-q"])
    assert res.exit_code == 0, res.output
    from datasets import load_from_disk

    assert len(load_from_disk(str(tmp_path / "cli_st"))) == 9  # the record without negatives is left out
    res = CliRunner().invoke(app, ["export", "--input", str(src), "--format", "csv", "--output", str(tmp_path / "c")])
    assert res.exit_code != 0 and "valid:" in res.output


@pytest.mark.slow
def test_one_sentence_transformers_training_step_on_the_export(records, tmp_path, encoder_path):
    import torch
    from datasets import load_from_disk
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    ds = load_from_disk(str(export_records(records, "sentence-transformers", tmp_path / "st", num_negatives=2)))
    model = SentenceTransformer(encoder_path)
    model.max_seq_length = 64
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "run"), max_steps=1,
                                                per_device_train_batch_size=4, learning_rate=1e-3,
                                                logging_steps=1, report_to="none", save_strategy="no",
                                                use_cpu=True, disable_tqdm=True)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=ds,
                                         loss=MultipleNegativesRankingLoss(model))
    out = trainer.train()
    assert out.global_step == 1 and torch.isfinite(torch.tensor(out.training_loss)) and out.training_loss > 0
    changed = sum(not torch.equal(before[k], v) for k, v in model.named_parameters())
    assert changed > 0
