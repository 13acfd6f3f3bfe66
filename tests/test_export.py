"""Exports read back by the consumers' own loaders: datasets (disk / json / parquet), FlagEmbedding's
own dataset file, a copy of Tevatron's TrainDataset, and sentence-transformers training steps."""

from __future__ import annotations

import json
import random

import pytest
from consumer_loaders import (
    TevatronTrainDataset,
    flag_copy_items,
    flag_getitem_copy,
    flag_real_items,
    flagembedding_dataset_module,
)
from typer.testing import CliRunner

from negforge.mixers.mine import mine_records
from negforge.synth.config import MineConfig, VerifyConfig
from negforge.synth.data import load_beir, records_from_beir, records_from_flag_jsonl
from negforge.synth.errors import ConfigError, InputError
from negforge.synth.io import write_records
from negforge.synth.schema import Negative, Passage, Provenance, Status, Verdict
from negforge.synth.verifiers import verify_records
from negforge.trainer.export import ALIASES, FORMATS, export_records, resolve_format

REJECT = Verdict(status=Status.rejected, rule="reflection", reason="answers the query")
KEEP = Verdict(status=Status.kept, rule="all", reason="passed")


@pytest.fixture(scope="module")
def verified(tiny_beir):
    """Real mined + qrels-verified SciFact records, shaped like the default run's: an LLM negative kept
    and an LLM draft rejected, two positives, one record whose negatives were all rejected and one
    with none; embedding scores (query cosine, positive's cosine) on every negative."""
    beir = load_beir(tiny_beir, "train")
    recs, _ = mine_records(
        records_from_beir(beir)[:8], beir, MineConfig(sources=["bm25"], num_negatives=3), show_progress=False
    )
    recs, _ = verify_records(recs, beir, VerifyConfig(verifiers=["qrels"]), show_progress=False)
    assert all(n.kept for r in recs for n in r.negatives)
    gen = Negative(
        text="A generated passage that almost answers the claim.",
        source="llm",
        verdict=KEEP,
        provenance=Provenance(model="smollm2", template="mar_generate"),
    )
    draft = Negative(text="A draft the reflection dropped.", source="llm", verdict=REJECT)
    recs[0] = recs[0].model_copy(update={"negatives": [*recs[0].negatives, gen, draft]})
    recs[1] = recs[1].model_copy(
        update={
            "positives": [*recs[1].positives, Passage(text="Second positive.", title="T")],
            "negatives": recs[1].negatives[:1],
        }
    )
    recs[2] = recs[2].model_copy(
        update={"negatives": [n.model_copy(update={"verdict": REJECT}) for n in recs[2].negatives]}
    )
    recs[3] = recs[3].model_copy(update={"negatives": []})
    for i, r in enumerate(recs):
        for j, n in enumerate(r.negatives):
            n.scores.update(embedding=round(0.5 - 0.01 * j, 3), embedding_pos=round(0.8 - 0.01 * i, 3))
    return recs


@pytest.fixture(scope="module")
def out_recs(verified):
    """What an export must contain: records 2 and 3 left out, the rejected draft dropped."""
    return [
        r.model_copy(update={"negatives": [n for n in r.negatives if n.kept]})
        for i, r in enumerate(verified)
        if i not in (2, 3)
    ]


def _load(kind, path, tmp_path):
    from datasets import load_dataset

    return load_dataset(kind, data_files=str(path), split="train", cache_dir=str(tmp_path / "hf"))


def test_format_names():
    for name in ("flagembedding", "flag", "bge", "BGE", "flag_embedding", "FlagEmbedding"):
        assert resolve_format(name) == "flagembedding"
    for name in ("st", "sentence-transformers", "sentence_transformers", "n-tuple"):
        assert resolve_format(name) == "sentence-transformers"
    assert resolve_format("triplet") == "sentence-transformers-triplet"
    assert resolve_format("tevatron") == "tevatron" and resolve_format("tevatron-passages") == "tevatron-legacy"
    assert set(ALIASES.values()) <= set(FORMATS)
    with pytest.raises(ConfigError, match="valid: sentence-transformers, .*flagembedding.*also: .*bge"):
        resolve_format("csv")


def test_verdicts_respected_and_empty_records_skipped(verified, out_recs, tmp_path):
    rep = export_records(verified, "flag", tmp_path / "f.jsonl")
    rows = [json.loads(x) for x in (tmp_path / "f.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [r.id for r in out_recs]
    assert all(r["neg"] for r in rows)
    assert "A draft the reflection dropped." not in rows[0]["neg"] and rows[0]["neg"][-1].startswith("A generated")
    assert (rep.records_in, rep.records_written, rep.skipped_no_negative) == (8, 6, 2)
    assert rep.rejected_dropped == 1 + len(verified[2].negatives)
    assert rep.negatives_written == sum(len(r.negatives) for r in out_recs) and rep.unverified_written == 0
    assert "2 records with no kept negative left out" in rep.summary()
    # unverified: an error naming the fix, unless asked for
    raw = [
        r.model_copy(update={"negatives": [n.model_copy(update={"verdict": None}) for n in r.negatives]})
        for r in verified
    ]
    with pytest.raises(InputError, match="never verified .*run `negforge verify` first, or pass --unverified"):
        export_records(raw, "flag", tmp_path / "u.jsonl")
    rep = export_records(raw, "flag", tmp_path / "u.jsonl", allow_unverified=True)
    assert rep.records_written == 7 and rep.unverified_written == rep.negatives_written  # record 3 has none
    mixed = [verified[0].model_copy(update={"negatives": [*verified[0].negatives, raw[1].negatives[0]]})]
    with pytest.raises(InputError, match="1 negatives in 1 records were never verified"):
        export_records(mixed, "st", tmp_path / "m")
    with pytest.raises(InputError, match="none of the 2 records has a kept negative"):
        export_records(verified[2:4], "st", tmp_path / "m")


def test_flagembedding_read_by_flagembeddings_own_dataset(verified, out_recs, tmp_path, monkeypatch):
    if flagembedding_dataset_module() is None:
        pytest.skip("FlagEmbedding is not installed (scripts/setup.sh installs it); the copy test covers the format")
    path = tmp_path / "train.flag.jsonl"
    rep = export_records(verified, "flagembedding", path)
    assert rep.score_key == "embedding"
    random.seed(0)
    items = flag_real_items(
        path, tmp_path / "c1", train_group_size=8, knowledge_distillation=True, monkeypatch=monkeypatch
    )
    assert len(items) == len(out_recs)
    for (query, passages, teacher), r in zip(items, out_recs):
        assert query == r.query and passages[0] in [p.full_text for p in r.positives]
        assert len(passages) == 8 and set(passages[1:]) <= {n.full_text for n in r.negatives}
        by_text = {n.full_text: n.scores["embedding"] for n in r.negatives}
        assert teacher == [r.negatives[0].scores["embedding_pos"], *(by_text[p] for p in passages[1:])]
    # the copy used where FlagEmbedding is missing reads the same, and both fail where our old export crashed
    random.seed(1)
    real = flag_real_items(path, tmp_path / "c2", 4, True, monkeypatch)
    copy = flag_copy_items(path, tmp_path / "c3", 4, True, seed=1)
    assert real == copy
    empty = {"query": "q", "pos": ["p"], "neg": []}
    with pytest.raises(ZeroDivisionError):
        flag_getitem_copy(empty, 8, False)
    bad = tmp_path / "old.jsonl"
    bad.write_text(json.dumps(empty) + "\n")
    with pytest.raises(ZeroDivisionError):
        flag_real_items(bad, tmp_path / "c4", 8, False, monkeypatch)


def test_flagembedding_copy_loader_and_round_trip(verified, out_recs, tmp_path):
    path = tmp_path / "train.flag.jsonl"
    export_records(verified, "bge", path, scores=None)
    ds = _load("json", path, tmp_path)
    assert set(ds.column_names) == {"query", "pos", "neg", "id"}  # no scores asked for
    with pytest.raises(ValueError, match="pos_scores"):
        flag_copy_items(path, tmp_path / "c", 8, knowledge_distillation=True)
    items = flag_copy_items(path, tmp_path / "c", 8, knowledge_distillation=False)
    assert [q for q, _, _ in items] == [r.query for r in out_recs] and all(len(p) == 8 for _, p, _ in items)
    back = records_from_flag_jsonl(path)
    assert [[n.full_text for n in r.negatives] for r in back] == [[n.full_text for n in r.negatives] for r in out_recs]


def test_tevatron_id_format_read_by_tevatrons_train_dataset(verified, out_recs, tmp_path):
    rep = export_records(verified, "tevatron", tmp_path / "tev")
    train, corpus = tmp_path / "tev" / "train.jsonl", tmp_path / "tev" / "corpus.jsonl"
    assert rep.files == [str(train), str(corpus)]
    rows = [json.loads(x) for x in train.read_text().splitlines()]
    assert set(rows[0]) == {"query_id", "query_text", "positive_document_ids", "negative_document_ids"}
    assert rows[0]["positive_document_ids"] == [p.doc_id for p in out_recs[0].positives]
    docs = [json.loads(x) for x in corpus.read_text().splitlines()]
    assert len({d["docid"] for d in docs}) == len(docs)
    for group_size in (2, 8):  # 8: fewer negatives than 7 everywhere, the random.choices path
        ds = TevatronTrainDataset(train, tmp_path / "hf", group_size, corpus_path=corpus)
        for i, r in enumerate(out_recs):
            query, texts, _ = ds[i]
            assert query == r.query and texts[0] in [p.full_text for p in r.positives]
            assert len(texts) == group_size and set(texts[1:]) <= {n.full_text for n in r.negatives}
    gen = rows[0]["negative_document_ids"][-1]
    assert gen.startswith("h") and len(gen) == 17  # the generated passage: a content hash
    # the step that crashed on our old export: random.choices on an empty list
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({**rows[0], "negative_document_ids": []}) + "\n")
    with pytest.raises(IndexError):
        TevatronTrainDataset(empty, tmp_path / "hf2", 8, corpus_path=corpus)[0]
    with pytest.raises(InputError, match="writes a folder"):
        export_records(verified, "tevatron", train)


def test_tevatron_legacy_with_scores(verified, out_recs, tmp_path):
    path = tmp_path / "tev.jsonl"
    export_records(verified, "tevatron-legacy", path)
    ds = TevatronTrainDataset(path, tmp_path / "hf", 4)
    for i, r in enumerate(out_recs):
        query, texts, scores = ds[i]
        assert query == r.query and len(texts) == 4
        assert scores[0] == r.negatives[0].scores["embedding_pos"]
        by_text = {n.full_text: n.scores["embedding"] for n in r.negatives}
        assert [by_text[t.strip()] for t in texts[1:]] == scores[1:]
    row = json.loads(path.read_text().splitlines()[0])
    assert row["positive_passages"][0]["docid"] == out_recs[0].positives[0].doc_id


def test_sentence_transformers_layouts(verified, out_recs, tmp_path):
    from datasets import load_from_disk

    ds = load_from_disk(export_records(verified, "st", tmp_path / "st").path)
    assert ds.column_names == ["anchor", "positive", *(f"negative_{i}" for i in range(1, 5)), "scores"]
    assert len(ds) == sum(len(r.positives) for r in out_recs) == 7
    row, r0 = ds[0], out_recs[0]
    assert [row[f"negative_{i}"] for i in range(1, 5)] == [n.full_text for n in r0.negatives]
    assert row["scores"] == [r0.negatives[0].scores["embedding_pos"], *(n.scores["embedding"] for n in r0.negatives)]
    r1 = [x for x in ds if x["anchor"] == out_recs[1].query]  # two positives, one negative repeated
    assert [x["positive"] for x in r1] == [p.full_text for p in out_recs[1].positives]
    assert all({x[f"negative_{i}"] for i in range(1, 5)} == {out_recs[1].negatives[0].full_text} for x in r1)
    again = load_from_disk(export_records(verified, "st", tmp_path / "st", num_negatives=2, scores="none").path)
    assert again.column_names == ["anchor", "positive", "negative_1", "negative_2"]

    tri = load_from_disk(export_records(verified, "triplet", tmp_path / "tri").path)
    assert tri.column_names == ["anchor", "positive", "negative", "scores"]
    assert len(tri) == sum(len(r.positives) * len(r.negatives) for r in out_recs)
    pair = load_from_disk(export_records(verified, "labeled-pair", tmp_path / "pair", scores=None).path)
    assert pair.column_names == ["anchor", "positive", "label"]
    assert sum(pair["label"]) == sum(len(r.positives) for r in out_recs)
    assert len(pair) == sum(len(r.positives) + len(r.negatives) for r in out_recs)
    lst = load_from_disk(export_records(verified, "labeled-list", tmp_path / "list").path)
    assert lst.column_names == ["anchor", "positive", "scores"]
    assert [len(x) for x in lst["positive"]] == [len(x) for x in lst["scores"]]
    (tmp_path / "notds").mkdir()
    (tmp_path / "notds" / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not a saved dataset"):
        export_records(verified, "st", tmp_path / "notds")
    assert (tmp_path / "notds" / "keep.txt").is_file()


def test_parquet(verified, out_recs, tmp_path):
    ds = _load("parquet", export_records(verified, "parquet", tmp_path / "mix.parquet").path, tmp_path)
    assert ds.column_names == [
        "id",
        "query",
        "positive",
        "negative",
        "negative_source",
        "negative_doc_id",
        "positive_score",
        "negative_score",
    ]
    assert ds["id"] == [r.id for r in out_recs]
    assert ds[0]["negative_source"] == ["bm25"] * 3 + ["llm"] and ds[0]["negative_doc_id"][-1] is None
    assert ds[1]["positive"] == [p.full_text for p in out_recs[1].positives]
    with pytest.raises(InputError, match="without scores\\['cross_encoder'\\]"):
        export_records(verified, "parquet", tmp_path / "x.parquet", scores="cross_encoder")


def test_cli(verified, tmp_path):
    from negforge.synth.cli import app

    src = tmp_path / "verified.jsonl"
    write_records(src, verified)
    res = CliRunner().invoke(app, ["export", "-i", str(src), "-f", "flagembedding", "-o", str(tmp_path / "f.jsonl")])
    assert res.exit_code == 0, res.output
    assert "wrote 6 of 8 records" in res.output and "2 records with no kept negative left out" in res.output
    assert len((tmp_path / "f.jsonl").read_text().splitlines()) == 6
    raw = tmp_path / "mined.jsonl"
    write_records(
        raw,
        [
            r.model_copy(update={"negatives": [n.model_copy(update={"verdict": None}) for n in r.negatives]})
            for r in verified
        ],
    )
    res = CliRunner().invoke(app, ["export", "-i", str(raw), "-f", "tevatron", "-o", str(tmp_path / "t")])
    assert res.exit_code == 2 and "never verified" in res.output
    res = CliRunner().invoke(
        app, ["export", "-i", str(raw), "-f", "tevatron", "-o", str(tmp_path / "t"), "--unverified", "-q"]
    )
    assert res.exit_code == 0 and (tmp_path / "t" / "corpus.jsonl").is_file()
    # a FlagEmbedding file converts to Tevatron (its negatives were never verified here)
    res = CliRunner().invoke(
        app, ["export", "-i", str(tmp_path / "f.jsonl"), "-f", "tevatron", "-o", str(tmp_path / "conv"), "--unverified"]
    )
    assert res.exit_code == 0 and "wrote 6 of 6 records" in res.output, res.output
    res = CliRunner().invoke(app, ["export", "-i", str(src), "-f", "csv", "-o", str(tmp_path / "c")])
    assert res.exit_code == 2 and "valid:" in res.output


def _train_one_step(model, ds, loss, tmp_path):
    import torch
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=1,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    out = SentenceTransformerTrainer(model=model, args=args, train_dataset=ds, loss=loss).train()
    assert out.global_step == 1 and torch.isfinite(torch.tensor(out.training_loss))
    return sum(not torch.equal(before[k], v) for k, v in model.named_parameters())


@pytest.mark.slow
def test_sentence_transformers_training_steps_on_the_exports(verified, tmp_path, encoder_path):
    """MultipleNegativesRankingLoss on the n-tuple; MarginMSELoss on its scores (the trainer's own collator)."""
    from datasets import load_from_disk
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MarginMSELoss, MultipleNegativesRankingLoss

    model = SentenceTransformer(encoder_path)
    model.max_seq_length = 64
    ds = load_from_disk(export_records(verified, "st", tmp_path / "st", num_negatives=2, scores=None).path)
    assert _train_one_step(model, ds, MultipleNegativesRankingLoss(model), tmp_path) > 0
    scored = load_from_disk(export_records(verified, "st", tmp_path / "sc", num_negatives=2).path)
    assert _train_one_step(model, scored, MarginMSELoss(model), tmp_path) > 0


@pytest.mark.slow
def test_column_layouts_match_sentence_transformers_mine_hard_negatives(verified, tmp_path, encoder_path):
    """Our sentence-transformers layouts have the columns util.mine_hard_negatives writes for the same layout."""
    from datasets import Dataset, load_from_disk
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    model = SentenceTransformer(encoder_path)
    pairs = Dataset.from_dict(
        {"anchor": [r.query for r in verified], "positive": [r.positives[0].full_text for r in verified]}
    )
    corpus = [n.full_text for r in verified for n in r.negatives] + list(pairs["positive"])
    for st_fmt, ours in (
        ("n-tuple", "st"),
        ("triplet", "triplet"),
        ("labeled-pair", "labeled-pair"),
        ("labeled-list", "labeled-list"),
    ):
        for with_scores in (False, True):
            theirs = mine_hard_negatives(
                pairs,
                model,
                corpus=corpus,
                num_negatives=2,
                output_format=st_fmt,
                output_scores=with_scores,
                verbose=False,
                batch_size=64,
                cache_folder=str(tmp_path / "emb"),
            )
            mine = load_from_disk(
                export_records(
                    verified,
                    ours,
                    tmp_path / f"{ours}{with_scores}",
                    num_negatives=2,
                    scores="embedding" if with_scores else None,
                ).path
            )
            assert mine.column_names == theirs.column_names, (st_fmt, with_scores)
