"""Multi-positive examples and the query-aware batch sampler, on real NFCorpus train data (many
relevant documents per query, documents shared between queries)."""

from __future__ import annotations

from pathlib import Path

import pytest

from negforge.synth.config import TrainConfig
from negforge.synth.data import load_beir, records_from_beir
from negforge.synth.schema import Passage, Record
from negforge.trainer.positives import select_positives
from negforge.trainer.train import build_rows

NFCORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "nfcorpus"


@pytest.fixture(scope="module")
def nf_records() -> list[Record]:
    if not (NFCORPUS / "corpus.jsonl").is_file():
        pytest.fail(f"NFCorpus not found at {NFCORPUS}: the tests need ../shared/data/nfcorpus")
    return records_from_beir(load_beir(NFCORPUS, "train"))[:400]


def test_select_positives_rules():
    r = Record(
        id="q",
        query="q",
        positives=[Passage(text=f"p{i}", doc_id=f"d{i}", grade=g) for i, g in enumerate([1, 2, 1, 2, 1, 1])],
    )
    assert [p.doc_id for p in select_positives(r, 3, "first")] == ["d0", "d1", "d2"]
    assert [p.doc_id for p in select_positives(r, 3, "grade")] == ["d1", "d3", "d0"]  # grade 2 first, then order
    assert len(select_positives(r, None, "grade")) == 6
    draws = [tuple(p.doc_id for p in select_positives(r, 2, "sample", seed=0, epoch=e)) for e in range(6)]
    assert draws[0] == tuple(p.doc_id for p in select_positives(r, 2, "sample", seed=0, epoch=0))  # seeded
    assert len(set(draws)) > 1  # other epochs, other positives
    assert all(set(d) <= {f"d{i}" for i in range(6)} and len(set(d)) == 2 for d in draws)
    with pytest.raises(ValueError, match="first, grade, sample"):
        select_positives(r, 2, "best")


def _false_in_batch_negatives(batches, cols, rows_records) -> int:
    """Rows whose batch holds a text (another row's positive or negative) that is a positive of the row's query."""
    text_cols = [c for c in cols if c != "label" and c != "anchor"]
    bad = 0
    for batch in batches:
        for i in batch:
            own = {p.full_text for p in rows_records[i].positives}
            others = {cols[c][j] for j in batch if j != i for c in text_cols}
            bad += bool(own & others)
    return bad


@pytest.mark.parametrize("multi", [False, True])
def test_query_aware_sampler_leaves_no_false_in_batch_negatives(nf_records, multi):
    from datasets import Dataset
    from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

    from negforge.trainer.sampler import QueryAwareBatchSampler

    cfg = TrainConfig(num_hard_negatives=0, max_positives=3 if multi else 1, positive_rule="first")
    cols, stats, keys = build_rows(nf_records, cfg, multi)
    # which record each row came from (single layout: one row per chosen positive, in record order)
    per = [min(cfg.max_positives, len(r.positives)) if not multi else 1 for r in nf_records]
    rows_records = [r for r, k in zip(nf_records, per) for _ in range(k)]
    assert len(rows_records) == stats.examples == len(keys)
    ds = Dataset.from_dict(cols)
    plain = list(NoDuplicatesBatchSampler(ds, batch_size=32, drop_last=False, valid_label_columns=["label"], seed=0))
    ours_s = QueryAwareBatchSampler(
        ds, batch_size=32, drop_last=False, valid_label_columns=["label"], seed=0, rows=keys
    )
    ours = list(ours_s)
    assert _false_in_batch_negatives(plain, cols, rows_records) > 0  # the problem is real on NFCorpus
    assert _false_in_batch_negatives(ours, cols, rows_records) == 0
    assert sorted(i for b in ours for i in b) == list(range(len(ds)))  # every row exactly once per epoch
    assert sum(len(b) for b in ours if len(b) == 32) >= 0.8 * len(ds) and ours_s.deferred > 0  # batches stay full
    for b in ours:  # no two rows of one query, no duplicate text in a batch
        assert len({rows_records[i].id for i in b}) == len(b)
    ours_s.set_epoch(1)
    assert list(ours_s) != ours  # reshuffled per epoch (seed + epoch)


def test_sample_rule_blocks_are_read_one_per_epoch(nf_records):
    from datasets import Dataset

    from negforge.trainer.sampler import QueryAwareBatchSampler

    cfg = TrainConfig(num_hard_negatives=0, max_positives=2, positive_rule="sample", epochs=2)
    recs = nf_records[:60]
    cols, stats, keys = build_rows(recs, cfg, multi_positive=True, blocks=2)
    assert stats.examples == 120 and [k.block for k in keys] == [0] * 60 + [1] * 60
    assert cols["positive_1"][:60] != cols["positive_1"][60:]  # epoch 1 drew other positives for some queries
    s = QueryAwareBatchSampler(Dataset.from_dict(cols), batch_size=8, drop_last=False, seed=0, rows=keys)
    assert len(s) == 8 and sorted(i for b in s for i in b) == list(range(60))
    s.set_epoch(1)
    assert sorted(i for b in s for i in b) == list(range(60, 120))


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["mnrl", "lsepair"])
def test_real_training_with_multi_positive_examples(nf_records, encoder_path, loss, tmp_path):
    from sentence_transformers import SentenceTransformer

    from negforge.trainer.losses import build_loss, is_multi_positive
    from negforge.trainer.train import build_columns, dataset_loss, train_model

    recs = [r for r in nf_records if len(r.positives) >= 4][:32]
    cfg = TrainConfig(
        encoder=encoder_path,
        loss=loss,
        batch_size=8,
        max_seq_length=64,
        lr=1e-4,
        warmup_ratio=0.0,
        logging_steps=1,
        num_hard_negatives=0,
        max_positives=3,
        positive_rule="sample",
        epochs=2,
        output_dir=str(tmp_path / "model"),
    )
    res = train_model(recs, cfg, show_progress=False)
    rows_per_epoch = 32 * (1 if is_multi_positive(loss) else 3)
    assert res.epochs == 2 and res.columns["examples"] == 2 * rows_per_epoch
    assert res.steps >= 2 * rows_per_epoch // 8
    eval_cols, _ = build_columns(recs, cfg, is_multi_positive(loss))
    before = SentenceTransformer(encoder_path, device="cpu")
    before.max_seq_length = 64
    after = SentenceTransformer(str(res.model_path), device="cpu")
    after.max_seq_length = 64
    lb = dataset_loss(before, eval_cols, build_loss(loss, before), batch_size=8)
    la = dataset_loss(after, eval_cols, build_loss(loss, after), batch_size=8)
    assert la < lb


def test_nfcorpus_config_loads_and_points_at_the_data():
    from negforge.synth.config import RunConfig, load_config

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(RunConfig, root / "configs" / "nfcorpus.yaml")
    assert (root / cfg.data / "qrels" / f"{cfg.eval.split}.tsv").is_file()
    assert cfg.train.batch_sampler == "query_aware" and cfg.train.max_steps and cfg.eval.ignore_identical_ids
