"""False-negative curves (negforge.synth.fn_curves): the sweep arithmetic on hand-made scores, and
`negforge fn-report --curves` end to end with the bundled MiniLM on a real SciFact slice."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from negforge.synth.fn_curves import (
    PLANTED,
    at_budget,
    combo_curve,
    fn_curves,
    judge_curve,
    known_fn,
    pareto,
    plant_false_negatives,
    ratio_curve,
)
from negforge.synth.schema import Negative, Passage, Record


def test_ratio_curve_covers_every_threshold_and_marks_the_default():
    ratio = np.array([0.99, 0.97, 0.90, 0.80, 0.96, 0.70, np.nan, 0.50])
    fn = np.array([True, True, True, False, False, False, False, False])
    c = ratio_curve(ratio, fn, default=0.95)
    assert c["default"] == {"dropped": 0.2, "recall": round(2 / 3, 4), "threshold": 0.95}  # 0.96 of 5 others
    # Pareto points only: t = 0.96 drops the FN at 0.99 and 0.97 and nothing else; t = 0.80 adds 0.96 and 0.90.
    assert c["points"] == [
        {"dropped": 0.0, "recall": round(2 / 3, 4), "threshold": 0.96},
        {"dropped": 0.2, "recall": 1.0, "threshold": 0.8},
    ]
    assert at_budget(c["points"], 0.1)["threshold"] == 0.96 and at_budget(c["points"], 0.2)["recall"] == 1.0


def test_pareto_keeps_only_undominated_points():
    pts = [
        {"dropped": 0.1, "recall": 0.5},
        {"dropped": 0.2, "recall": 0.4},
        {"dropped": 0.2, "recall": 0.7},
        {"dropped": 0.05, "recall": 0.5},
        {"dropped": 0.3, "recall": 0.7},
    ]
    assert pareto(pts) == [{"dropped": 0.05, "recall": 0.5}, {"dropped": 0.2, "recall": 0.7}]


def test_combinations_any_beats_each_rule_when_they_catch_different_fns():
    # rule a sees FN 0 and 1, rule b sees FN 2 and 3; each flags one ordinary negative of its own.
    a = np.array([0.99, 0.98, 0.1, 0.1, 0.97, 0.1, 0.1, 0.1])
    b = np.array([0.1, 0.1, 0.99, 0.98, 0.1, 0.97, 0.1, 0.1])
    fn = np.array([True, True, True, True, False, False, False, False])
    scores = {"embedding": a, "cross_encoder": b}
    any_ = combo_curve(scores, ["embedding", "cross_encoder"], fn, "any")["points"]
    both = combo_curve(scores, ["embedding", "cross_encoder"], fn, "both")["points"]
    assert at_budget(any_, 0.0)["recall"] == 1.0  # thresholds between 0.97 and 0.98 on both rules
    assert at_budget(ratio_curve(a, fn, 0.95)["points"], 0.0)["recall"] == 0.5
    assert at_budget(both, 0.0)["recall"] < 1.0  # "both" cannot catch what only one rule sees
    best = at_budget(any_, 0.0)["threshold"]
    assert 0.97 <= best["embedding"] < 0.98 and 0.97 <= best["cross_encoder"] < 0.98
    res = fn_curves([], scores, fn)
    assert set(res["curves"]) == {
        "embedding",
        "cross_encoder",
        "embedding any cross_encoder",
        "embedding both cross_encoder",
    }
    assert res["summary"]["embedding any cross_encoder"]["0.15"]["recall"] == 1.0


def test_judge_curve_has_yes_and_yes_or_partly():
    s = np.array([1.0, 0.5, 0.0, 1.0, 0.5, 0.0, np.nan])
    fn = np.array([True, True, True, False, False, False, False])
    c = judge_curve(s, fn, partly_rejects=True)
    assert [p["threshold"] for p in c["points"]] == ["yes", "yes or partly"]
    assert c["points"][0] == {"dropped": 0.25, "recall": round(1 / 3, 4), "threshold": "yes"}
    assert c["default"] == c["points"][1] == {"dropped": 0.5, "recall": round(2 / 3, 4), "threshold": "yes or partly"}


def test_plant_moves_the_last_positive_and_known_fn_ignores_copies():
    p = [Passage(text=f"doc {i}", doc_id=f"d{i}") for i in range(3)]
    recs = [
        Record(id="q1", query="q", positives=p[:2], negatives=[Negative(text="n", doc_id="d9", source="bm25")]),
        Record(
            id="q2",
            query="q",
            positives=p[2:],
            negatives=[
                Negative(text="doc 2", doc_id="d2", source="bm25"),
                Negative(text="x", doc_id="d7", source="dense"),
            ],
        ),
    ]
    planted = plant_false_negatives(recs)
    assert [len(r.positives) for r in planted] == [1, 1] and len(recs[0].positives) == 2  # copies
    assert planted[0].negatives[-1].doc_id == "d1" and planted[0].negatives[-1].provenance.extra[PLANTED]
    qrels = {"q2": {"d2": 1, "d7": 2}}
    assert known_fn(planted, qrels).tolist() == [False, True, False, True]  # d2 is q2's own positive: a copy


@pytest.mark.slow
def test_fn_report_cli_draws_curves_with_real_scores(tiny_beir, tmp_path):
    from negforge.mixers.mine import mine_records
    from negforge.synth.cli import app
    from negforge.synth.config import MineConfig
    from negforge.synth.data import load_beir, records_from_beir
    from negforge.synth.io import write_records

    beir = load_beir(tiny_beir, "train")
    cache = str(tmp_path / "emb")
    recs, _ = mine_records(
        records_from_beir(beir, limit=6),
        beir,
        MineConfig(sources=["bm25"], num_negatives=5, range_max=10, cache_dir=cache),
        show_progress=False,
    )
    for r in recs[:4]:  # a second relevant passage on 4 queries (the first half of the positive's abstract)
        words = r.positives[0].text.split()
        r.positives.append(Passage(text=" ".join(words[: len(words) // 2]), title=r.positives[0].title))
    write_records(tmp_path / "recs.jsonl", recs)
    out = tmp_path / "rep"
    res = CliRunner().invoke(
        app,
        [
            "fn-report",
            "-i",
            str(tmp_path / "recs.jsonl"),
            "--data",
            str(tiny_beir),
            "-o",
            str(out),
            "-q",
            "--verifiers",
            "qrels,embedding",
            "--set",
            f"cache_dir={cache}",
        ],
    )
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "fn_report.json").read_text())
    curves = rep["curves"]
    assert curves["known_fn"] == 4 and curves["negatives"] == 30 and list(curves["curves"]) == ["embedding"]
    emb = curves["curves"]["embedding"]
    assert emb["default"]["threshold"] == 0.95
    assert emb["points"][-1]["recall"] == 1.0  # the loosest threshold catches every planted half-abstract
    assert (out / "fn_report_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert str(out / "fn_report_curves.png") in rep["plots"]
    assert "≤ 15% dropped" in res.output and "| embedding |" in res.output
