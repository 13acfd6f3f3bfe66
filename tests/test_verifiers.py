"""Verifiers on real model scores: the bundled MiniLM (embedding rule), a CrossEncoder built from
the MiniLM path (cross-encoder rule mechanics; its head is random, so only the rule is under test,
not the model's quality), the qrels rule, the LLM judge's parsing (scripted backend) and one real
judge run against the local SmolLM2 server (structure only: the 135M model is weak)."""

from __future__ import annotations

import json
from contextlib import contextmanager

import numpy as np
import pytest
from typer.testing import CliRunner

from negforge.synth.cli import app
from negforge.synth.config import LLMConfig, MineConfig, VerifyConfig
from negforge.synth.data import Corpus, Dataset, load_beir, records_from_beir
from negforge.synth.errors import ConfigError
from negforge.synth.io import read_records, write_records
from negforge.synth.params import GenParams
from negforge.synth.schema import Negative, Source, Status, Verdict
from negforge.synth.verifiers import verify_records


@pytest.fixture(scope="module")
def beir(tiny_beir):
    return load_beir(tiny_beir, "train")


@pytest.fixture(scope="module")
def emb_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("emb"))


@pytest.fixture(scope="module")
def mined(beir, emb_cache):
    """Real BM25 negatives (engineer D's miner) for the first 6 train queries."""
    from negforge.mixers.mine import mine_records

    cfg = MineConfig(sources=["bm25"], num_negatives=4, range_max=10, cache_dir=emb_cache)
    records, _ = mine_records(records_from_beir(beir, limit=6), beir, cfg, show_progress=False)
    assert all(len(r.negatives) == 4 for r in records)
    return records


@pytest.fixture(scope="module")
def corpus(mined, beir):
    """The docs the records name (positives + mined negatives): a real corpus small enough to encode fast."""
    ids = sorted({p.doc_id for r in mined for p in [*r.positives, *r.negatives]})
    return Corpus(ids, [beir.corpus.passage(d).title for d in ids], [beir.corpus.passage(d).text for d in ids])


def _cfg(emb_cache, **kw) -> VerifyConfig:
    return VerifyConfig(cache_dir=emb_cache, **kw)


def _edge(pos: float, score: float) -> float:
    """The float perc with pos * perc == score exactly (nudged by ulps), or fail."""
    perc = score / pos
    for _ in range(8):
        prod = pos * perc
        if prod == score:
            return perc
        perc = np.nextafter(perc, 0.0) if prod > score else np.nextafter(perc, np.inf)
    pytest.fail(f"no float perc with {pos} * perc == {score}")


# ---------------------------------------------------------------- embedding rule


def test_embedding_scores_are_real_cosines_and_verdicts_follow_the_rule(mined, beir, corpus, emb_cache, encoder_path):
    from sentence_transformers import SentenceTransformer

    out, report = verify_records(
        mined, Dataset(corpus=corpus, qrels=beir.qrels), _cfg(emb_cache, verifiers=["embedding"]), show_progress=False
    )
    assert mined[0].negatives[0].verdict is None  # input untouched
    model = SentenceTransformer(encoder_path, device="cpu")
    r = out[0]
    q = model.encode([r.query], normalize_embeddings=True)[0]
    pos = model.encode([p.full_text for p in r.positives], normalize_embeddings=True)
    neg = model.encode([n.full_text for n in r.negatives], normalize_embeddings=True)
    for n, v in zip(r.negatives, neg):
        assert n.scores["embedding"] == pytest.approx(float(q @ v), abs=1e-4)
        assert n.scores["embedding_pos"] == pytest.approx(float((pos @ q).max()), abs=1e-4)
    for r in out:
        for n in r.negatives:
            s, p = n.scores["embedding"], n.scores["embedding_pos"]
            assert n.verdict.status == (Status.rejected if s > 0.95 * p else Status.kept), n.verdict
            assert n.verdict.rule == ("embedding" if s > 0.95 * p else "all")
            assert f"{s:.4f}" in n.verdict.reason
    assert report.totals["bm25"]["checked"] == 24
    assert report.kept + report.dropped == 24


def test_embedding_ratio_and_margin_edges(mined, beir, corpus, emb_cache):
    rec = mined[1]
    (base,), _ = verify_records(
        [rec],
        Dataset(corpus=corpus, qrels=beir.qrels),
        _cfg(emb_cache, verifiers=["embedding"], perc_pos=2.0),
        show_progress=False,
    )
    n = next(n for n in base.negatives if 0 < n.scores["embedding"] < n.scores["embedding_pos"])
    i = base.negatives.index(n)
    s, p = n.scores["embedding"], n.scores["embedding_pos"]
    assert 0 < s < p < 1

    def status(**kw) -> Status:
        (r,), _ = verify_records(
            [rec],
            Dataset(corpus=corpus, qrels=beir.qrels),
            _cfg(emb_cache, verifiers=["embedding"], **kw),
            show_progress=False,
        )
        assert r.negatives[i].scores["embedding"] == s  # deterministic scores: the edges below are exact
        return r.negatives[i].verdict.status

    at = _edge(p, s)  # score exactly at pos × perc_pos
    assert status(perc_pos=at) == Status.kept  # not strictly above: kept
    assert status(perc_pos=float(np.nextafter(at, 0.0))) == Status.rejected  # threshold just below the score
    assert status(perc_pos=float(np.nextafter(at, 2.0))) == Status.kept  # threshold just above the score
    gap = p - s
    assert status(perc_pos=2.0, abs_margin=gap) == Status.kept  # gap exactly the margin
    assert status(perc_pos=2.0, abs_margin=float(np.nextafter(gap, 1.0))) == Status.rejected
    assert status(perc_pos=2.0, abs_margin=float(np.nextafter(gap, 0.0))) == Status.kept


def test_copied_positive_text_is_caught_by_the_embedding_rule(mined, beir, corpus, emb_cache):
    rec = mined[2].model_copy(deep=True)
    paraphrase = rec.positives[0].text.upper() + " (as reported)"  # not an exact copy: qrels text rule misses
    rec.negatives.append(Negative(text=paraphrase, source=Source.llm))
    (out,), report = verify_records(
        [rec], Dataset(corpus=corpus, qrels=beir.qrels), _cfg(emb_cache), show_progress=False
    )
    llm = out.negatives_from("llm")[0]
    assert llm.verdict.status == Status.rejected and llm.verdict.rule == "embedding"
    assert llm.scores["embedding"] > 0.95 * llm.scores["embedding_pos"]
    assert report.counts["llm"]["qrels"]["checked"] == 1 and report.counts["llm"]["qrels"]["dropped"] == 0


FILLER = (
    "This is a hard hard hard task. You need to have the right skills to do it. It takes time and "
    "dedication."
)  # a SmolLM2 draft that passed its own checks in the default run


def test_off_topic_floor_drops_filler_llm_negatives_only(mined, beir, corpus, emb_cache):
    reports = []

    def verdicts(r, **kw):
        (out,), report = verify_records(
            [r], Dataset(corpus=corpus, qrels=beir.qrels), _cfg(emb_cache, perc_pos=2.0, **kw), show_progress=False
        )
        reports.append(report)
        return out.negatives

    # an on-topic LLM text: a mined negative's text between the floor and the positive, sourced as llm
    rec, mid = next(
        (r.model_copy(deep=True), n)
        for r in mined
        for n in verdicts(r)
        if 0.3 < n.scores["embedding"] / n.scores["embedding_pos"] < 0.9
    )
    rec.negatives += [
        Negative(text=FILLER, source=Source.llm),
        Negative(text=mid.text, source=Source.llm),
        Negative(text=FILLER, source=Source.bm25),
    ]
    filler, topical, filler_bm25 = verdicts(rec)[-3:]
    s, p = filler.scores["embedding"], filler.scores["embedding_pos"]
    assert s < 0.2 * p  # the filler really is far from the query under MiniLM
    assert filler.verdict.status == Status.rejected and filler.verdict.rule == "embedding"
    assert filler.verdict.reason.startswith("off-topic") and f"{s:.4f}" in filler.verdict.reason
    assert topical.verdict.status == Status.kept and "on topic" in topical.verdict.reason, topical.verdict
    assert filler_bm25.verdict.status == Status.kept  # mined sources are not floor-checked by default
    counts = reports[-1].counts  # the floor's drops are counted apart from the ratio rule's
    assert counts["llm"]["embedding"]["off-topic"] == 1 and "off-topic" not in counts["bm25"]["embedding"]
    assert [n.verdict.status for n in verdicts(rec, min_perc_pos=None)[-3:]] == [Status.kept] * 3
    assert verdicts(rec, min_perc_pos_sources=["llm", "bm25"])[-1].verdict.status == Status.rejected
    with pytest.raises(ValueError, match="unknown source 'gpt'"):
        _cfg(emb_cache, min_perc_pos_sources=["gpt"])


# ---------------------------------------------------------------- qrels rule


@pytest.mark.parametrize("order", [["qrels", "embedding"], ["embedding", "qrels"]])
def test_planted_qrels_positive_is_always_dropped(mined, beir, corpus, emb_cache, order):
    rec = mined[3].model_copy(deep=True)
    hidden = rec.negatives[0]  # a real mined doc that we now label relevant in the qrels
    qrels = {q: dict(d) for q, d in beir.qrels.items()}
    qrels[rec.id][hidden.doc_id] = 1
    pos = rec.positives[0]
    rec.negatives.append(Negative(text=pos.text, title=pos.title, doc_id=pos.doc_id, source=Source.dense))
    rec.negatives.append(Negative(text="  " + pos.full_text.lower().replace(".", " ."), source=Source.llm))
    # The embedding rule keeps everything at perc_pos=2 and no margin: only the qrels rule can drop.
    (out,), report = verify_records(
        [rec], Dataset(corpus=corpus, qrels=qrels), _cfg(emb_cache, verifiers=order, perc_pos=2.0), show_progress=False
    )
    hid, planted, copy = out.negatives[0], out.negatives[-2], out.negatives[-1]
    assert hid.verdict.status == Status.rejected and hid.verdict.rule == "qrels", hid.verdict
    assert "grade 1" in hid.verdict.reason and hid.scores["qrels"] == 1.0
    assert all(n.verdict.rule != "qrels" for n in out.negatives[1:-2])
    for n in (planted, copy):  # copies of the positive: dropped whichever rule sees them first
        assert n.verdict.status == Status.rejected, n.verdict
    if order[0] == "qrels":
        assert planted.verdict.rule == copy.verdict.rule == "qrels"
        assert planted.scores["qrels"] == 1.0  # the positive itself is relevant in the qrels
        assert "equals a positive" in copy.verdict.reason
        assert sum(c["qrels"]["dropped"] for c in report.counts.values()) == 3
        assert sum(c["embedding"]["skipped"] for c in report.counts.values()) == 3
        assert "embedding" not in copy.scores  # skipped after the qrels rule rejected it
    else:
        assert hid.scores["embedding"] < hid.scores["embedding_pos"]  # the embedding rule kept it


def test_existing_verdicts_are_left_alone_unless_reverify(mined, beir, emb_cache):
    rec = mined[4].model_copy(deep=True)
    rec.negatives[0].verdict = Verdict(status=Status.kept, rule="manual", reason="checked by hand")
    (out,), report = verify_records(
        [rec], Dataset(qrels=beir.qrels), _cfg(emb_cache, verifiers=["qrels"]), show_progress=False
    )
    assert out.negatives[0].verdict.rule == "manual" and report.totals["bm25"]["already"] == 1
    assert report.totals["bm25"]["checked"] == 3
    (out,), report = verify_records(
        [rec], Dataset(qrels=beir.qrels), _cfg(emb_cache, verifiers=["qrels"], reverify=True), show_progress=False
    )
    assert out.negatives[0].verdict.rule == "all" and report.totals["bm25"]["checked"] == 4


def test_bad_verifier_config_names_the_fix(mined):
    with pytest.raises(ConfigError, match="valid: cross_encoder, embedding, llm_judge, qrels"):
        verify_records(mined, None, VerifyConfig(verifiers=["qrels", "bm25"]))
    with pytest.raises(ConfigError, match="twice"):
        verify_records(mined, None, VerifyConfig(verifiers=["qrels", "qrels"]))
    with pytest.raises(ConfigError, match="verifier train"):
        verify_records(mined, None, VerifyConfig(verifiers=["cross_encoder"]))


# ---------------------------------------------------------------- cross-encoder rule


@pytest.fixture(scope="module")
def minilm_cross_encoder(tmp_path_factory, encoder_path):
    """CrossEncoder(MiniLM, num_labels=1) with a seeded random head: real forward passes, no quality."""
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ce") / "minilm-ce"
    CrossEncoder(encoder_path, num_labels=1, max_length=128, device="cpu").save(str(path))
    return str(path)


def test_cross_encoder_scores_are_sigmoid_probabilities_and_edges_hold(mined, beir, emb_cache, minilm_cross_encoder):
    import torch
    from sentence_transformers import CrossEncoder

    rec = mined[5]
    cfg = dict(verifiers=["cross_encoder"], cross_encoder=minilm_cross_encoder, perc_pos=2.0)
    (base,), _ = verify_records([rec], Dataset(qrels=beir.qrels), _cfg(emb_cache, **cfg), show_progress=False)
    ce = CrossEncoder(minilm_cross_encoder, device="cpu")
    direct = ce.predict([(rec.query, n.full_text) for n in rec.negatives], activation_fn=torch.nn.Sigmoid())
    pos = ce.predict([(rec.query, p.full_text) for p in rec.positives], activation_fn=torch.nn.Sigmoid())
    for n, d in zip(base.negatives, direct):
        assert 0 < n.scores["cross_encoder"] < 1
        assert n.scores["cross_encoder"] == pytest.approx(float(d), abs=1e-5)
        assert n.scores["cross_encoder_pos"] == pytest.approx(float(pos.max()), abs=1e-5)
    n = min(base.negatives, key=lambda n: n.scores["cross_encoder"])
    i = base.negatives.index(n)
    s, p = n.scores["cross_encoder"], n.scores["cross_encoder_pos"]
    if not s < p:  # a random head may rank the positive lower: flip roles so the edge is still tested
        pytest.skip(f"random head scores the positive {p} below every negative")
    at = _edge(p, s)

    def status(perc: float) -> Status:
        (r,), _ = verify_records(
            [rec], Dataset(qrels=beir.qrels), _cfg(emb_cache, **{**cfg, "perc_pos": perc}), show_progress=False
        )
        return r.negatives[i].verdict.status

    assert status(at) == Status.kept
    assert status(float(np.nextafter(at, 0.0))) == Status.rejected
    assert (
        "P(relevant)"
        in verify_records(
            [rec], Dataset(qrels=beir.qrels), _cfg(emb_cache, **{**cfg, "perc_pos": 0.01}), show_progress=False
        )[0][0]
        .negatives[i]
        .verdict.reason
    )


def test_verifier_train_cli_trains_saves_and_plugs_into_verify(tiny_beir, tmp_path, mined, emb_cache):
    out = tmp_path / "ce"
    res = CliRunner().invoke(
        app,
        [
            "verifier",
            "train",
            "--data",
            str(tiny_beir),
            "--output",
            str(out),
            "--limit",
            "8",
            "--max-length",
            "48",
            "-q",
            "--set",
            "mine.num_negatives=1",
            "--set",
            "mine.range_max=5",
            "--set",
            "heldout=0.25",
            "--set",
            "batch_size=4",
            "--set",
            "max_pairs=10",
            "--set",
            f"mine.cache_dir={emb_cache}",
        ],
    )
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "train_report.json").read_text())["result"]
    saved = json.loads((out / "train_report.json").read_text())
    # 8 queries: 2 held out, 1 of the other 6 for dev (checkpoint choice), 5 to train on.
    assert rep["train_queries"] == 5 and rep["dev_queries"] == 1 and rep["heldout_queries"] == 2
    # 1 positive + 1 BM25 + 1 dense negative per query; training pairs sampled down to max_pairs.
    assert rep["train_pairs"] == 10 and rep["heldout_pairs"] == 6 and rep["dev_pairs"] == 3
    assert len(saved["heldout_query_ids"]) == 2 and len(saved["dev_query_ids"]) == 1
    assert not set(saved["heldout_query_ids"]) & set(saved["dev_query_ids"])
    assert 0 <= rep["accuracy"] <= 1 and 0 <= rep["roc_auc"] <= 1 and rep["losses"]
    # evaluated on dev during training (3 steps of 4 pairs; evals every step at most), best step kept
    assert rep["steps"] == 3 and [d["step"] for d in rep["dev"]] == [1, 2, 3]
    best = max(rep["dev"], key=lambda d: d["dev_roc_auc"])
    assert rep["best_step"] == best["step"]
    assert rep["kept_dev_roc_auc"] == pytest.approx(best["dev_roc_auc"], abs=1e-4)  # the saved weights are those
    assert "ROC-AUC" in res.output and "kept step" in res.output
    records = tmp_path / "in.jsonl"
    write_records(records, mined[:2])
    res = CliRunner().invoke(
        app,
        [
            "verify",
            "-i",
            str(records),
            "-o",
            str(tmp_path / "v.jsonl"),
            "-q",
            "--data",
            str(tiny_beir),
            "--verifiers",
            "qrels,cross_encoder",
            "--cross-encoder",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    verified = read_records(tmp_path / "v.jsonl")
    assert all(0 < n.scores["cross_encoder"] < 1 and n.verdict for r in verified for n in r.negatives)
    report = json.loads((tmp_path / "v.jsonl.report.json").read_text())
    assert report["checked"] == 8 and report["by_rule"]["bm25"]["cross_encoder"]["checked"] == 8
    assert "cross_encoder" in res.output


# ---------------------------------------------------------------- LLM judge


def test_judge_parsing_with_scripted_backend(mined):
    from scripted_backend import ScriptedBackend

    from negforge.synth.parsing import ParseError, parse_reply
    from negforge.synth.verifiers.llm_judge import REASKED, UNPARSEABLE, JudgeReply, judge_checks

    def parse(text):
        return parse_reply(text, JudgeReply)[0]

    assert parse('```json\n{"answer": "Yes.", "reason": "states it"}\n```').answer == "yes"
    assert parse('Sure! {"answer": "PARTLY"}').answer == "partly"
    assert parse('{"answer": "no", "reason": null}').reason == ""
    with pytest.raises(ParseError, match="answer: Input should be 'yes', 'partly' or 'no'"):
        parse('{"answer": "maybe"}')
    with pytest.raises(ParseError, match="no complete JSON object"):
        parse("no json")
    pairs = [(mined[0], n) for n in mined[0].negatives] + [(mined[1], mined[1].negatives[0])]
    replies = [
        '{"answer": "yes", "reason": "it answers"}',
        '{"answer": "partly", "reason": "half"}',
        '{"answer": "no", "reason": "off topic"}',
        "I think so",
        TimeoutError("slow server"),
        '{"answer": "no", "reason": "asked again"}',
    ]  # the re-ask of "I think so"
    backend = ScriptedBackend.sequence(replies)
    checks = judge_checks(pairs, backend, GenParams(temperature=0.0, max_tokens=64))
    assert backend.batches == [5, 1]  # one batched call, then the one re-ask (a failed call is not re-asked)
    assert "Query: " + mined[0].query in backend.seen[0][0][0]["content"]
    reask = backend.seen[5][0]
    assert (
        reask[-2] == {"role": "assistant", "content": "I think so"}
        and "no complete JSON object" in reask[-1]["content"]
    )
    assert [c.passed for c in checks] == [False, False, True, True, True]
    assert [c.scores.get("llm_judge") for c in checks] == [1.0, 0.5, 0.0, 0.0, None]
    assert checks[3].note == REASKED and "asked again" in checks[3].reason and checks[4].note == "judge call failed"
    assert "it answers" in checks[0].reason
    junk = judge_checks(pairs[:1], ScriptedBackend.sequence(["junk", "still junk"]), GenParams())
    assert junk[0].passed and junk[0].note == UNPARSEABLE and "no complete JSON object" in junk[0].reason
    lenient = judge_checks(pairs[1:2], ScriptedBackend.sequence([replies[1]]), GenParams(), partly_rejects=False)
    assert lenient[0].passed and "kept by judge_partly_rejects" in lenient[0].reason


def test_judge_inside_verify_records_counts_unparseable(mined, monkeypatch):
    from scripted_backend import ScriptedBackend

    import negforge.synth.backends.factory as factory

    replies = iter(
        [
            '{"answer": "no"}',
            "garbage",
            '{"answer": "yes", "reason": "same claim"}',
            '{"answer": "no"}',
            "garbage again",
        ]
    )  # the re-ask of the second
    backend = ScriptedBackend(lambda conv: next(replies))

    @contextmanager
    def fake_open(cfg, cache_dir=None):
        assert cfg.params.temperature == 0.0  # the judge's default: deterministic
        yield backend

    monkeypatch.setattr(factory, "open_backend", fake_open)
    (out,), report = verify_records(
        [mined[0]], None, VerifyConfig(verifiers=["qrels", "llm_judge"]), show_progress=False
    )
    verdicts = [n.verdict for n in out.negatives]
    assert [v.status for v in verdicts] == [Status.kept, Status.kept, Status.rejected, Status.kept]
    assert "judge reply unparseable" in verdicts[1].reason and verdicts[2].rule == "llm_judge"
    assert report.counts["bm25"]["llm_judge"]["judge reply unparseable"] == 1
    assert report.usage["calls"] == 5
    assert "judge reply unparseable: 1" in report.table()


@pytest.mark.slow
def test_judge_real_local_server(mined, local_server, tmp_path):
    judge = LLMConfig(base_url=local_server.base_url, params=GenParams(temperature=0.0, max_tokens=80))
    rec = mined[0].model_copy(update={"negatives": mined[0].negatives[:3]})
    cfg = VerifyConfig(verifiers=["llm_judge"], judge=judge, judge_cache_dir=str(tmp_path / "llm"))
    (out,), report = verify_records([rec], None, cfg, show_progress=False)
    for n in out.negatives:
        assert n.verdict is not None and n.verdict.reason
        assert n.scores.get("llm_judge") in (0.0, 0.5, 1.0) or "judge" in n.verdict.reason
    judged = report.counts["bm25"]["llm_judge"]
    # one call per negative, plus one re-ask for each reply that did not parse at first (judge_max_reasks=1)
    reasks = judged["judge re-asked"] + judged["judge reply unparseable"]
    assert judged["checked"] == 3 and report.usage["calls"] == 3 + reasks
    # The second run is served from the on-disk cache: same verdicts, no new tokens.
    (again,), rep2 = verify_records([rec], None, cfg, show_progress=False)
    assert [n.verdict for n in again.negatives] == [n.verdict for n in out.negatives]
    assert rep2.usage["cached"] == report.usage["calls"]


# ---------------------------------------------------------------- fn-report


def _with_certain_fns(records):
    """Copies with two certain false negatives on the first record: the positive's doc id (a dense hit
    that ignored the qrels) and an LLM negative that copies the positive's text."""
    out = [r.model_copy(deep=True) for r in records]
    pos = out[0].positives[0]
    out[0].negatives.append(Negative(text=pos.text, title=pos.title, doc_id=pos.doc_id, source=Source.dense))
    out[0].negatives.append(Negative(text=pos.full_text, source=Source.llm))
    return out


def test_fn_report_counts_rates_sweep_and_plots(mined, beir, corpus, emb_cache, tmp_path):
    from negforge.synth.fn_report import fn_report

    records = _with_certain_fns(mined[:4])
    judged = records[1].negatives
    for n, s in zip(judged[:3], (1.0, 0.5, 0.0)):  # judge scores carried by the records are reported
        n.scores["llm_judge"] = s
    cfg = _cfg(emb_cache, verifiers=["qrels", "embedding"])
    same, rep = fn_report(records, Dataset(corpus=corpus, qrels=beir.qrels), cfg, out_dir=tmp_path, show_progress=False)
    assert same is records  # a report stage hands the records on unchanged
    src = rep.sources
    assert list(src) == ["bm25", "dense", "llm", "all"]
    assert (src["bm25"]["negatives"], src["bm25"]["certain_fn"], src["bm25"]["fn_before"]) == (16, 0, 0.0)
    assert (src["dense"]["certain_fn"], src["llm"]["certain_fn"], src["all"]["certain_fn"]) == (1, 1, 2)
    assert src["all"]["fn_before"] == round(2 / 18, 4)
    # The embedding rule alone catches both copies of the positive (cosine = the positive's own score).
    assert src["dense"]["model"]["fn_caught"] == src["llm"]["model"]["fn_caught"] == 1
    assert src["all"]["model"]["fn_recall"] == 1.0 and src["all"]["model"]["fn_after"] == 0.0
    # Model drops cross-checked against an independent verify run with the same rule.
    (ref, _) = verify_records(
        records, Dataset(corpus=corpus, qrels=beir.qrels), _cfg(emb_cache, verifiers=["embedding"]), show_progress=False
    )
    dropped = sum(n.verdict.status == Status.rejected for r in ref for n in r.negatives)
    assert src["all"]["model"]["dropped"] == dropped >= 2
    assert src["all"]["model"]["drop_precision"] == round(2 / dropped, 4)
    assert src["all"]["all"]["kept"] == 18 - dropped and src["all"]["all"]["fn_after"] == 0.0
    assert src["bm25"]["judge"] == {"judged": 3, "yes": round(1 / 3, 4), "yes_or_partly": round(2 / 3, 4)}
    assert src["llm"]["judge"] is None
    sweep = rep.sweep["embedding"]
    assert [r["perc_pos"] for r in sweep] == [0.8, 0.85, 0.9, 0.95, 1.0]
    shares = [r["dropped_share"] for r in sweep]
    assert shares == sorted(shares, reverse=True)
    assert next(r for r in sweep if r["perc_pos"] == 0.95)["dropped_share"] == round(dropped / 18, 4)
    png = tmp_path / "fn_report_embedding.png"
    assert rep.plots == [str(png)] and png.read_bytes()[:4] == b"\x89PNG"
    on_disk = json.loads((tmp_path / "fn_report.json").read_text())
    assert on_disk["sources"] == json.loads(json.dumps(src))
    assert "| dense | 1 | 100.0% (1) |" in (tmp_path / "fn_report.md").read_text()


def test_fn_report_cli_with_cross_encoder_and_custom_groups(
    mined, tiny_beir, tmp_path, emb_cache, minilm_cross_encoder
):
    from negforge.synth.fn_report import fn_report

    records = _with_certain_fns(mined[:2])
    path = tmp_path / "recs.jsonl"
    write_records(path, records)
    out = tmp_path / "rep"
    res = CliRunner().invoke(
        app,
        [
            "fn-report",
            "-i",
            str(path),
            "--data",
            str(tiny_beir),
            "-o",
            str(out),
            "-q",
            "--verifiers",
            "qrels,cross_encoder",
            "--cross-encoder",
            minilm_cross_encoder,
            "--set",
            f"cache_dir={emb_cache}",
        ],
    )
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "fn_report.json").read_text())
    assert rep["model_rules"] == ["cross_encoder"] and rep["sources"]["all"]["certain_fn"] == 2
    assert rep["sources"]["all"]["negatives"] == 10 and "cross_encoder" in rep["sweep"]
    assert (out / "fn_report_cross_encoder.png").read_bytes()[:4] == b"\x89PNG"
    assert "| llm | 1 | 100.0% (1) |" in res.output
    # A caller-defined grouping (e.g. planted false negatives in their own row) and file prefix.
    data = load_beir(tiny_beir, "train")
    _, rep2 = fn_report(
        records,
        data,
        VerifyConfig(verifiers=["qrels"]),
        out_dir=tmp_path / "g",
        show_progress=False,
        group=lambda r, n: "copy" if n.doc_id is None or n.source == Source.dense else n.source.value,
        prefix="grouped",
    )
    assert rep2.sources["copy"]["certain_fn"] == 2 and rep2.sources["bm25"]["certain_fn"] == 0
    assert (tmp_path / "g" / "grouped.md").is_file() and rep2.plots == []  # no model rule, no score to plot


def test_verifier_train_split_by_given_query_ids(mined):
    from negforge.synth.errors import InputError
    from negforge.synth.verifiers.train import split_queries

    ids = [r.id for r in mined]
    train, held = split_queries(mined, 0.5, 0, heldout_ids=[ids[1], ids[4], "not-a-query"])
    assert [r.id for r in held] == [ids[1], ids[4]] and [r.id for r in train] == [ids[0], ids[2], ids[3], ids[5]]
    a, b = split_queries(mined, 0.5, 0), split_queries(mined, 0.5, 0)
    assert [r.id for r in a[1]] == [r.id for r in b[1]] and len(a[1]) == 3  # seeded share otherwise
    with pytest.raises(InputError, match="both must be non-empty"):
        split_queries(mined, 0.5, 0, heldout_ids=ids)
