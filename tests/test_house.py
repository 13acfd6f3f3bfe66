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
    old_mine = random.Random(int.from_bytes(hashlib.sha256("7\x00q1\x00bm25".encode()).digest()[:8], "big"))
    assert seeded_rng(7, "q1", "bm25").random() == old_mine.random()
    old_attr = int.from_bytes(hashlib.sha256("0\x1fq1\x1f2".encode("utf-8")).digest()[:8], "big") >> 1
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
    assert validation_message(e.value) == "a: missing; b.0: Input should be a valid integer, unable to parse " \
                                          "string as an integer"
    with pytest.raises(ValidationError) as e:
        M.model_validate([])
    assert validation_message(e.value, root="record").startswith("record: ")
