"""MAR generation: parsing of junk replies, re-ask then reject, job counts and provenance (scripted
backend); a real run through the bundled SmolLM2 on the local xllamacpp server; the CLI, sharding and
merge; resume after SIGKILL and faults against the fault-injecting OpenAI-compatible server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_server import ALWAYS_JUNK, FaultServer, mar_reply
from scripted_backend import ScriptedBackend

from negforge.synth.attributes import sample_setting
from negforge.synth.config import GenerateConfig, LLMConfig, ProfileConfig
from negforge.synth.draft_checks import copies_positive, talks_about_the_task
from negforge.synth.errors import ConfigError
from negforge.synth.generate import generate_records
from negforge.synth.io import read_records, write_records
from negforge.synth.job import TooManyFailures, run_generate_job
from negforge.synth.params import GenParams
from negforge.synth.parsing import DraftReply, ParseError, ReflectionReply, analysis_model, parse_reply
from negforge.synth.schema import Passage, Record, Source, Status
from negforge.synth.templates import TemplateSet

ROOT = Path(__file__).resolve().parents[1]
POSITIVE = (
    "Vitamin D supplementation reduced the incidence of influenza A in schoolchildren by forty "
    "percent in a randomised, double-blind, placebo-controlled trial in Japan during one winter."
)


def rec(i: int, extra: str = "") -> Record:
    return Record(
        id=f"q{i}",
        query=f"Vitamin D prevents influenza in children [r{i}]{extra}",
        positives=[Passage(text=POSITIVE, doc_id=f"d{i}")],
    )


def cfg(**kw) -> GenerateConfig:
    base = dict(
        num_negatives=2,
        reflection_rounds=1,
        max_reasks=1,
        seed=7,
        cache_dir=None,
        batch_size=4,
        llm=LLMConfig(params=GenParams(max_tokens=200, temperature=0.0)),
        profile=ProfileConfig(describe_with_llm=False),
    )  # no extra call for the corpus description
    return GenerateConfig(**{**base, **kw})


def step(conv: list[dict]) -> str:
    first = conv[0]["content"]
    return (
        "analyse" if "List the attributes" in first else "generate" if "Write a hard negative" in first else "reflect"
    )


# -- parsing ---------------------------------------------------------------------------------------
def test_parse_reply_tolerates_harmless_junk_and_rejects_the_rest():
    ok = 'Sure! Here it is:\n```json\n{"reasoning": ["a", "b"], "text": "' + "word " * 12 + '"}\n```'
    v, repaired = parse_reply(ok, DraftReply)
    assert v.passage.startswith("word word") and v.reasoning == "a, b" and not repaired
    with pytest.raises(ParseError, match="no complete JSON object"):
        parse_reply("I cannot help with that.", DraftReply)
    with pytest.raises(ParseError, match="has 3 words"):
        parse_reply('{"passage": "too short here"}', DraftReply)
    with pytest.raises(ParseError, match="passage: missing"):
        parse_reply('{"reasoning": "x"}', DraftReply)
    # cut off at max_tokens: closed, trimmed to the last full sentence, marked repaired
    cut = '{"reasoning": "r", "passage": "' + "One two three four five six seven eight. Nine ten eleven"
    v, repaired = parse_reply(cut, DraftReply, finish_reason="length")
    assert repaired and v.passage == "One two three four five six seven eight."
    with pytest.raises(ParseError, match="cut off at max_tokens"):
        parse_reply('{"reasoning": "r", "pass', DraftReply, finish_reason="length")
    # reflection: synonyms and case are fine; a revise needs its text; an unknown decision is named
    assert parse_reply('{"verdict": "Reject", "reason": "answers it"}', ReflectionReply)[0].decision == "drop"
    with pytest.raises(ParseError, match="needs the revised text"):
        parse_reply('{"decision": "revise"}', ReflectionReply)
    with pytest.raises(ParseError, match="decision"):
        parse_reply('{"decision": "maybe"}', ReflectionReply)
    model = analysis_model(("topic", "entities"))
    assert parse_reply('{"topic": "flu", "entities": "N/A"}', model)[0].entities == ""
    with pytest.raises(ParseError, match="no attribute filled in"):
        parse_reply('{"topic": "none", "entities": ""}', model)


def test_settings_are_seeded_and_flip_a_found_attribute():
    a = sample_setting(3, "q1", 0, 120, ["entities", "scope"])
    assert a == sample_setting(3, "q1", 0, 120, ["entities", "scope"])
    assert a["flip"] in ("entities", "scope")
    draws = {json.dumps(sample_setting(s, "q1", 0, 120), sort_keys=True) for s in range(20)}
    assert len(draws) > 3  # the seed matters


# -- the flow over a scripted backend -----------------------------------------------------------------
def test_reask_with_the_error_then_reject_with_reason_and_counts(tmp_path):
    """r0: a junk first draft is re-asked with the validation error and then succeeds; r1: every generate
    reply is junk, so its drafts are rejected with the parse error after one re-ask; r2: the reflection
    drops one draft (kept on the record, rejected verdict) and the other copies the positive (left out)."""
    r2_generate = []

    def reply(conv):
        s, first = step(conv), conv[0]["content"]
        if s == "generate" and "[r0]" in first and len(conv) == 1:
            return "Here is a passage: none"
        if s == "generate" and "[r1]" in first:
            return "no json here"
        if s == "generate" and "[r2]" in first:
            r2_generate.append(1)
            if len(r2_generate) == 1:
                return json.dumps({"reasoning": "r", "passage": POSITIVE})
        if s == "reflect" and "[r2]" in first:
            return '{"decision": "drop", "reason": "it answers the query"}'
        return mar_reply(conv)

    backend = ScriptedBackend(reply, model="smol-test")
    out = tmp_path / "out.jsonl"
    summary = run_generate_job([rec(0), rec(1), rec(2)], cfg(), out, show_progress=False, backend=backend)
    records = {r.id: r for r in read_records(out)}
    assert list(records) == ["q0", "q1", "q2"]
    # the re-ask carries the junk reply and the error, then the format again
    reasks = [c for c, _ in backend.seen if len(c) == 3]
    assert len(reasks) == 4 and all(
        c[1]["role"] == "assistant" and "could not be used" in c[2]["content"] and '"passage"' in c[2]["content"]
        for c in reasks
    )
    assert all("no complete JSON object" in c[2]["content"] for c in reasks)
    assert summary.reasks == {"generate": 4}
    # r0: both drafts recovered on the re-ask; r1: both rejected; r2: one copy (left out), one dropped
    assert len(records["q0"].negatives) == 2 and all(n.verdict is None for n in records["q0"].negatives)
    assert records["q1"].negatives == []
    (dropped,) = records["q2"].negatives
    assert dropped.verdict.status == Status.rejected and dropped.verdict.rule == "reflection"
    assert dropped.verdict.reason == "it answers the query"
    assert dropped.provenance.extra["reflection"][0]["decision"] == "drop"
    assert summary.drafts == 6 and summary.records_done == 3
    assert dict(summary.status) == {"kept": 2, "dropped": 1, "rejected": 3}
    assert dict(summary.reasons) == {"parse_error": 2, "copies_positive": 1, "reflection_drop": 1}
    table = summary.table()
    assert "parse_error 2" in table and "6: 2 kept, 1 dropped (on the record, rejected), 3 rejected" in table


def test_provenance_on_every_llm_negative(tmp_path):
    backend = ScriptedBackend(mar_reply, model="smol-test")
    c = cfg(num_negatives=3, seed=11)
    out = tmp_path / "out.jsonl"
    run_generate_job([rec(0)], c, out, show_progress=False, backend=backend)
    (r,) = read_records(out)
    assert r.meta["llm_analysis"]["entities"] == "protein X" and len(r.negatives) == 3
    expected_hash = TemplateSet("mar").hash
    for i, n in enumerate(r.negatives):
        p = n.provenance
        assert n.source == Source.llm and n.doc_id is None and n.verdict is None
        assert p.model == "smol-test" and p.template == "mar" and p.template_hash == expected_hash
        assert p.seed == 11 and p.rounds == 1 and p.extra["index"] == i
        assert p.extra["reflection"] == [{"round": 1, "decision": "keep", "reason": "fine"}]
        # the setting sampled for this draft (flip among the attributes the analysis found) + the flipped value
        setting = sample_setting(
            11, "q0", i, len(POSITIVE.split()), ["topic", "entities", "scope"], max_words=int((200 - 60) / 1.4)
        )
        assert p.attributes == {**setting, "flip_value": p.attributes["flip_value"]}
        assert p.attributes["flip"] in ("entities", "scope")
        assert p.attributes["flip_value"] == {"entities": "protein X", "scope": "adult mice"}[p.attributes["flip"]]
    assert not copies_positive(r.negatives[0].text, r) and copies_positive(POSITIVE, r)


def test_drafts_about_the_task_are_rejected(tmp_path):
    meta = json.dumps(
        {"passage": "The passage is hard yet does not answer the query, as it is hard to tell.", "reasoning": "r"}
    )
    backend = ScriptedBackend(lambda conv: meta if step(conv) == "generate" else mar_reply(conv))
    s = run_generate_job([rec(0)], cfg(), tmp_path / "o.jsonl", show_progress=False, backend=backend)
    assert dict(s.reasons) == {"meta_text": 2} and dict(s.status) == {"dropped": 2}
    negs = read_records(tmp_path / "o.jsonl")[0].negatives
    assert len(negs) == 2 and all(
        n.verdict.rule == "meta_text" and n.verdict.status == Status.rejected and n.provenance.rounds == 0 for n in negs
    )
    assert len(backend.seen) == 3  # no reflection asked for them
    assert not talks_about_the_task(POSITIVE, TemplateSet("mar").space.draft_checks.meta_phrases)


def test_filler_in_the_analysis_is_dropped(tmp_path):
    filler = json.dumps(
        {
            "topic": "The main subject",
            "entities": "vitamin D",
            "intent": "x y",
            "time": "x y",
            "place": "x y",
            "quantity": "quantity",
            "key_fact": "it cut influenza by 40%",
        }
    )
    backend = ScriptedBackend(lambda conv: filler if step(conv) == "analyse" else mar_reply(conv))
    s = run_generate_job([rec(0)], cfg(num_negatives=3), tmp_path / "o.jsonl", show_progress=False, backend=backend)
    (r,) = read_records(tmp_path / "o.jsonl")
    assert r.meta["llm_analysis"] == {"entities": "vitamin D", "key_fact": "it cut influenza by 40%"}
    assert s.analysis_filler == 5 and "5 filler analysis values dropped" in s.table()
    assert all(n.provenance.attributes["flip"] == "entities" for n in r.negatives)  # the one real attribute


def test_backend_failures_fail_the_record_and_template_errors(tmp_path):
    """A draft whose call failed at the backend fails its record: not in the output, listed with the error."""
    backend = ScriptedBackend(
        lambda conv: (
            RuntimeError("boom") if step(conv) == "generate" and "[r0]" in conv[0]["content"] else mar_reply(conv)
        )
    )
    out = tmp_path / "o.jsonl"
    with pytest.raises(TooManyFailures, match=r"1 of 2 records failed") as e:
        run_generate_job([rec(0), rec(1)], cfg(), out, show_progress=False, backend=backend)
    s = e.value.report
    assert s.records_failed == 1 and s.records_done == 1 and s.reasks.get("generate", 0) == 0
    assert s.drafts == 2 and "backend_error" not in s.reasons  # only the done record's drafts are counted
    assert [r.id for r in read_records(out)] == ["q1"]
    (row,) = [json.loads(x) for x in Path(f"{out}.failures.jsonl").read_text().splitlines()]
    assert row["id"] == "q0" and row["step"] == "generate" and "boom" in row["error"]
    # the pure stage: the same records, the failed one held back with its error
    done, rep = generate_records([rec(0), rec(1)], None, cfg(), backend=backend, show_progress=False)
    assert [r.id for r in done] == ["q1"] and [f.id for f in rep.failed] == ["q0"] and rep.outcome == "failures"
    with pytest.raises(ConfigError, match="no template set 'nope'.*built in: counterfactual, mar, mar_scifact"):
        run_generate_job([rec(1)], cfg(template="nope"), tmp_path / "p.jsonl", show_progress=False, backend=backend)


# -- the real bundled model --------------------------------------------------------------------------
@pytest.mark.slow
def test_real_run_through_the_local_server(tiny_beir, local_server, tmp_path, monkeypatch):
    monkeypatch.setenv(
        "NEGFORGE_MODEL", "SmolLM2-135M-Instruct"
    )  # the name we send; /v1/models would give the GGUF path
    from negforge.synth.data import load_beir, records_from_beir

    records = records_from_beir(load_beir(tiny_beir, "train"), 3)
    c = cfg(
        num_negatives=1,
        max_prompt_words=80,
        llm=LLMConfig(
            base_url=local_server.base_url,
            model="SmolLM2-135M-Instruct",
            concurrency=2,
            timeout_s=900,
            params=GenParams(max_tokens=200, temperature=0.7, seed=0),
        ),
    )
    out = tmp_path / "gen.jsonl"
    s = run_generate_job(records, c, out, show_progress=False)
    got = read_records(out)
    assert [r.id for r in got] == [r.id for r in records]
    assert s.usage["completion_tokens"] > 0 and s.usage["failed"] == 0 and s.drafts == 3
    negs = [n for r in got for n in r.negatives]
    assert negs, s.table()  # the weak model still gets some drafts through parsing
    for n in negs:
        assert n.source == Source.llm and len(n.text.split()) >= 8
        assert n.provenance.model == "SmolLM2-135M-Instruct" and n.provenance.template_hash == TemplateSet().hash
        meta = n.verdict is not None and n.verdict.rule == "meta_text"  # 135M often writes about the task
        assert n.provenance.attributes["flip"] and n.provenance.rounds == (0 if meta else 1)
    assert sum(s.status.values()) == s.drafts
    # a rerun resumes: nothing left to do, no server call
    again = run_generate_job(records, c, out, show_progress=False)
    assert again.records_skipped == 3 and again.records_done == 0 and read_records(out) == got


# -- CLI, shards, merge ------------------------------------------------------------------------------
def cli(*args: str):
    from typer.testing import CliRunner

    from negforge.synth.cli import app

    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res.output


@pytest.fixture
def mar_server():
    with FaultServer(reply_fn=mar_reply) as s:
        yield s


def write_cfg(path: Path, base_url: str, **extra) -> Path:
    import yaml

    doc = {
        "llm": {
            "base_url": base_url,
            "model": "fault-mar",
            "concurrency": 4,
            "timeout_s": 30,
            "params": {"max_tokens": 200, "temperature": 0.0},
        },
        "num_negatives": 2,
        "reflection_rounds": 1,
        "seed": 3,
        "cache_dir": None,
        **extra,
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def test_cli_shards_and_merge_equal_the_unsharded_run(tiny_beir, mar_server, tmp_path):
    conf = write_cfg(tmp_path / "gen.yaml", mar_server.base_url)
    full = tmp_path / "full.jsonl"
    out = cli("generate", conf, "--data", tiny_beir, "--output", full, "--limit", 8, "--quiet")
    assert "8 selected, 0 already done, 8 generated" in out and "drafts   16:" in out
    summary = json.loads(Path(f"{full}.summary.json").read_text())
    assert summary["records_done"] == 8 and sum(summary["status"].values()) == 16
    # deterministic replies: only two drafts with the same sampled setting can clash (a duplicate)
    assert set(summary["reasons"]) <= {"duplicate"}
    shards = []
    for i in range(2):
        shards.append(tmp_path / f"shard{i}.jsonl")
        cli(
            "generate",
            "--config",
            conf,
            "--data",
            tiny_beir,
            "--output",
            shards[-1],
            "--limit",
            8,
            "--shard",
            i,
            "--num-shards",
            2,
            "-q",
        )
    sizes = [len(read_records(s)) for s in shards]
    assert sum(sizes) == 8 and min(sizes) > 0
    merged = tmp_path / "merged.jsonl"
    assert "merged 8 records from 2 files" in cli("merge", merged, *shards, "--order", tiny_beir)
    assert read_records(merged) == read_records(full)  # same ids, same order, same negatives
    # a shard from another job (other seed) under the same ids is refused, naming the record and files
    other = tmp_path / "other.jsonl"
    cli(
        "generate",
        conf,
        "--data",
        tiny_beir,
        "--output",
        other,
        "--limit",
        8,
        "--shard",
        0,
        "--num-shards",
        2,
        "--set",
        "seed=4",
        "-q",
    )
    from typer.testing import CliRunner

    from negforge.synth.cli import app

    res = CliRunner().invoke(app, ["merge", str(tmp_path / "bad.jsonl"), str(shards[0]), str(other)])
    assert res.exit_code == 2 and "differs between" in res.output


def test_cli_errors_are_one_line(tmp_path, tiny_beir):
    from typer.testing import CliRunner

    from negforge.synth.cli import app

    res = CliRunner().invoke(app, ["generate", "--output", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 2 and "exactly one of --data" in res.output
    res = CliRunner().invoke(
        app,
        [
            "generate",
            "--data",
            str(tiny_beir),
            "--output",
            str(tmp_path / "o.jsonl"),
            "--shard",
            "2",
            "--num-shards",
            "2",
        ],
    )
    assert res.exit_code == 2 and "shard" in res.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "query": "q", "positives": [{"text": "p"}]}\n{"id": "b", "query": ""}\n')
    res = CliRunner().invoke(app, ["generate", "--input", str(bad), "--output", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 2 and f"{bad}:2" in res.output


@pytest.mark.slow
def test_cli_generate_with_the_local_server(tiny_beir, local_server, tmp_path):
    out = tmp_path / "gen.jsonl"
    args = [
        "generate",
        "--data",
        tiny_beir,
        "--output",
        out,
        "--limit",
        2,
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
    ]
    text = cli(*args)
    assert "2 selected, 0 already done, 2 generated" in text and "completion" in text
    got = read_records(out)
    assert [r.id for r in got] == [r.id for r in records_of(tiny_beir, 2)]
    assert all(n.source == Source.llm and n.provenance.template == "mar" for r in got for n in r.negatives)
    assert "2 selected, 2 already done, 0 generated" in cli(*args)  # rerun: resumes, nothing to do


def records_of(beir: Path, n: int) -> list[Record]:
    from negforge.synth.data import load_beir, records_from_beir

    return records_from_beir(load_beir(beir, "train"), n)


# -- resume after kill -9, faults ------------------------------------------------------------------------
def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path):
    from negforge.synth.config import load_config

    records = [rec(i) for i in range(8)]
    src = tmp_path / "in.jsonl"
    write_records(src, records)
    with FaultServer(reply_fn=mar_reply, delay_s=0.25) as srv:
        conf = write_cfg(tmp_path / "gen.yaml", srv.base_url, batch_size=1)
        ref = tmp_path / "ref.jsonl"
        run_generate_job(records, load_config(GenerateConfig, conf), ref, show_progress=False)
        out = tmp_path / "out.jsonl"
        cmd = [
            sys.executable,
            "-m",
            "negforge.synth.cli",
            "generate",
            str(conf),
            "--input",
            str(src),
            "--output",
            str(out),
            "-q",
        ]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if out.exists() and out.read_text().count("\n") >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the job finished before it could be killed: " + proc.stdout.read().decode()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        partial = read_records(out)
        assert 2 <= len(partial) < len(records)
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
    summary = json.loads(Path(f"{out}.summary.json").read_text())
    last = summary["runs"][-1]  # the killed run's counts are in the file too (checkpointed per batch)
    assert last["records_skipped"] == len(partial) and last["records_done"] == 8 - len(partial)
    assert summary["records_in_output"] == 8 and summary["records_failed"] == 0 and last["outcome"] == "ok"
    assert len(summary["runs"]) == 2 and summary["runs"][0]["outcome"] == "running"  # killed: never finished
    assert not Path(f"{out}.lock").exists() and not Path(f"{out}.failures.jsonl").exists()
    assert read_records(out) == read_records(ref)  # record for record: no loss, no duplicate
    assert out.read_text() == ref.read_text()


def test_faults_retry_succeed_and_junk_is_rejected_with_counts(tmp_path, monkeypatch):
    from negforge.synth.backends.openai_backend import OpenAIBackend

    monkeypatch.setattr(OpenAIBackend, "backoff_s", 0.02)
    monkeypatch.setattr(OpenAIBackend, "jitter_s", 0.02)
    plan = {
        "[r0]": [("429", 1), "500"],  # analyse: rate limited, then a server error, then fine
        "[r1]": [("hang", 2.5)],  # analyse: times out (timeout_s=1), retried
        "[r2]": ["ok", "junk_body", "no_choices"],  # both drafts: a malformed HTTP 200, retried
        "[r3]": ["ok", "junk_content"],
    }  # one draft: unparseable text, re-asked, fine
    records = [rec(0), rec(1), rec(2), rec(3), rec(4, " " + ALWAYS_JUNK), rec(5)]
    with FaultServer(plan, reply_fn=mar_reply) as srv:
        c = cfg(
            batch_size=6,
            llm=LLMConfig(
                base_url=srv.base_url,
                model="fault-mar",
                concurrency=4,
                timeout_s=1,
                max_retries=3,
                params=GenParams(max_tokens=200, temperature=0.0),
            ),
        )
        s = run_generate_job(records, c, tmp_path / "out.jsonl", show_progress=False)
        assert srv.count("429") == 1 and srv.count("500") == 1 and srv.count("hang") == 1
        assert srv.count("junk_body") == 1 and srv.count("no_choices") == 1 and srv.count("junk_content") == 1
        # each step sends its reply schema (json_schema response format), re-asks included
        required = {tuple(b["response_format"]["json_schema"]["schema"]["required"]) for b in srv.requests}
        assert ("passage", "reasoning") in required and ("reasoning", "decision", "reason") in required
        assert len(required) == 3 and all(b["response_format"]["type"] == "json_schema" for b in srv.requests)
    got = {r.id: r for r in read_records(tmp_path / "out.jsonl")}
    assert list(got) == [f"q{i}" for i in range(6)]
    assert s.usage["retries"] == 5 and s.usage["failed"] == 0 and s.analysis_failed == 0
    assert s.reasks == {"generate": 3}  # one junk_content draft + the two always-junk drafts
    assert dict(s.reasons) == {"parse_error": 2} and s.records_failed == 0
    assert dict(s.status) == {"kept": 10, "rejected": 2} and s.drafts == 12
    assert got["q4"].negatives == []  # the model's junk text: rejected drafts, the record is done
    assert all(len(got[f"q{i}"].negatives) == 2 for i in (0, 1, 2, 3, 5))
    assert "parse_error 2" in s.table()
