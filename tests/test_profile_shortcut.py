"""The corpus profile (seeded examples, lengths, description written once and stored) and the shortcut
check (cross-validated classifier, real vs real ~0.5, clearly different style ~1)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from scripted_backend import ScriptedBackend

from negforge.synth.attributes import target_length
from negforge.synth.config import ProfileConfig
from negforge.synth.data import load_corpus
from negforge.synth.params import GenParams
from negforge.synth.profile import corpus_profile, length_stats, trim
from negforge.synth.schema import Negative, Passage, Record, Source, Status, Verdict
from negforge.synth.shortcut import cross_val_scores, roc_auc, separability, shortcut_check, style_features
from negforge.synth.templates import TemplateSet

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def texts_of(name: str) -> list[str]:
    return load_corpus(DATA / name / "corpus.jsonl").full_texts()


# -- profile --------------------------------------------------------------------------------------------
def test_profile_is_seeded_trimmed_and_measures_lengths():
    cfg = ProfileConfig(corpus=str(DATA / "trec-dl-2019"), describe_with_llm=False, examples=4, example_words=20)
    a, b = corpus_profile(cfg, []), corpus_profile(cfg, [])
    assert a == b and len(a.examples) == 4 and a.n_docs == 9139 and a.description_source == "none"
    assert corpus_profile(cfg.model_copy(update={"seed": 1}), []).examples != a.examples
    assert all(len(x.removesuffix(" ...").split()) <= 20 for x in a.examples)
    docs = texts_of("trec-dl-2019")
    assert all(any(d.startswith(x.removesuffix(" ...")) for d in docs) for x in a.examples)
    lengths = sorted(len(d.split()) for d in docs)
    assert a.length["median"] == pytest.approx(np.median(lengths), abs=3)  # a 2,000-doc seeded sample
    assert a.length["p10"] <= a.length["median"] <= a.length["p90"]
    assert trim("One two three. Four five six seven", 5) == "One two three."
    assert length_stats(["a b", "a b c d"]) == {
        "p10": 2.2,
        "p25": 2.5,
        "median": 3.0,
        "p75": 3.5,
        "p90": 3.8,
        "mean": 3.0,
    }


def test_target_length_follows_the_corpus_and_the_positive():
    space = TemplateSet("mar").space.attribute_space()
    assert target_length(300, 1.0, space) == 250  # the space's max
    assert target_length(300, 1.0, space, corpus_range=(40, 90)) == 90  # a long positive in a short-doc corpus
    assert target_length(60, 1.2, space, corpus_range=(40, 90)) == 70
    assert target_length(10, 1.0, space, corpus_range=(40, 90)) == 40


def test_description_from_config_or_written_once_by_the_llm_and_stored(tmp_path):
    recs = [Record(id=str(i), query="q", positives=[Passage(text=t)]) for i, t in enumerate(texts_of("scifact")[:50])]
    cfg = ProfileConfig(examples=2)
    calls = []

    def reply(conv):
        calls.append(conv)
        return json.dumps({"description": "short texts about one subject"})

    backend = ScriptedBackend(reply)
    p = corpus_profile(cfg, recs, backend, GenParams(), str(tmp_path))
    assert p.description == "short texts about one subject" and p.description_source == "llm" and len(calls) == 1
    assert p.source == "input records" and p.n_docs == 50
    assert "Here are some documents from one collection" in calls[0][0]["content"]
    stored = list((tmp_path / "profiles").glob("*.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text())["description"] == p.description
    assert corpus_profile(cfg, recs, backend, GenParams(), str(tmp_path)) == p and len(calls) == 1  # stored: no call
    assert corpus_profile(cfg, recs, cache_dir=str(tmp_path), model="scripted") == p  # `prompt render` sees it too
    given = corpus_profile(cfg.model_copy(update={"description": "my notes"}), recs, backend, GenParams(), None)
    assert given.description == "my notes" and given.description_source == "config" and len(calls) == 1
    # a reply that echoes the placeholder is not a description
    bad = ScriptedBackend(lambda conv: json.dumps({"description": "<kind of documents> about <subject>"}))
    assert corpus_profile(cfg, recs, bad, GenParams(), None).description == ""


# -- shortcut check ------------------------------------------------------------------------------------
def test_roc_auc_matches_scikit_learn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = rng.normal(size=200) + y * 0.7
    s[:20] = np.round(s[:20])  # ties
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_numpy_fallback_agrees_with_scikit_learn(monkeypatch):
    import negforge.synth.shortcut as sc

    rng = random.Random(0)
    a, b = rng.sample(texts_of("scifact"), 60), rng.sample(texts_of("trec-dl-2019"), 60)
    X, y = style_features(a + b), np.r_[np.ones(60), np.zeros(60)]
    with_sklearn = roc_auc(y, cross_val_scores(X, y, 5, 0))
    monkeypatch.setattr(sc, "_fit_predict", sc._fit_predict_numpy)
    assert roc_auc(y, cross_val_scores(X, y, 5, 0)) == pytest.approx(with_sklearn, abs=0.03)


def test_real_against_real_is_near_half_and_another_style_near_one():
    results = []
    for seed in range(5):  # real documents split at random, five times; style features only: fast
        sci = random.Random(seed).sample(texts_of("scifact"), 300)
        results.append(separability(sci[:150], sci[150:], seed=seed))
    aucs = [a for a, _, _ in results]
    assert all(abs(a - 0.5) < 0.1 for a in aucs) and abs(float(np.median(aucs)) - 0.5) < 0.03
    assert sum(lo < 0.5 < hi for _, lo, hi in results) >= 4  # a 95% interval misses now and then, not often
    rng = random.Random(0)
    auc, low, high = separability(sci[:150], rng.sample(texts_of("trec-dl-2019"), 150))
    assert auc > 0.95 and low > 0.9


def _record_with(negs: list[tuple[str, str]], keep=True) -> Record:
    v = Verdict(status=Status.kept if keep else Status.rejected, rule="t", reason="t")
    return Record(
        id="r",
        query="q",
        positives=[Passage(text="p p p")],
        negatives=[Negative(text=t, source=Source(s), verdict=v) for s, t in negs],
    )


def test_shortcut_check_per_source_with_a_warning(caplog):
    rng = random.Random(1)
    sci = texts_of("scifact")
    rng.shuffle(sci)
    real_pool, mined = sci[:2500], sci[2500:2560]
    # "llm" negatives written in a clearly different style: shouting, short, exclamation marks
    llm = [" ".join(w.upper() for w in t.split()[:15]) + "!!! AMAZING!!!" for t in rng.sample(sci, 60)]
    rejected = _record_with([("llm", "A rejected draft that would not count at all, whatever it says.")], keep=False)
    records = [_record_with([("bm25", t) for t in mined] + [("llm", t) for t in llm]), rejected]
    report = shortcut_check(records, real_pool, encoder=None)
    by = {s.source: s for s in report.sources}
    assert set(by) == {"bm25", "llm"} and by["llm"].negatives == 60 and by["llm"].real == 60
    assert by["llm"].auc > 0.95 and by["llm"].easy_to_spot
    assert abs(by["bm25"].auc - 0.5) < 0.15 and not by["bm25"].easy_to_spot  # mined = real documents
    assert len(report.warnings) == 1 and "llm negatives are easy to tell" in report.warnings[0]
    assert "EASY TO SPOT" in report.table() and "shortcut check: llm" in caplog.text
    few = shortcut_check([_record_with([("llm", t) for t in llm[:3]])], real_pool, encoder=None)
    assert few.sources[0].auc is None and "fewer than 5" in few.sources[0].note
    # a source whose negatives were all rejected is listed, not left out
    gone = shortcut_check([_record_with([("bm25", t) for t in mined]), rejected], real_pool, encoder=None)
    by = {s.source: s for s in gone.sources}
    assert by["llm"].negatives == 0 and by["llm"].auc is None and by["llm"].note == "no kept negative"
    assert "no kept negative" in gone.table()


@pytest.mark.slow
def test_shortcut_check_with_encoder_embeddings():
    rng = random.Random(2)
    sci = rng.sample(texts_of("scifact"), 160)
    auc, low, high = separability(sci[:80], sci[80:], embed=_minilm())
    assert low < 0.5 < high
    web = rng.sample(texts_of("trec-dl-2019"), 80)
    auc, low, high = separability(sci[:80], web, embed=_minilm())
    assert auc > 0.97


def _minilm():
    from negforge.mixers.embeddings import encode_texts
    from negforge.synth.models import DEFAULT_ENCODER

    return lambda texts: encode_texts(texts, DEFAULT_ENCODER)


def test_shortcut_command(tmp_path, tiny_beir):
    from typer.testing import CliRunner

    from negforge.synth.cli import app
    from negforge.synth.io import write_records

    docs = load_corpus(tiny_beir / "corpus.jsonl").texts
    rng = random.Random(3)
    mined = rng.sample(docs[40:], 30)
    llm = [" ".join(w.upper() for w in t.split()[:12]) + "!!! WOW!!!" for t in rng.sample(docs, 30)]
    write_records(tmp_path / "v.jsonl", [_record_with([("bm25", t) for t in mined] + [("llm", t) for t in llm])])
    res = CliRunner().invoke(
        app,
        [
            "shortcut",
            "-i",
            str(tmp_path / "v.jsonl"),
            "-d",
            str(tiny_beir),
            "--encoder",
            "none",
            "-o",
            str(tmp_path / "s.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "s.json").read_text())
    by = {s["source"]: s for s in saved["sources"]}
    assert by["llm"]["easy_to_spot"] and not by["bm25"]["easy_to_spot"] and by["llm"]["negatives"] == 30
    assert "llm negatives are easy to tell" in res.output and "EASY TO SPOT" in res.output
    res = CliRunner().invoke(app, ["shortcut", "-i", str(tmp_path / "v.jsonl"), "-d", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "Traceback" not in res.output
