"""A batch job never calls a failure done: full outage, server death mid-step, two writers, config
changes on resume, stamps that do not match their output, and every bad input as one line with exit 2.
Against the fault-injecting OpenAI-compatible server on 127.0.0.1 (tests/fault_server.py), through the
real CLI entry point."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from fault_server import FaultServer, mar_reply

from negforge.synth.io import read_records, write_records
from negforge.synth.schema import Passage, Record

ROOT = Path(__file__).resolve().parents[1]
POSITIVE = "A randomised trial found that the treatment cut the outcome by forty percent over two years of follow-up."


def rec(i: int) -> Record:
    return Record(id=f"q{i}", query=f"Does the treatment cut the outcome [r{i}]", positives=[Passage(text=POSITIVE)])


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    from negforge.synth.backends.openai_backend import OpenAIBackend

    monkeypatch.setattr(OpenAIBackend, "backoff_s", 0.01)
    monkeypatch.setattr(OpenAIBackend, "jitter_s", 0.01)


def conf(path: Path, base_url: str, **extra) -> Path:
    doc = {
        "llm": {
            "base_url": base_url,
            "model": "fault-mar",
            "concurrency": 4,
            "timeout_s": 5,
            "max_retries": 2,
            "params": {"max_tokens": 200, "temperature": 0.0},
        },
        "num_negatives": 2,
        "reflection_rounds": 1,
        "seed": 3,
        "cache_dir": None,
        "batch_size": 3,
        "profile": {"describe_with_llm": False},
        **extra,
    }  # no description call: request counts stay exact
    path.write_text(yaml.safe_dump(doc))
    return path


def cli(*args, code: int = 0):
    from typer.testing import CliRunner

    from negforge.synth.cli import app

    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == code, f"exit {res.exit_code}: {res.output}{res.exception!r}"
    return res.output


def one_error_line(output: str) -> str:
    """The output holds exactly one ``error:`` line and no traceback; returns it."""
    assert "Traceback" not in output, output
    errors = [ln for ln in output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, output
    return errors[0]


def inputs(tmp_path: Path, n: int) -> Path:
    src = tmp_path / "in.jsonl"
    write_records(src, [rec(i) for i in range(n)])
    return src


def failures(out: Path) -> dict[str, dict]:
    f = Path(f"{out}.failures.jsonl")
    return {r["id"]: r for r in map(json.loads, f.read_text().splitlines())} if f.exists() else {}


# -- outages -------------------------------------------------------------------------------------------
def test_full_outage_marks_nothing_done_and_a_rerun_completes_every_record(tmp_path):
    src, out = inputs(tmp_path, 5), tmp_path / "out.jsonl"
    with FaultServer(reply_fn=mar_reply) as srv:
        c = conf(tmp_path / "g.yaml", srv.base_url)
        srv.fail_all = "500"
        text = cli("generate", c, "--input", src, "--output", out, "-q", code=3)
        line = one_error_line(text)
        assert "5 of 5 records failed" in line and "failures.jsonl" in line and "5 failed" in text
        assert read_records(out) == [] if out.exists() else True  # nothing marked done
        rows = failures(out)
        assert sorted(rows) == [f"q{i}" for i in range(5)]
        assert all(
            r["step"] == "analyse" and "500" in r["error"] and "gave up after 3 attempts" in r["error"]
            for r in rows.values()
        )
        first = json.loads(Path(f"{out}.summary.json").read_text())
        assert first["outcome"] == "failures" and first["records_failed"] == 5 and first["records_in_output"] == 0
        # the server recovers: the rerun retries exactly the failed rows and completes every record
        srv.fail_all = None
        n_before = len(srv.requests)
        text = cli("generate", c, "--input", src, "--output", out, "-q")
        assert "5 selected, 0 already done, 5 generated, 0 failed" in text
        assert len(srv.requests) - n_before == 5 * 5  # analyse + 2 drafts + 2 reflections per record, no more
    got = read_records(out)
    assert [r.id for r in got] == [f"q{i}" for i in range(5)] and all(len(r.negatives) == 2 for r in got)
    assert failures(out) == {} and not Path(f"{out}.lock").exists()
    # the summary accumulates: both runs, totals over them
    s = json.loads(Path(f"{out}.summary.json").read_text())
    assert [r["outcome"] for r in s["runs"]] == ["failures", "ok"] and s["runs"][0]["records_failed"] == 5
    assert s["records_done"] == 5 and s["records_failed"] == 0 and s["records_in_output"] == 5
    assert s["usage"]["retries"] == sum(r["usage"]["retries"] for r in s["runs"]) >= 10
    # a third run has nothing to do and makes no call
    n = len(srv.requests)
    assert "5 already done, 0 generated" in cli("generate", c, "--input", src, "--output", out, "-q")
    assert len(srv.requests) == n


def test_server_death_mid_step_loses_nothing_and_marks_nothing_failed_as_done(tmp_path):
    src, out, ref = inputs(tmp_path, 6), tmp_path / "out.jsonl", tmp_path / "ref.jsonl"
    with FaultServer(reply_fn=mar_reply) as healthy:
        cli("generate", conf(tmp_path / "h.yaml", healthy.base_url), "--input", src, "--output", ref, "-q")
    # the server dies on the first draft of r4 (second batch): the first batch is done, the second is not
    with FaultServer({"[r4]": ["ok", "die"]}, reply_fn=mar_reply) as srv:
        from typer.testing import CliRunner

        from negforge.synth.cli import app

        res = CliRunner().invoke(
            app,
            ["generate", str(conf(tmp_path / "g.yaml", srv.base_url)), "--input", str(src), "--output", str(out), "-q"],
        )
    assert res.exit_code in (2, 3), res.output  # refused connections: the server cannot be used / too many failed
    one_error_line(res.output)
    done = read_records(out)
    ref_by_id = {r.id: r for r in read_records(ref)}
    assert [r.id for r in done] == ["q0", "q1", "q2"]  # the first batch, whole
    assert all(r == ref_by_id[r.id] for r in done)  # every record written is complete
    assert not set(failures(out)) & {r.id for r in done}
    # a rerun on a healthy server (another port) completes the rest: the output equals an uninterrupted run
    with FaultServer(reply_fn=mar_reply) as again:
        text = cli("generate", conf(tmp_path / "g2.yaml", again.base_url), "--input", src, "--output", out, "-q")
    assert "3 already done, 3 generated, 0 failed" in text
    assert out.read_text() == ref.read_text() and failures(out) == {}
    s = json.loads(Path(f"{out}.summary.json").read_text())
    assert s["runs"][0]["outcome"].startswith(("aborted", "failures")) and s["runs"][-1]["outcome"] == "ok"


# -- two writers ---------------------------------------------------------------------------------------
def test_a_second_job_on_the_same_output_is_refused_and_a_dead_owner_lock_is_taken_over(tmp_path):
    src, out = inputs(tmp_path, 8), tmp_path / "out.jsonl"
    with FaultServer(reply_fn=mar_reply, delay_s=0.2) as srv:
        c = conf(tmp_path / "g.yaml", srv.base_url, batch_size=1)
        cmd = [sys.executable, "-m", "negforge", "generate", str(c), "--input", str(src), "--output", str(out), "-q"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        lock = Path(f"{out}.lock")
        deadline = time.time() + 60
        while time.time() < deadline and not (lock.exists() and out.exists() and out.read_text().count("\n") >= 1):
            time.sleep(0.05)
        assert proc.poll() is None, proc.stdout.read().decode()
        n = len(srv.requests)
        line = one_error_line(cli("generate", c, "--input", src, "--output", out, "-q", code=2))
        assert f"pid {proc.pid}" in line and "being written by another job" in line
        assert json.loads(lock.read_text())["pid"] == proc.pid
        proc.send_signal(signal.SIGKILL)  # the owner dies holding the lock: the file stays, the flock goes
        proc.wait()
        assert lock.exists() and len(srv.requests) >= n
        text = cli("generate", c, "--input", src, "--output", out, "-q")
        assert "8 selected" in text and "0 failed" in text
    ids = [r.id for r in read_records(out)]
    assert sorted(ids) == sorted(f"q{i}" for i in range(8)) and len(ids) == len(set(ids)) == 8
    assert not lock.exists()


@pytest.mark.parametrize("command", ["mine", "verify", "mix"])
def test_mine_verify_and_mix_refuse_an_output_another_job_holds(command, tmp_path):
    from negforge.synth.outputs import OutputLock

    src, out = inputs(tmp_path, 2), tmp_path / f"{command}.jsonl"
    extra = ["--sources", "bm25"] if command == "mine" else ["--verifiers", "qrels"] if command == "verify" else []
    with OutputLock(out):
        line = one_error_line(cli(command, "--input", src, "--output", out, *extra, "-q", code=2))
    assert "being written by another job" in line and f"pid {os.getpid()}" in line and not out.exists()


def test_output_lock_unit(tmp_path):
    from negforge.synth.outputs import OutputLock, OutputLockedError

    target = tmp_path / "o.jsonl"
    with OutputLock(target) as a:
        assert json.loads(a.path.read_text())["pid"] == os.getpid()
        with pytest.raises(OutputLockedError, match=f"pid {os.getpid()}"):
            OutputLock(target).acquire()
    assert not Path(f"{target}.lock").exists()
    Path(f"{target}.lock").write_text(json.dumps({"pid": 999_999_999}))  # a dead owner, no flock held
    with OutputLock(target) as b:
        assert json.loads(b.path.read_text())["pid"] == os.getpid()


# -- resume checks the config --------------------------------------------------------------------------
def test_config_change_on_resume_is_named_and_fresh_starts_over(tmp_path):
    from negforge.synth.templates import builtin_sets_dir

    src, out = inputs(tmp_path, 3), tmp_path / "out.jsonl"
    with FaultServer(reply_fn=mar_reply) as srv:
        c = conf(tmp_path / "g.yaml", srv.base_url)
        cli("generate", c, "--input", src, "--output", out, "--limit", 2, "-q")
        base = ["generate", c, "--input", src, "--output", out, "-q"]
        line = one_error_line(cli(*base, "--set", "seed=4", "--set", "num_negatives=3", code=2))
        assert "made with another config" in line and "num_negatives 2 -> 3" in line and "seed 3 -> 4" in line
        assert "--fresh" in line
        line = one_error_line(cli(*base, "--set", "llm.params.temperature=0.5", "--set", "llm.model=other", code=2))
        assert "params.temperature 0.0 -> 0.5" in line and "model 'fault-mar' -> 'other'" in line
        tdir = tmp_path / "tpl"  # a folder of sets: its "mar" is found before the built-in one
        shutil.copytree(builtin_sets_dir() / "mar", tdir / "mar")
        (tdir / "mar" / "generate.jinja2").write_text((tdir / "mar" / "generate.jinja2").read_text() + "\nBe brief.\n")
        assert "template_hash" in one_error_line(cli(*base, "--set", f"template_dir={tdir}", code=2))
        # the same config resumes (concurrency, batch size and limit are not part of the fingerprint)
        assert "2 already done, 1 generated" in cli(*base, "--set", "llm.concurrency=2", "--set", "batch_size=1")
        text = cli(*base, "--set", "seed=4", "--fresh")
        assert "0 already done, 3 generated" in text
    got = read_records(out)
    assert len(got) == 3 and all(n.provenance.seed == 4 for r in got for n in r.negatives)
    assert len(json.loads(Path(f"{out}.summary.json").read_text())["runs"]) == 1  # fresh: a new history


def test_input_equal_to_output_and_legacy_output_without_fingerprint(tmp_path):
    src = inputs(tmp_path, 2)
    with FaultServer(reply_fn=mar_reply) as srv:
        c = conf(tmp_path / "g.yaml", srv.base_url)
        assert "the input is also the output" in one_error_line(
            cli("generate", c, "--input", src, "--output", src, code=2)
        )
        legacy = tmp_path / "legacy.jsonl"
        write_records(legacy, [rec(0)])
        assert "no config fingerprint" in one_error_line(cli("generate", c, "--input", src, "--output", legacy, code=2))
        assert srv.requests == []


# -- bad input: one line, file and line, exit 2, before any call ----------------------------------------
def _beir(tmp_path: Path, corpus: bytes, queries: bytes, qrels: str) -> Path:
    d = tmp_path / "beir"
    (d / "qrels").mkdir(parents=True)
    (d / "corpus.jsonl").write_bytes(corpus)
    (d / "queries.jsonl").write_bytes(queries)
    (d / "qrels" / "train.tsv").write_text(qrels)
    return d


DOC = b'{"_id": "d1", "title": "", "text": "a passage about the outcome of the trial"}\n'
QUERY = b'{"_id": "q1", "text": "what was the outcome"}\n'


def _case(name: str, tmp_path: Path) -> tuple[list[str], str]:
    """(CLI arguments after the config, what the one error line must say) for one bad input."""
    good = json.dumps({"query": "q", "pos": ["p p p"], "id": "a"}) + "\n"
    if name == "non_utf8_input":
        p = tmp_path / "in.jsonl"
        p.write_bytes(good.encode() + b'{"query": "caf\xe9", "pos": ["x"]}\n')
        return ["--input", p], f"{p}:2: not UTF-8 (byte 0xe9 at column 15)"
    if name == "non_utf8_corpus":
        d = _beir(tmp_path, DOC + b'{"_id": "d2", "text": "\xff"}\n', QUERY, "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
        return ["--data", d], f"{d / 'corpus.jsonl'}:2: not UTF-8"
    if name == "non_utf8_qrels":
        d = _beir(tmp_path, DOC, QUERY, "query-id\tcorpus-id\tscore\n")
        (d / "qrels" / "train.tsv").write_bytes(b"query-id\tcorpus-id\tscore\nq1\td1\t1\nq\xe91\td1\t1\n")
        return ["--data", d], f"{d / 'qrels' / 'train.tsv'}:3: not UTF-8"
    if name == "non_utf8_existing_output":
        p = tmp_path / "in.jsonl"
        p.write_text(good)
        out = tmp_path / "out.jsonl"
        out.write_bytes(b'{"id": "caf\xe9"}\n')
        return ["--input", p, "--output", out], f"{out}:1: not UTF-8"
    if name == "yaml_in_set":
        p = tmp_path / "in.jsonl"
        p.write_text(good)
        return [
            "--input",
            p,
            "--set",
            "llm.params={temperature: [0.1",
        ], "--set 'llm.params={temperature: [0.1': the value is not valid YAML"
    if name == "duplicate_flag_ids":
        p = tmp_path / "in.jsonl"
        p.write_text(good + json.dumps({"query": "other", "pos": ["x y z"], "id": "a"}) + "\n")
        return ["--input", p], f"{p}:2: id 'a' appears again (first at line 1)"
    if name == "duplicate_record_ids":
        p = tmp_path / "in.jsonl"
        write_records(p, [rec(0), rec(1), rec(0)])
        return ["--input", p], f"{p}:3: record id 'q0' appears again (first at line 1)"
    if name == "duplicate_query_ids":
        d = _beir(tmp_path, DOC, QUERY + QUERY, "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
        return ["--data", d], f"{d / 'queries.jsonl'}:2: query id 'q1' appears again (first at line 1)"
    if name == "duplicate_doc_ids":
        d = _beir(tmp_path, DOC + DOC, QUERY, "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
        return ["--data", d], f"{d / 'corpus.jsonl'}:2: document id 'd1' appears again"
    if name == "empty_input":
        p = tmp_path / "in.jsonl"
        p.write_text("\n")
        return ["--input", p], f"{p} (jsonl): no records in the input"
    if name == "qrels_match_no_document":
        d = _beir(tmp_path, DOC, QUERY, "query-id\tcorpus-id\tscore\nq1\tgone\t1\n")
        return ["--data", d], (
            "no records in the input (dropped: 1 queries with no relevant document in the corpus; "
            "1 qrels rows naming a document not in the corpus)"
        )
    if name == "jinja_security_error":
        from negforge.synth.templates import builtin_sets_dir

        tdir = tmp_path / "tpl"
        shutil.copytree(builtin_sets_dir() / "mar", tdir / "mar")
        (tdir / "mar" / "analyse.jinja2").write_text("Look:\n{{ query.__class__.__mro__ }}\n")
        p = tmp_path / "in.jsonl"
        p.write_text(good)
        return ["--input", p, "--set", f"template_dir={tdir}"], f"{tdir / 'mar' / 'analyse.jinja2'}:2: template"
    raise KeyError(name)


BAD_INPUTS = [
    "non_utf8_input",
    "non_utf8_corpus",
    "non_utf8_qrels",
    "non_utf8_existing_output",
    "yaml_in_set",
    "duplicate_flag_ids",
    "duplicate_record_ids",
    "duplicate_query_ids",
    "duplicate_doc_ids",
    "empty_input",
    "qrels_match_no_document",
    "jinja_security_error",
]


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_each_bad_input_is_one_line_with_exit_2_before_any_call(name, tmp_path):
    args, expected = _case(name, tmp_path)
    if "--output" not in args:
        args += ["--output", tmp_path / "gen.jsonl"]
    with FaultServer(reply_fn=mar_reply) as srv:
        line = one_error_line(cli("generate", conf(tmp_path / "g.yaml", srv.base_url), *args, "-q", code=2))
        assert expected in line, line
        assert srv.requests == []  # nothing was spent


def test_empty_input_is_fine_when_asked_for_and_dropped_queries_are_counted(tmp_path):
    p = tmp_path / "in.jsonl"
    p.write_text("")
    with FaultServer(reply_fn=mar_reply) as srv:
        c = conf(tmp_path / "g.yaml", srv.base_url)
        assert "0 selected" in cli("generate", c, "--input", p, "--output", tmp_path / "e.jsonl", "--allow-empty", "-q")
        d = _beir(
            tmp_path,
            DOC + b'{"_id": "d2", "text": "another passage"}\n',
            QUERY + b'{"_id": "q2", "text": "a second query"}\n',
            "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\tgone\t1\nq2\tgone\t2\n",
        )
        out = tmp_path / "b.jsonl"
        text = cli("generate", c, "--data", d, "--output", out, "-q")
    assert "input" in text and "1 queries with no relevant document in the corpus" in text
    s = json.loads(Path(f"{out}.summary.json").read_text())
    assert s["input_dropped"] == {
        "queries with no relevant document in the corpus": 1,
        "qrels rows naming a document not in the corpus": 2,
    }
    assert [r.id for r in read_records(out)] == ["q1"]


# -- stage stamps --------------------------------------------------------------------------------------
def test_stage_stamp_holds_the_output_digest_and_a_mismatch_redoes_the_stage(tmp_path):
    from negforge.synth.pipeline import RunResult, _Stages

    calls = []

    def stage(tag: str):
        def fn():
            calls.append(tag)
            return [rec(0), rec(1)] if tag == "a" else [rec(5)], {"made_by": tag}

        return fn

    st = _Stages(tmp_path, RunResult(out_dir=tmp_path), fresh=False)
    assert [r.id for r in st.records("gen", "key-a", stage("a"))] == ["q0", "q1"]
    stamp = json.loads((tmp_path / "gen.done.json").read_text())
    from negforge.synth.outputs import file_digest

    assert stamp["sha256"] == file_digest(tmp_path / "gen.jsonl") and stamp["records"] == 2
    st.records("gen", "key-a", stage("a"))
    assert calls == ["a"]  # reused: key and digest match
    # another run's output under this stamp (a kill between its output and its stamp): detected, redone
    write_records(tmp_path / "gen.jsonl", [rec(5)])
    assert [r.id for r in st.records("gen", "key-a", stage("a"))] == ["q0", "q1"] and calls == ["a", "a"]
    st.records("gen", "key-b", stage("b"))  # another config: redone
    assert calls == ["a", "a", "b"]


def test_stage_with_failed_records_is_not_stamped(tmp_path):
    from negforge.synth.gen_report import GenerateReport
    from negforge.synth.pipeline import RunResult, _Stages

    st = _Stages(tmp_path, RunResult(out_dir=tmp_path), fresh=False)
    st.records("generated", "k", lambda: ([rec(0)], GenerateReport(records_failed=1)))
    assert (tmp_path / "generated.jsonl").exists() and not (tmp_path / "generated.done.json").exists()


# -- files: one permission rule, temp files, record sets ------------------------------------------------
def test_every_output_follows_the_umask(tmp_path):
    from negforge.synth.cache import CompletionCache
    from negforge.synth.io import RecordAppender, write_json

    old = os.umask(0o007)
    try:
        write_records(tmp_path / "a.jsonl", [rec(0)])
        write_json(tmp_path / "s.json", {"x": 1})
        with RecordAppender(tmp_path / "b.jsonl") as w:
            w.append(rec(1))
        CompletionCache(tmp_path / "cache").close()
        modes = {
            p.name: p.stat().st_mode & 0o777
            for p in [
                tmp_path / "a.jsonl",
                tmp_path / "s.json",
                tmp_path / "b.jsonl",
                tmp_path / "cache" / "completions.sqlite",
            ]
        }
    finally:
        os.umask(old)
    assert set(modes.values()) == {0o660}, modes


def test_stale_temp_files_of_dead_jobs_are_cleaned_on_start(tmp_path):
    from negforge.synth.outputs import STALE_LEGACY_TEMP_S

    dead = tmp_path / ".out.jsonl.999999999.abc123.tmp"
    alive = tmp_path / f".out.jsonl.{os.getppid()}.def456.tmp"  # a live process's write in progress
    legacy_old, legacy_new = tmp_path / ".out.jsonl.k3j4h5.tmp", tmp_path / ".out.jsonl.zz9yy8.tmp"
    emb = tmp_path / ".model-abc.f32.tmp999999999"  # a crashed corpus encoding
    bm25 = tmp_path / ".bm25-key.tmp999999999"
    for p in (dead, alive, legacy_old, legacy_new, emb):
        p.write_text("x")
    bm25.mkdir()
    (bm25 / "part").write_text("x")
    past = time.time() - STALE_LEGACY_TEMP_S - 10
    os.utime(legacy_old, (past, past))
    write_records(tmp_path / "out.jsonl", [rec(0)])
    assert not dead.exists() and not legacy_old.exists() and not emb.exists() and not bm25.exists()
    assert alive.exists() and legacy_new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, legacy_new.name, "out.jsonl"])


def test_epoch_sets_are_written_as_a_unit(tmp_path, monkeypatch):
    from negforge.synth.errors import InputError
    from negforge.synth.io import check_record_sets, write_record_sets

    files = {tmp_path / f"m.epoch{e}.jsonl": [rec(e)] for e in range(3)}
    manifest = tmp_path / "m.epochs.json"
    write_record_sets(files, manifest)
    check_record_sets(manifest)
    # a second run killed after moving its first file into place: the set no longer checks out
    real = os.replace
    moved = []

    def dies_after_one(a, b):
        if moved:
            raise KeyboardInterrupt
        moved.append(b)
        real(a, b)

    monkeypatch.setattr(os, "replace", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        write_record_sets({p: [rec(9)] for p in files}, manifest)
    monkeypatch.setattr(os, "replace", real)
    with pytest.raises(InputError, match="manifest"):
        check_record_sets(manifest)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # its temp files went with it


def test_api_key_env_warning(caplog):
    from negforge.synth.backends.openai_backend import warn_unusual_key_env

    with caplog.at_level("WARNING"):
        assert warn_unusual_key_env("AWS_SECRET_ACCESS_KEY", "https://llm.example.net/v1")
    assert "AWS_SECRET_ACCESS_KEY" in caplog.text and "OPENAI_API_KEY" in caplog.text
    assert warn_unusual_key_env("OPENAI_API_KEY", "https://api.groq.com/openai/v1")  # groq's is GROQ_API_KEY
    assert not warn_unusual_key_env("GROQ_API_KEY", "https://api.groq.com/openai/v1")
    assert not warn_unusual_key_env("OPENAI_API_KEY", "https://llm.example.net/v1")
    assert not warn_unusual_key_env("MY_TOKEN", "http://127.0.0.1:8080/v1")  # local: nothing leaves the machine
    assert not warn_unusual_key_env("MY_TOKEN", "http://localhost:8080/v1")


def test_run_pipeline_generate_stage_with_an_outage_then_a_healthy_server(tiny_beir, tmp_path, monkeypatch):
    """`negforge run`'s generate stage on the fault server: an outage stops the run with exit 3 and stamps
    nothing; on a healthy server the stage is stamped with its output's digest and mining gets its records.
    (Mining is cut short here: the whole run with real parts is tests/test_pipeline.py, marked slow.)"""
    import negforge.mixers.mine as mine_mod
    from negforge.synth.outputs import file_digest

    class Stop(Exception):
        pass

    seen = []

    def fake_mine(records, dataset, cfg, **kw):
        seen.append(records)
        raise Stop()

    monkeypatch.setattr(mine_mod, "mine_records", fake_mine)
    out = tmp_path / "run"
    with FaultServer(reply_fn=mar_reply) as srv:
        doc = {
            "data": str(tiny_beir),
            "out_dir": str(out),
            "llm_queries": 3,
            "generate": yaml.safe_load(conf(tmp_path / "g.yaml", srv.base_url).read_text()),
        }
        (tmp_path / "run.yaml").write_text(yaml.safe_dump(doc))
        srv.fail_all = "500"
        line = one_error_line(cli("run", tmp_path / "run.yaml", "-q", code=3))
        assert "3 of 3 records failed" in line and not (out / "generated.done.json").exists()
        assert not (out / "run.lock").exists() and seen == []
        srv.fail_all = None
        from typer.testing import CliRunner

        from negforge.synth.cli import app

        res = CliRunner().invoke(app, ["run", str(tmp_path / "run.yaml"), "-q"])
        assert isinstance(res.exception, Stop), res.output
    stamp = json.loads((out / "generated.done.json").read_text())
    assert stamp["sha256"] == file_digest(out / "generated.jsonl")
    (records,) = seen
    assert sum(1 for r in records if r.negatives_from("llm")) == 3  # the 3 LLM queries came through
    assert not (out / "run.lock").exists()
