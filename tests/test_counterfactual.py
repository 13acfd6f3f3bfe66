"""The counterfactual flow (requirements -> rewrite -> reflect): scripted replies for the parsing, the
seeded choice of the broken requirement, the check's overrule and the copy threshold; then the real
bundled model through the local server for both flows."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from scripted_backend import ScriptedBackend

from negforge.synth.config import GenerateConfig, LLMConfig, ProfileConfig
from negforge.synth.counterfactual import FALLBACK_REQUIREMENT, CounterfactualFlow
from negforge.synth.flows import FLOWS, make_flow
from negforge.synth.gen_report import GenerateReport as JobSummary
from negforge.synth.io import read_records
from negforge.synth.job import run_generate_job
from negforge.synth.mar import MarFlow
from negforge.synth.params import GenParams
from negforge.synth.schema import Passage, Record, Status
from negforge.synth.templates import TemplateSet

POSITIVE = (
    "The Riverside public library opens at 9 am on weekdays and at 10 am on Saturdays. It is closed on "
    "Sundays. Members can borrow up to twelve books for three weeks, and the reading room has free wifi."
)
REQS = ["the Riverside public library", "opening time on Saturdays", "10 am"]


def rec(i: int) -> Record:
    return Record(
        id=f"c{i}",
        query=f"what time does riverside library open on saturday [r{i}]",
        positives=[Passage(text=POSITIVE, doc_id=f"d{i}")],
    )


def cfg(**kw) -> GenerateConfig:
    base = dict(
        template="counterfactual",
        num_negatives=3,
        reflection_rounds=1,
        max_reasks=1,
        seed=3,
        cache_dir=None,
        llm=LLMConfig(params=GenParams(max_tokens=300, temperature=0.0)),
        profile=ProfileConfig(describe_with_llm=False),
    )
    return GenerateConfig(**{**base, **kw})


def step(conv) -> str:
    p = conv[0]["content"]
    return (
        "requirements"
        if "List the information requirements" in p
        else "rewrite"
        if "Rewrite a document" in p
        else "reflect"
        if "You check hard negatives" in p
        else "?"
    )


def replies(rewrite=None, check=None):
    def fn(conv):
        s = step(conv)
        if s == "requirements":
            return json.dumps({"requirements": "1. " + "\n2. ".join(REQS)})  # a numbered string, not a list
        if s == "rewrite":
            n = re.search(r"Break requirement (\d+)", conv[0]["content"]).group(1)
            edited = POSITIVE.replace("10 am on Saturdays", f"{n} pm on Saturdays")
            text = rewrite(conv) if rewrite else edited
            return json.dumps({"passage": text, "reasoning": "changed the Saturday time"})
        if s == "reflect":
            return json.dumps(check or {"broken": "yes", "unchanged": "yes", "decision": "keep", "reason": "ok"})
        raise AssertionError(conv)

    return fn


def test_flows_are_registered_and_the_set_names_its_flow():
    assert FLOWS.names() == ["counterfactual", "mar"]
    ts = TemplateSet("counterfactual")
    assert ts.flow == "counterfactual" and ts.steps == ("requirements", "rewrite", "reflect")
    assert isinstance(make_flow(None, cfg(), JobSummary()), CounterfactualFlow)
    assert type(make_flow(None, cfg(template="mar"), JobSummary())) is MarFlow


def test_counterfactual_run_with_scripted_replies(tmp_path):
    backend = ScriptedBackend(replies(), model="cf-test")
    s = run_generate_job([rec(0), rec(1)], cfg(), tmp_path / "o.jsonl", show_progress=False, backend=backend)
    assert s.drafts == 6 and dict(s.status) == {"kept": 6} and s.analysis_failed == 0
    assert backend.batches == [2, 6, 6]  # one call per step over the whole batch
    out = read_records(tmp_path / "o.jsonl")
    for r in out:
        assert r.meta["llm_requirements"] == REQS
        idx = [n.provenance.attributes["requirement_index"] for n in r.negatives]
        assert sorted(idx) == [0, 1, 2]  # three drafts break three different requirements (seeded order)
        for n in r.negatives:
            a = n.provenance.attributes
            assert a["requirement"] == REQS[a["requirement_index"]] and a["edit"] in ("contradict", "remove")
            assert n.provenance.template == "counterfactual" and n.provenance.extra["flow"] == "counterfactual"
            assert n.provenance.template_hash == TemplateSet("counterfactual").hash
            assert a["length_words"] == 40  # the positive's length (39 words), rounded; factor 1.0
    # the rewrite prompt names the requirement it must break and lists them all
    rewrite = [c for c, _ in backend.seen if step(c) == "rewrite"][0][0]["content"]
    assert all(f"{i}. {q}" in rewrite for i, q in enumerate(REQS, 1)) and "Break requirement" in rewrite
    # the same job again samples the same requirements and edits
    run_generate_job(
        [rec(0), rec(1)], cfg(), tmp_path / "p.jsonl", show_progress=False, backend=ScriptedBackend(replies())
    )
    assert [n.provenance.attributes for r in read_records(tmp_path / "p.jsonl") for n in r.negatives] == [
        n.provenance.attributes for r in out for n in r.negatives
    ]


def test_the_check_overrules_a_keep_when_the_requirement_is_intact_or_more_changed(tmp_path):
    for check, why in [
        (
            {"broken": "no", "unchanged": "yes", "decision": "keep", "reason": "still 10 am"},
            "the check says the requirement is still met: still 10 am",
        ),
        (
            {"broken": "yes", "unchanged": "No.", "decision": "keep", "reason": "name changed"},
            "the check says more than the requirement changed: name changed",
        ),
    ]:
        out = tmp_path / f"{why[:20]}.jsonl"
        s = run_generate_job(
            [rec(0)], cfg(num_negatives=1), out, show_progress=False, backend=ScriptedBackend(replies(check=check))
        )
        (n,) = read_records(out)[0].negatives
        assert n.verdict.status == Status.rejected and n.verdict.rule == "reflection" and n.verdict.reason == why
        assert dict(s.reasons) == {"reflection_drop": 1}


def test_copy_threshold_comes_from_the_set(tmp_path):
    """A one-sentence edit of the positive is what the flow asks for; only a verbatim copy is rejected."""
    s = run_generate_job(
        [rec(0)], cfg(num_negatives=1), tmp_path / "a.jsonl", show_progress=False, backend=ScriptedBackend(replies())
    )
    assert dict(s.status) == {"kept": 1}
    s = run_generate_job(
        [rec(0)],
        cfg(num_negatives=1),
        tmp_path / "b.jsonl",
        show_progress=False,
        backend=ScriptedBackend(replies(rewrite=lambda conv: POSITIVE)),
    )
    assert dict(s.reasons) == {"copies_positive": 1}
    # the mar set (copy_share 0.5) would have called the one-sentence edit a copy
    from negforge.synth.draft_checks import copies_positive

    edit = POSITIVE.replace("10 am on Saturdays", "noon on Saturdays")
    assert copies_positive(edit, rec(0), TemplateSet("mar").space.draft_checks.copy_share)
    assert not copies_positive(edit, rec(0), TemplateSet("counterfactual").space.draft_checks.copy_share)


def test_unparseable_requirements_fall_back_and_are_counted(tmp_path):
    def fn(conv):
        return "no json here" if step(conv) == "requirements" else replies()(conv)

    s = run_generate_job(
        [rec(0)], cfg(num_negatives=1), tmp_path / "o.jsonl", show_progress=False, backend=ScriptedBackend(fn)
    )
    assert s.analysis_failed == 1 and s.reasks == {"requirements": 1} and s.status["kept"] == 1
    r = read_records(tmp_path / "o.jsonl")[0]
    assert r.meta["llm_requirements"] == []
    assert {n.provenance.attributes["requirement"] for n in r.negatives} == {FALLBACK_REQUIREMENT}


# -- both flows, the real bundled model -----------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("template", ["mar", "counterfactual"])
def test_both_flows_run_for_real_through_the_local_server(template, local_server, tmp_path):
    from negforge.synth.data import load_beir, records_from_beir

    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "trec-dl-2019"
    records = records_from_beir(load_beir(data, "test"), 2)
    c = cfg(
        template=template,
        num_negatives=1,
        reflection_rounds=1,
        cache_dir=str(tmp_path / "cache"),
        max_prompt_words=80,
        profile=ProfileConfig(corpus=str(data), examples=2, example_words=30),
        llm=LLMConfig(
            base_url=local_server.base_url,
            concurrency=2,
            timeout_s=900,
            params=GenParams(max_tokens=220, temperature=0.0),
        ),
    )
    s = run_generate_job(records, c, tmp_path / "out.jsonl", show_progress=False)
    out = read_records(tmp_path / "out.jsonl")
    assert [r.id for r in out] == [r.id for r in records] and s.records_done == 2 and s.drafts == 2
    assert s.usage["completion_tokens"] > 0 and s.usage["calls"] >= 5  # description + 3 steps (+ re-asks)
    assert sum(s.status.values()) == 2
    for r in out:
        for n in r.negatives:
            assert n.provenance.extra["flow"] == template and "SmolLM2-135M-Instruct" in n.provenance.model
            assert len(n.text.split()) >= 8
    # the profile was written once, with the LLM's description, and is reused (no new call) on a rerun
    profiles = list((tmp_path / "cache" / "profiles").glob("*.json"))
    assert len(profiles) == 1
    stored = json.loads(profiles[0].read_text())
    assert stored["source"] == str(data) and stored["n_docs"] == 9139 and len(stored["examples"]) == 2
    print(f"\n[{template}] description: {stored['description']!r}; summary: {s.to_dict()}")
    for r in out:
        shown = [(n.text[:200], n.verdict.reason if n.verdict else "kept") for n in r.negatives]
        print(f"[{template}] {r.query!r} -> {shown}")


def test_an_echoed_format_is_not_a_requirement():
    from negforge.synth.parsing import ParseError, RequirementsReply, parse_reply

    with pytest.raises(ParseError, match="in your own words"):
        parse_reply(RequirementsReply.FORMAT, RequirementsReply)
    assert parse_reply('{"requirements": ["<requirement 1>", "the opening time"]}', RequirementsReply)[
        0
    ].requirements == ["the opening time"]
