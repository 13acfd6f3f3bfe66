"""The hybrid mixer: ratios, the quota passing rule, dedup, positives, determinism, epochs, curriculum."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from typer.testing import CliRunner

from negforge.mixers.hybrid import allocate, embed_for_dedup, mix_records
from negforge.synth.config import MixConfig
from negforge.synth.errors import InputError
from negforge.synth.io import read_records, write_records
from negforge.synth.schema import Negative, Passage, Provenance, Record, Status, Verdict

KEPT = Verdict(status=Status.kept, rule="test", reason="kept for the test")
REJECTED = Verdict(status=Status.rejected, rule="test", reason="rejected for the test")
RATIOS = {"llm": 0.5, "bm25": 0.25, "dense": 0.25}


def _neg(source: str, i: int, text: str | None = None, verdict=KEPT, score: float | None = None, doc_id=None):
    scores = {"embedding": score} if score is not None else {}
    return Negative(
        text=text or f"{source} negative number {i} about topic {i * 7 % 13}",
        source=source,
        doc_id=doc_id,
        verdict=verdict,
        scores=scores,
        provenance=Provenance(rank=i + 1),
    )


def _record(rid: str, counts: dict[str, int], extra: list[Negative] = ()) -> Record:
    negs = [_neg(s, i) for s, n in counts.items() for i in range(n)]
    return Record(
        id=rid,
        query=f"query {rid}",
        positives=[Passage(text=f"The positive passage of {rid}.", doc_id=f"p{rid}")],
        negatives=[*negs, *extra],
    )


def _texts(r: Record) -> list[str]:
    return [n.text for n in r.negatives]


def test_ratios_split_k_when_every_source_has_plenty():
    recs = [_record(str(i), {"llm": 6, "bm25": 6, "dense": 6}) for i in range(10)]
    out, summary = mix_records(recs, None, MixConfig(k=4, ratios=RATIOS))
    for r in out:
        assert Counter(n.source.value for n in r.negatives) == {"llm": 2, "bm25": 1, "dense": 1}
    s = summary.to_dict()["epochs"][0]
    assert s["records"] == 10 and s["short"] == 0
    assert {n: x["chosen"] for n, x in s["sources"].items()} == {"llm": 20, "bm25": 10, "dense": 10}
    assert {n: x["quota"] for n, x in s["sources"].items()} == {"llm": 20, "bm25": 10, "dense": 10}


def test_quota_passing_rule():
    # largest remainder: 5 * (.5, .25, .25) = (2.5, 1.25, 1.25) -> 3, 1, 1
    assert allocate(5, RATIOS, {"llm": 9, "bm25": 9, "dense": 9}) == ({"llm": 3, "bm25": 1, "dense": 1},) * 2
    # llm has 1 of its 2: the missing one goes to the sources with spare, by their ratios (tie: listed order)
    quota, alloc = allocate(4, RATIOS, {"llm": 1, "bm25": 5, "dense": 5})
    assert quota == {"llm": 2, "bm25": 1, "dense": 1} and alloc == {"llm": 1, "bm25": 2, "dense": 1}
    # an empty source: its share goes to the others by their ratios (1 : 3 of 8 -> 2 : 6) ...
    three = {"llm": 0.5, "bm25": 0.125, "dense": 0.375}
    assert allocate(8, three, {"llm": 0, "bm25": 9, "dense": 9}) == (
        {"llm": 4, "bm25": 1, "dense": 3},
        {"llm": 0, "bm25": 2, "dense": 6},
    )
    # ... capped by what each has; what is still missing goes round again to whoever has spare
    assert allocate(8, three, {"llm": 0, "bm25": 9, "dense": 3})[1] == {"llm": 0, "bm25": 5, "dense": 3}
    # not enough in total: everything is taken and the record is short
    assert allocate(6, RATIOS, {"llm": 1, "bm25": 2, "dense": 0})[1] == {"llm": 1, "bm25": 2, "dense": 0}

    recs = [_record("a", {"llm": 1, "bm25": 5, "dense": 5}), _record("b", {"llm": 1, "bm25": 2})]
    out, summary = mix_records(recs, None, MixConfig(k=4, ratios=RATIOS))
    assert Counter(n.source.value for n in out[0].negatives) == {"llm": 1, "bm25": 2, "dense": 1}
    assert len(out[1].negatives) == 3
    ep = summary.epochs[0]
    assert ep.short == 1 and ep.empty == 0 and ep.sources["dense"].available == 5
    assert "1 short of k=4" in summary.table()


def test_positive_and_rejected_never_chosen():
    extra = [
        _neg("llm", 90, text="THE positive passage of r!"),  # the positive, up to case and punctuation
        _neg("bm25", 91, text="a corpus copy of the positive", doc_id="pr"),  # the positive's doc id
        _neg("dense", 92, text="a negative the verifier rejected", verdict=REJECTED),
    ]
    rec = _record("r", {"llm": 2, "bm25": 2, "dense": 2}, extra)
    texts = {n.text for n in extra}
    seen = set()
    for seed in range(15):
        for epoch in range(3):
            out, summary = mix_records([rec], None, MixConfig(k=6, ratios=RATIOS, seed=seed, epochs=3), epoch=epoch)
            assert not texts & set(_texts(out[0])) and len(out[0].negatives) == 6
            seen |= set(_texts(out[0]))
    drops = summary.epochs[2].sources
    assert drops["llm"].dropped["same_as_positive"] == 1 and drops["bm25"].dropped["same_as_positive"] == 1
    assert drops["dense"].dropped["rejected"] == 1
    assert len(seen) == 6  # k equals what is usable: all of it, every time


def test_unverified_negatives_need_verify_or_opt_out():
    rec = _record("u", {"llm": 3}, [_neg("bm25", 5, verdict=None)])
    with pytest.raises(InputError, match="negforge verify"):
        mix_records([rec], None, MixConfig(k=2, ratios=RATIOS))
    out, _ = mix_records([rec], None, MixConfig(k=4, ratios=RATIOS, require_verified=False))
    assert len(out[0].negatives) == 4 and "bm25" in {n.source.value for n in out[0].negatives}


def test_exact_duplicates_are_dropped_within_and_across_sources():
    dup = [
        _neg("llm", 50, text="Insulin   lowers blood sugar."),
        _neg("llm", 51, text="insulin lowers blood sugar"),
        _neg("bm25", 52, text="Insulin lowers blood-sugar"),
    ]
    rec = Record(id="d", query="q", positives=[Passage(text="positive")], negatives=dup + [_neg("dense", 1)])
    for seed in range(10):
        out, summary = mix_records([rec], None, MixConfig(k=4, ratios=RATIOS, seed=seed))
        norm = [t.lower().replace("-", " ").replace(".", "").split() for t in _texts(out[0])]
        assert len(out[0].negatives) == 2 and len({" ".join(n) for n in norm}) == 2
    st = summary.epochs[0].sources
    assert st["llm"].dropped["duplicate"] == 1 and st["bm25"].dropped["duplicate"] == 1


def test_cosine_near_duplicates_with_the_real_encoder(encoder_path):
    near = [
        "Aspirin reduces the risk of heart attacks in older adults.",
        "Aspirin lowers the risk of heart attacks in older adults.",
    ]
    other = ["The Amazon river carries more water than any other river.", "Quarks are bound by the strong force."]
    pos = "Daily aspirin reduces the risk of a heart attack in adults over 60."
    rec = Record(
        id="c",
        query="does aspirin prevent heart attacks",
        positives=[Passage(text=pos)],
        negatives=[_neg("llm", i, text=t) for i, t in enumerate(near)]
        + [_neg("bm25", i, text=t) for i, t in enumerate(other)],
    )
    vectors = embed_for_dedup([rec], encoder_path)
    assert float(vectors[near[0]] @ vectors[near[1]]) > 0.95 > float(vectors[near[0]] @ vectors[other[0]])
    plain, _ = mix_records([rec], None, MixConfig(k=4, ratios={"llm": 0.5, "bm25": 0.5}), vectors=vectors)
    assert len(plain[0].negatives) == 4
    cfg = MixConfig(k=4, ratios={"llm": 0.5, "bm25": 0.5}, dedup_cosine=0.95)
    out, summary = mix_records([rec], None, cfg, encoder=encoder_path)  # embeds itself
    assert len(out[0].negatives) == 3 and len(set(_texts(out[0])) & set(near)) == 1
    assert sum(x.dropped["near_duplicate"] for x in summary.epochs[0].sources.values()) == 1
    # a threshold under the negatives' similarity to the positive removes them as near_positive
    tight, s2 = mix_records([rec], None, cfg.model_copy(update={"dedup_cosine": 0.7}), vectors=vectors)
    assert s2.epochs[0].sources["llm"].dropped["near_positive"] == 2 and set(_texts(tight[0])) == set(other)


def test_deterministic_per_record_seed_and_epoch():
    recs = [_record(str(i), {"llm": 8, "bm25": 8, "dense": 8}) for i in range(20)]
    cfg = MixConfig(k=4, ratios=RATIOS, epochs=3, seed=7)
    a = [_texts(r) for r in mix_records(recs, None, cfg, epoch=1)[0]]
    assert a == [_texts(r) for r in mix_records(recs, None, cfg, epoch=1)[0]]
    # a record's draw does not depend on the other records in the batch or their order
    alone = [_texts(mix_records([r], None, cfg, epoch=1)[0][0]) for r in reversed(recs)]
    assert alone[::-1] == a
    other_seed = [_texts(r) for r in mix_records(recs, None, cfg.model_copy(update={"seed": 8}), epoch=1)[0]]
    other_epoch = [_texts(r) for r in mix_records(recs, None, cfg, epoch=2)[0]]
    assert sum(x != y for x, y in zip(a, other_seed)) >= 15
    assert sum(x != y for x, y in zip(a, other_epoch)) >= 15
    # fresh draws per epoch cover more of the pool than one epoch does
    union = [set(x) | set(y) for x, y in zip(a, other_epoch)]
    assert sum(len(u) for u in union) > sum(len(x) for x in a)
    out, _ = mix_records(recs, None, cfg, epoch=1)
    assert out[0].meta["mix"] == {"epoch": 1, "seed": 7}


def test_curriculum_grows_the_hardest_share():
    def rec(i):
        negs = [_neg("llm", j, score=j / 10) for j in range(10)]  # j = 9 is the hardest
        return Record(id=str(i), query="q", positives=[Passage(text="p")], negatives=negs)

    recs = [rec(i) for i in range(30)]
    hardest = {f"llm negative number {j} about topic {j * 7 % 13}" for j in (9, 8, 7, 6)}
    cfg = MixConfig(k=4, ratios={"llm": 1.0}, epochs=4, curriculum=True)
    hard_counts = []
    for epoch in range(4):
        out, _ = mix_records(recs, None, cfg, epoch=epoch)
        per = [len(set(_texts(r)) & hardest) for r in out]
        assert min(per) >= epoch + 1  # at least round(4 * (epoch + 1) / 4) of the hardest
        hard_counts.append(sum(per))
    assert hard_counts[-1] == 4 * 30 and hard_counts == sorted(hard_counts)
    plain, _ = mix_records(recs, None, cfg.model_copy(update={"curriculum": False}), epoch=3)
    assert sum(len(set(_texts(r)) & hardest) for r in plain) < 4 * 30


def test_mix_cli_writes_one_file_per_epoch_and_a_summary(tmp_path):
    from negforge.synth.cli import app

    recs = [_record(str(i), {"llm": 5, "bm25": 1, "dense": 4}) for i in range(6)]
    src = tmp_path / "verified.jsonl"
    write_records(src, recs)
    out = tmp_path / "mixed.jsonl"
    res = CliRunner().invoke(
        app, ["mix", "--input", str(src), "--output", str(out), "--k", "4", "--epochs", "2", "--seed", "3", "-q"]
    )
    assert res.exit_code == 0, res.output
    e0, e1 = read_records(tmp_path / "mixed.epoch0.jsonl"), read_records(tmp_path / "mixed.epoch1.jsonl")
    assert [len(r.negatives) for r in e0 + e1] == [4] * 12
    assert [_texts(r) for r in e0] != [_texts(r) for r in e1]
    cfg = MixConfig(k=4, epochs=2, seed=3)
    assert [_texts(r) for r in e1] == [_texts(r) for r in mix_records(recs, None, cfg, epoch=1)[0]]
    lines = [ln.split() for ln in res.output.splitlines() if ln.strip()[:1].isdigit()]
    rows = {(ln[0], ln[1]): ln for ln in lines if len(ln) >= 6 and ln[1] in RATIOS}
    assert set(rows) == {(e, s) for e in "01" for s in RATIOS}
    assert sum(int(rows[("0", s)][5]) for s in RATIOS) == 24  # chosen per epoch = 6 records * k
    assert int(rows[("1", "bm25")][5]) == 6  # bm25 had 1 per record
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps(
            {"id": "1", "query": "q", "positives": [{"text": "p"}], "negatives": [{"text": "n", "source": "bm25"}]}
        )
        + "\n"
    )
    res = CliRunner().invoke(app, ["mix", "--input", str(bad), "--output", str(tmp_path / "x.jsonl")])
    assert res.exit_code != 0 and "negforge verify" in res.output
