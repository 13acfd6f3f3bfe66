"""The shared pieces every stage leans on: the stage call shape, reports, and the one-home helpers."""

from __future__ import annotations

import hashlib
import json
import random

import pytest
from pydantic import BaseModel, ValidationError

from negforge.mixers.hybrid import mix_records
from negforge.mixers.mine import MineReport, MinerStats, mine_records
from negforge.synth.config import MineConfig, MixConfig, VerifyConfig
from negforge.synth.data import Corpus, Dataset
from negforge.synth.errors import InputError, validation_message
from negforge.synth.fn_report import fn_report
from negforge.synth.schema import Passage, Record, content_doc_id, join_title_text
from negforge.synth.seeding import seeded_rng, stable_seed
from negforge.synth.verifiers import verify_records


def _record() -> Record:
    return Record(id="q1", query="what is x", positives=[Passage(title="On X", text="X is a thing.", doc_id="d1")])


def test_old_argument_orders_fail_with_the_new_call_shown():
    corpus = Corpus(["d1", "d2"], ["", ""], ["X is a thing.", "Y is another."])
    with pytest.raises(TypeError, match=r"mine_records\(records, dataset, cfg\): dataset must be"):
        mine_records([_record()], corpus, MineConfig())  # the corpus where the dataset goes
    with pytest.raises(TypeError, match=r"verify_records\(records, dataset, cfg\): cfg must be a VerifyConfig"):
        verify_records([_record()], VerifyConfig(), {"q1": {"d1": 1}})  # the pre-Dataset order
    with pytest.raises(TypeError, match="cfg must be a MixConfig"):
        mix_records([_record()], MixConfig(), {"k": 2})
    with pytest.raises(InputError, match="mine needs a corpus"):
        mine_records([_record()], Dataset(), MineConfig())
    with pytest.raises(InputError, match="fn-report needs qrels"):
        fn_report([_record()], None, VerifyConfig(verifiers=["qrels"]))


def test_reports_dump_json_ready_and_print_one_way(tmp_path):
    rep = MineReport(records=2, miners={"bm25": MinerStats(queries=2, mined=3, wall_s=1.23456)})
    d = rep.to_dict()
    assert d["miners"]["bm25"]["mined"] == 3 and d["miners"]["bm25"]["wall_s"] == 1.23  # seconds dumped rounded
    rep.write_json(tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps(d))
    assert str(rep) == rep.table() and "mined" in rep.table()
    _, mixed = mix_records([_record()], None, MixConfig(k=2, ratios={"bm25": 1.0}, require_verified=False))
    assert mixed.to_dict()["epochs"][0]["short"] == 1  # int epoch keys stay ints in Python


def test_seeded_draws_are_the_ones_written_before_the_helpers_moved():
    # The formulas the miner, the mixer and the attribute sampler used before they shared one module:
    # a change here would change every seeded draw, and so every output written so far.
    old_mine = random.Random(int.from_bytes(hashlib.sha256(b"7\x00q1\x00bm25").digest()[:8], "big"))
    assert seeded_rng(7, "q1", "bm25").random() == old_mine.random()
    old_attr = int.from_bytes(hashlib.sha256(b"0\x1fq1\x1f2").digest()[:8], "big") >> 1
    assert stable_seed(0, "q1", 2) == old_attr
    assert seeded_rng(1, "a").random() != seeded_rng(1, "b").random()


def test_text_helpers():
    assert join_title_text("On X", "X is a thing.") == "On X X is a thing."
    assert join_title_text("", " X ") == " X " and join_title_text(" ", "X") == "X"
    assert content_doc_id("X is a thing.") == "h" + hashlib.sha1(b"X is a thing.").hexdigest()[:16]
    assert _record().positive_texts() == {"on x x is a thing", "x is a thing"}


def test_validation_message_is_one_line_with_locations():
    class M(BaseModel):
        a: int
        b: list[int]

    with pytest.raises(ValidationError) as e:
        M.model_validate({"b": ["x"]})
    assert (
        validation_message(e.value) == "a: missing; b.0: Input should be a valid integer, unable to parse "
        "string as an integer"
    )
    with pytest.raises(ValidationError) as e:
        M.model_validate([])
    assert validation_message(e.value, root="record").startswith("record: ")


def test_stages_chain_on_the_generic_fixture(generic_beir, tmp_path):
    """mine (BM25) -> verify (qrels) -> fn-report -> mix, each called the same way, on tests/data: no model."""
    from negforge.synth.data import load_beir, records_from_beir
    from negforge.synth.reports import Report

    data = load_beir(generic_beir, "train")
    records = records_from_beir(data)
    assert len(records) == 6 and {len(r.positives) for r in records} == {1, 2}  # grade 0 is not a positive
    cfg = MineConfig(sources=["bm25"], num_negatives=3, range_max=10, encoder={"cache_dir": str(tmp_path)})
    mined, mine_rep = mine_records(records, data, cfg, show_progress=False)
    verified, ver_rep = verify_records(mined, data, VerifyConfig(verifiers=["qrels"]), show_progress=False)
    same, fn_rep = fn_report(verified, data, VerifyConfig(verifiers=["qrels"]), show_progress=False)
    mixed, mix_rep = mix_records(verified, data, MixConfig(k=2, ratios={"bm25": 1.0}))
    assert all(isinstance(r, Report) for r in (mine_rep, ver_rep, fn_rep, mix_rep)) and same is verified
    assert mine_rep.miners["bm25"].mined == sum(len(r.negatives) for r in mined) > 0
    q6 = next(r for r in mined if r.id == "q6")
    assert "d17" in {n.doc_id for n in q6.negatives}  # judged 0: a fair negative, found by BM25 ("compost")
    assert all(n.doc_id not in r.positive_ids() for r in mined for n in r.negatives)
    assert ver_rep.checked == mine_rep.miners["bm25"].mined and fn_rep.sources["all"]["certain_fn"] == 0
    # BM25 on 30 short passages finds few overlapping terms for some queries: each gets what there is, up to k
    kept = {r.id: len(r.negatives) for r in verified}
    assert [len(r.negatives) for r in mixed] == [min(2, kept[r.id]) for r in mixed]
    assert mix_rep.epochs[0].short == sum(n < 2 for n in kept.values())
    for rep in (mine_rep, ver_rep, fn_rep, mix_rep):
        rep.write_json(tmp_path / "r.json")
        assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps(rep.to_dict()))


def test_cli_chain_on_the_generic_fixture(generic_beir, tmp_path):
    """The same chain through the real CLI entry point, ending in a trainer file."""
    from typer.testing import CliRunner

    from negforge.synth.cli import app
    from negforge.synth.io import read_records

    run = CliRunner()
    steps = [
        [
            "mine",
            "-i",
            str(generic_beir),
            "-o",
            str(tmp_path / "m.jsonl"),
            "--sources",
            "bm25",
            "-q",
            "--set",
            "num_negatives=3",
            "--set",
            f"encoder.cache_dir={tmp_path}",
        ],
        [
            "verify",
            "-i",
            str(tmp_path / "m.jsonl"),
            "-d",
            str(generic_beir),
            "-o",
            str(tmp_path / "v.jsonl"),
            "--verifiers",
            "qrels",
            "-q",
        ],
        [
            "mix",
            "-i",
            str(tmp_path / "v.jsonl"),
            "-o",
            str(tmp_path / "x.jsonl"),
            "--k",
            "2",
            "-q",
            "--set",
            "ratios={bm25: 1.0}",
        ],
        ["export", "-i", str(tmp_path / "x.jsonl"), "-f", "flag", "-o", str(tmp_path / "train.jsonl")],
    ]
    for args in steps:
        res = run.invoke(app, args)
        assert res.exit_code == 0, f"{args[0]}: {res.output}"
    mined = read_records(tmp_path / "m.jsonl")
    assert json.loads((tmp_path / "v.jsonl.report.json").read_text())["checked"] == sum(len(r.negatives) for r in mined)
    mixed = read_records(tmp_path / "x.jsonl")
    assert [len(r.negatives) for r in mixed] == [min(2, len(r.negatives)) for r in mined]
    rows = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(1 <= len(r["neg"]) <= 2 and r["pos"] for r in rows)


def test_text_rng_is_the_string_seeded_random_the_trainer_used():
    from negforge.synth.seeding import text_rng

    assert text_rng(0, 2, "q1").random() == random.Random("0:2:q1").random()
