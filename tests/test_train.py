"""The trainer on real SciFact records with real BM25 negatives: every loss lowers the loss on the
data it saw and changes the weights; columns, checkpoints/resume, validation, the CLI, the report,
and two processes under torchrun (gloo on CPU)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from negforge.synth.cli import app
from negforge.synth.config import TrainConfig
from negforge.synth.data import load_beir, records_from_beir
from negforge.synth.errors import ConfigError
from negforge.synth.io import write_records
from negforge.synth.schema import Negative, Passage, Provenance, Record, Source, Status, Verdict
from negforge.trainer.train import build_columns, dataset_loss, load_result, train_model

ROOT = Path(__file__).resolve().parents[1]


def bm25_records(data, records: list[Record], k: int = 2, rejected: int = 1) -> list[Record]:
    """Each record with its top-``k`` BM25 non-positive documents as kept negatives (bm25s over the
    corpus) and the next ``rejected`` as rejected ones."""
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(data.corpus.full_texts(), stopwords="en", show_progress=False), show_progress=False)
    hits, scores = retriever.retrieve(
        bm25s.tokenize([r.query for r in records], stopwords="en", show_progress=False),
        k=k + rejected + 8,
        show_progress=False,
    )
    out = []
    for r, row, srow in zip(records, hits, scores):
        negs = []
        for rank, (i, s) in enumerate(zip(row, srow), start=1):
            doc = data.corpus.passage(data.corpus.ids[int(i)])
            if doc.doc_id in r.positive_ids():
                continue
            status = Status.kept if len(negs) < k else Status.rejected
            negs.append(
                Negative(
                    **doc.model_dump(),
                    source=Source.bm25,
                    provenance=Provenance(rank=rank),
                    scores={"bm25": float(s)},
                    verdict=Verdict(status=status, rule="test", reason="BM25"),
                )
            )
            if len(negs) == k + rejected:
                break
        out.append(r.model_copy(update={"negatives": negs}))
    return out


@pytest.fixture(scope="module")
def mixed_records(scifact_dir) -> list[Record]:
    """8 SciFact train queries with 2+ positives and 8 with one, each with BM25 negatives."""
    data = load_beir(scifact_dir, "train")
    records = records_from_beir(data)
    multi = [r for r in records if len(r.positives) > 1][:8]
    single = [r for r in records if len(r.positives) == 1][:8]
    return bm25_records(data, [x for pair in zip(multi, single) for x in pair])


@pytest.fixture(scope="module")
def tiny_records(tiny_beir) -> list[Record]:
    data = load_beir(tiny_beir, "train")
    return bm25_records(data, records_from_beir(data))


@pytest.fixture(scope="module")
def base_model(encoder_path):
    from sentence_transformers import SentenceTransformer

    m = SentenceTransformer(encoder_path, device="cpu")
    m.max_seq_length = 64
    return m


def _cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(
        batch_size=8,
        max_seq_length=64,
        lr=1e-4,
        warmup_ratio=0.0,
        logging_steps=1,
        num_hard_negatives=1,
        output_dir=str(tmp_path / "model"),
    )
    return TrainConfig(**{**base, **kw})


def _neg(text: str, status: Status | None = Status.kept) -> Negative:
    verdict = Verdict(status=status, rule="t", reason="t") if status else None
    return Negative(text=text, source=Source.bm25, verdict=verdict)


def test_build_columns_layouts_and_counts():
    recs = [
        Record(
            id="a",
            query="qa",
            positives=[Passage(text="pa1"), Passage(text="pa2"), Passage(text="pa3")],
            negatives=[_neg("na1"), _neg("na2"), _neg("na3"), _neg("bad", Status.rejected)],
        ),
        Record(id="b", query="qb", positives=[Passage(text="pb1")], negatives=[_neg("nb1", None)]),
        Record(id="c", query="qc", positives=[Passage(text="pc1")], negatives=[_neg("nc", Status.rejected)]),
    ]
    cfg = TrainConfig(num_hard_negatives=2, max_positives=2, seed=1)
    cols, st = build_columns(recs, cfg, multi_positive=True)
    assert list(cols) == ["anchor", "positive_1", "positive_2", "negative_1", "negative_2", "label"]
    assert cols["anchor"] == ["qa", "qb"] and cols["label"] == [[1, 1], [1, 0]]
    assert cols["positive_2"] == ["pa2", "pb1"]  # an unused slot repeats positive_1, masked by label
    assert cols["negative_1"][1] == cols["negative_2"][1] == "nb1"  # fewer negatives than n: repeated
    assert set(cols["negative_1"][:1] + cols["negative_2"][:1]) < {"na1", "na2", "na3"}  # more: drawn
    assert st.to_dict() == {
        "records": 3,
        "examples": 2,
        "dropped_no_negatives": 1,
        "filled_negatives": 1,
        "sampled_negatives": 1,
        "rejected_negatives_skipped": 2,
        "truncated_positives": 1,
    }
    again, _ = build_columns(recs, cfg, multi_positive=True)
    assert again == cols  # the draw is seeded by (seed, record id)

    single, st = build_columns(recs, cfg.model_copy(update={"num_hard_negatives": 0}))
    assert list(single) == ["anchor", "positive"]
    assert single["anchor"] == ["qa", "qa", "qb", "qc"] and st.dropped_no_negatives == 0


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["mnrl", "cached_mnrl", "jointlh", "summarglh", "lsepair", "rand1lh"])
def test_each_loss_lowers_its_loss_and_changes_weights(loss, mixed_records, base_model, tmp_path):
    from sentence_transformers import SentenceTransformer

    from negforge.trainer.losses import build_loss, is_multi_positive

    cfg = _cfg(tmp_path, loss=loss, max_steps=3, mini_batch_size=4)
    cols, st = build_columns(mixed_records, cfg, is_multi_positive(loss))
    assert st.examples == (16 if is_multi_positive(loss) else sum(len(r.positives) for r in mixed_records))
    before = dataset_loss(base_model, cols, build_loss(loss, base_model, scale=cfg.scale), batch_size=8)

    res = train_model(mixed_records, cfg, show_progress=False)
    assert res.steps == 3 and [x["step"] for x in res.losses] == [1, 2, 3]
    assert all(x["loss"] > 0 for x in res.losses)
    trained = SentenceTransformer(str(res.model_path), device="cpu")
    trained.max_seq_length = 64
    after = dataset_loss(trained, cols, build_loss(loss, trained, scale=cfg.scale), batch_size=8)
    assert after < before, f"{loss}: loss on the training data {before:.4f} -> {after:.4f}"
    w0 = dict(base_model.named_parameters())
    changed = [n for n, w in trained.named_parameters() if not (w - w0[n]).abs().max() < 1e-7]
    assert len(changed) > 50, f"only {len(changed)} weight tensors changed"
    assert load_result(res.model_path)["losses"] == res.losses


@pytest.mark.slow
def test_checkpoints_and_resume(tiny_records, tmp_path):
    cfg = _cfg(tmp_path, max_steps=2, save_steps=1)
    first = train_model(tiny_records, cfg, show_progress=False)
    ckpts = sorted(p.name for p in (tmp_path / "model" / "checkpoints").iterdir())
    assert ckpts == ["checkpoint-1", "checkpoint-2"]
    resumed = train_model(
        tiny_records, cfg.model_copy(update={"max_steps": 3, "resume_from": "latest"}), show_progress=False
    )
    assert resumed.steps == 3
    assert resumed.losses[:2] == first.losses  # steps 1-2 restored from the checkpoint, not retrained
    assert resumed.losses[2]["step"] == 3
    with pytest.raises(ConfigError, match="not a checkpoint folder"):
        train_model(tiny_records, cfg.model_copy(update={"resume_from": str(tmp_path)}), show_progress=False)
    with pytest.raises(ConfigError, match="no checkpoint under"):
        train_model(
            tiny_records,
            cfg.model_copy(update={"resume_from": "latest", "output_dir": str(tmp_path / "x")}),
            show_progress=False,
        )


@pytest.mark.slow
def test_cli_train_with_validation_then_eval_and_report(tiny_records, tiny_beir, tmp_path):
    recs = tmp_path / "records.jsonl"
    write_records(recs, tiny_records[:12])
    out, cache = tmp_path / "model", tmp_path / "cache"
    runner = CliRunner()
    r = runner.invoke(
        app,
        [
            "train",
            "--input",
            str(recs),
            "--output",
            str(out),
            "--loss",
            "lsepair",
            "-q",
            "--eval-data",
            str(tiny_beir),
            "--set",
            "epochs=2",
            "--set",
            "batch_size=6",
            "--set",
            "max_seq_length=64",
            "--set",
            "logging_steps=1",
            "--set",
            "eval_corpus_size=60",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "with lsepair: 4 steps on 12 examples" in r.output and "epoch 2.0: ndcg@10" in r.output
    res = load_result(out)
    assert [v["epoch"] for v in res["validation"]] == [0.0, 1.0, 2.0]  # before training, then every epoch
    assert all(0 <= v["ndcg@10"] <= 1 and "recall@100" in v and "mrr@10" in v for v in res["validation"])

    sets = ["--set", "max_seq_length=64", "--set", f"cache_dir={cache}"]
    r = runner.invoke(app, ["eval", "--model", str(out), "--data", str(tiny_beir), "-q", *sets])
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app, ["report", "--model", str(out), "--records", str(recs), "--data", str(tiny_beir), "-q", *sets]
    )
    assert r.exit_code == 0, r.output
    md = (out / "report" / "report.md").read_text()
    assert (out / "report" / "training.png").stat().st_size > 5000
    assert (out / "report" / "cosines.png").stat().st_size > 5000
    assert "| fine-tuned (test) |" in md and "## Validation per epoch" in md
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert {"positive", "bm25"} <= set(rows) and any(g.endswith(" rejected") for g in rows)
    assert rows["positive"].split("|")[3] != rows["positive"].split("|")[4]  # base vs fine-tuned cosines differ


def test_cli_train_errors_name_what_to_change(tiny_records, tmp_path):
    recs = tmp_path / "records.jsonl"
    write_records(recs, [r.model_copy(update={"negatives": []}) for r in tiny_records[:4]])
    runner = CliRunner()
    r = runner.invoke(app, ["train", "--input", str(recs), "--output", str(tmp_path / "m"), "--loss", "infonce"])
    assert r.exit_code == 2 and "unknown loss 'infonce'; valid: cached_mnrl" in r.output
    r = runner.invoke(app, ["train", "--input", str(recs), "--output", str(tmp_path / "m")])
    assert r.exit_code == 2 and "no training examples" in r.output and "dropped_no_negatives': 4" in r.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(tiny_records, tmp_path):
    recs = tmp_path / "records.jsonl"
    write_records(recs, tiny_records)
    out = tmp_path / "model"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "negforge.synth.cli",
        "train",
        "--input",
        str(recs),
        "--output",
        str(out),
        "-q",
        "--set",
        "max_steps=2",
        "--set",
        "batch_size=4",
        "--set",
        "max_seq_length=32",
        "--set",
        "logging_steps=1",
    ]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "2 steps" in p.stdout and "(cpu x2)" in p.stdout
    res = json.loads((out / "train_result.json").read_text())
    assert res["world_size"] == 2 and res["steps"] == 2 and (out / "model.safetensors").is_file()


def test_metrics_from_run_against_hand_computed_values():
    import math

    from negforge.mixers.dense import exact_search
    from negforge.trainer.evaluate import metrics_from_run, per_query_metrics

    qrels = {"q1": {"d1": 1, "d2": 1}, "q2": {"d3": 1}, "q3": {"d4": 1}, "q4": {"d9": 0}}
    run = {"q1": {"d5": 0.9, "d1": 0.8, "d6": 0.7, "d2": 0.1}, "q2": {"d3": 0.5}}  # q3 retrieves nothing
    per_q = per_query_metrics(qrels, run)
    assert set(per_q) == {"q1", "q2", "q3"}  # q4 has no relevant document: not a query to evaluate
    ideal = 1 + 1 / math.log2(3)
    assert per_q["q1"]["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal)
    assert per_q["q1"]["mrr@10"] == pytest.approx(0.5) and per_q["q1"]["recall@10"] == 1.0
    assert per_q["q2"] == {"ndcg@10": 1.0, "recall@10": 1.0, "recall@100": 1.0, "mrr@10": 1.0}
    assert per_q["q3"] == {"ndcg@10": 0.0, "recall@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    m = metrics_from_run(qrels, run)
    assert m["mrr@10"] == pytest.approx(1.5 / 3) and m["recall@100"] == pytest.approx(2 / 3)

    rng = __import__("numpy").random.default_rng(0)
    q, d = rng.normal(size=(5, 8)).astype("float32"), rng.normal(size=(300, 8)).astype("float32")
    s, i = exact_search(d, q, k=7)  # the one exact top-k (faiss) equals a full sort
    full = q @ d.T
    assert (i == (-full).argsort(axis=1)[:, :7]).all() and s == pytest.approx(full[[[r] for r in range(5)], i])
