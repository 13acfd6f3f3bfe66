"""Prompt iteration: `negforge prompt render` shows exactly what the job sends; `prompt try` and
`prompt compare` write side-by-side reports with the verifier's scores (fault server with
deterministic replies, and the real bundled model on the local server)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fault_server import FaultServer, mar_reply
from typer.testing import CliRunner

from negforge.synth.cli import app
from negforge.synth.config import GenerateConfig
from negforge.synth.gen_report import GenerateReport as JobSummary
from negforge.synth.io import read_records, write_records
from negforge.synth.mar import MarFlow
from negforge.synth.prompt_lab import parse_template, render_step, resolve_set, sample_records
from negforge.synth.templates import TemplateSet, builtin_sets_dir


def cli(*args) -> str:
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res.output


def records_of(beir: Path, n: int):
    from negforge.synth.data import load_beir, records_from_beir

    return records_from_beir(load_beir(beir, "train"), n)


@pytest.fixture
def my_templates(tmp_path) -> Path:
    """A user's copy of the built-in set folder, renamed and with one instruction changed in the generate step."""
    d = tmp_path / "mine" / "terse"
    shutil.copytree(builtin_sets_dir() / "mar", d)
    g = d / "generate.jinja2"
    g.write_text(
        g.read_text().replace("written like the documents of this corpus", "in plain words, one short paragraph")
    )
    return d


def test_parse_template_names():
    assert parse_template("mar_generate", "x") == ("mar", ["generate"])
    assert parse_template("reflect", "mar") == ("mar", ["reflect"])
    assert parse_template("mar", "x") == ("mar", None)  # every step of the set
    assert parse_template("counterfactual_rewrite", "mar") == ("counterfactual", ["rewrite"])
    assert parse_template("/my/sets/terse", "mar") == ("/my/sets/terse", None)


def test_render_prints_the_exact_messages_the_job_sends(tiny_beir, my_templates):
    rec = records_of(tiny_beir, 3)[2]
    out = cli("prompt", "render", "mar_analyse", "--example", 2, "--data", tiny_beir)
    flow = MarFlow(None, GenerateConfig(), JobSummary())
    (msg,) = flow.analyse_messages(rec)
    # the CLI's flow has the corpus profile of --data (its examples are in the shared prefix), this one none:
    # the step's own part and the record's query are the same
    assert f"# record {rec.id} (example 2)" in out and msg["content"].split("\n\nStep: ", 1)[1] in out
    assert f"Query: {rec.query}\n" in out
    assert f"hash {TemplateSet().hash}" in out
    # generate with placeholders (no analysis yet), the sampled setting shown
    out = cli("prompt", "render", "generate", "--example", 2, "--data", tiny_beir, "--draft", 1)
    setting = flow.setting(rec, 1, {})
    assert "<key_fact from the analyse step>" in out and f"# setting: {setting}" in out
    assert f"About {setting['length_words']} words" in out
    # the user's own folder: the edit shows, under its own hash
    out = cli(
        "prompt", "render", "terse_generate", "--example", 2, "--data", tiny_beir, "--template-dir", my_templates.parent
    )
    assert "in plain words, one short paragraph" in out and TemplateSet("terse", str(my_templates.parent)).hash in out
    out = cli("prompt", "render", my_templates, "--example", 2, "--data", tiny_beir)  # the folder itself: all steps
    assert out.count("===== terse/") == 3 and TemplateSet(str(my_templates)).hash in out
    out = cli("prompt", "render", "analyse", "--example", 2, "--data", tiny_beir, "--set", "max_prompt_words=20")
    words = rec.positives[0].full_text.split()
    assert "Relevant document: " + " ".join(words[:20]) + " ...\n" in out and " ".join(words[:21]) not in out
    res = CliRunner().invoke(app, ["prompt", "render", "mar", "--example", 99, "--data", str(tiny_beir)])
    assert res.exit_code == 2 and "out of range" in res.output


def test_render_uses_a_generated_records_analysis_and_draft(tmp_path, tiny_beir):
    from scripted_backend import ScriptedBackend

    from negforge.synth.generate import generate_records

    src = records_of(tiny_beir, 1)
    out = tmp_path / "gen.jsonl"
    generated, _ = generate_records(
        src,
        None,
        GenerateConfig(cache_dir=None, num_negatives=2),
        show_progress=False,
        backend=ScriptedBackend(mar_reply),
    )
    write_records(out, generated)
    (rec,) = read_records(out)
    msgs, info = render_step(rec, GenerateConfig(), "reflect", 1)
    assert info == {
        "setting": {k: v for k, v in rec.negatives[1].provenance.attributes.items() if k != "flip_value"},
        "analysis": "from the record",
        "draft": "from the record",
    }
    assert f"Draft hard negative: {rec.negatives[1].text}" in msgs[0]["content"]
    text = cli("prompt", "render", "mar_generate", "--input", out)
    assert "- entities: protein X" in text and "# analysis: from the record" in text


def test_try_writes_markdown_and_html_reports(tmp_path, tiny_beir):
    with FaultServer(reply_fn=mar_reply) as srv:
        out = tmp_path / "trial"
        text = cli(
            "prompt",
            "try",
            "--sample",
            2,
            "--output",
            out,
            "--data",
            tiny_beir,
            "--quiet",
            "--set",
            f"llm.base_url={srv.base_url}",
            "--set",
            "cache_dir=null",
            "--set",
            "num_negatives=2",
        )
    assert "verifier kept-rate" in text and "mean cosine gap to the positive" in text
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    scored = read_records(out / "trial.verified.jsonl")
    chosen = sample_records(records_of(tiny_beir, 100), 2, 0)
    assert [r.id for r in scored] == [r.id for r in chosen] and len(scored) == 2
    for r in scored:
        assert r.query in md and r.positives[0].full_text in md
        for n in r.negatives:
            assert n.text in md and n.verdict is not None and "embedding" in n.scores
            assert f"cosine {n.scores['embedding']:.3f} vs positive {n.scores['embedding_pos']:.3f}" in md
            assert f"flip {n.provenance.attributes['flip']}" in md
    assert "round 1: keep (fine)" in md and "<table>" in page and "round 1: keep (fine)" in page
    stats = json.loads((out / "report.json").read_text())["trial"]
    assert stats["drafts"] == 4 and stats["parse_failures"] == 0 and 0 <= stats["verifier_kept_rate"] <= 1


def test_resolve_set_errors(tmp_path, my_templates):
    assert resolve_set(str(my_templates)) == (str(my_templates), None)
    assert resolve_set("mar") == ("mar", None)
    from negforge.synth.errors import ConfigError

    with pytest.raises(ConfigError, match="no template set 'nope'"):
        resolve_set("nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="empty/space.yaml: missing"):
        resolve_set(str(tmp_path / "empty"))


@pytest.mark.slow
def test_compare_two_template_sets_with_the_local_server(tmp_path, tiny_beir, local_server, my_templates):
    out = tmp_path / "cmp"
    text = cli(
        "prompt",
        "compare",
        "mar",
        my_templates,
        "--sample",
        2,
        "--output",
        out,
        "--data",
        tiny_beir,
        "--quiet",
        "--set",
        f"llm.base_url={local_server.base_url}",
        "--set",
        "llm.concurrency=2",
        "--set",
        "llm.timeout_s=900",
        "--set",
        "llm.params.max_tokens=160",
        "--set",
        "num_negatives=1",
        "--set",
        "reflection_rounds=0",
        "--set",
        "max_prompt_words=80",
        "--set",
        f"cache_dir={tmp_path / 'cache'}",
    )
    assert "A (mar," in text and "B (terse," in text
    stats = json.loads((out / "compare.json").read_text())
    assert stats["A"]["template_hash"] != stats["B"]["template_hash"] and Path(stats["B"]["template"]).name == "terse"
    for s in stats.values():
        assert s["records"] == 2 and s["drafts"] == 2 and s["completion_tokens"] > 0
        assert s["parse_failures"] + s["rejected_other"] + s["negatives"] == s["drafts"]
    md, page = (out / "compare.md").read_text(), (out / "compare.html").read_text()
    assert "### A" in md and "### B" in md and md.count("## ") >= 2
    for label in ("A", "B"):
        for r in read_records(out / f"{label}.verified.jsonl"):
            assert r.query in md and all(n.text in md and "embedding" in n.scores for n in r.negatives)
    assert page.count("<h2>") == 2
