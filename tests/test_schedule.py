"""The call order of generation (synth.schedule): one chain of calls per record gives the same records,
verdicts and counts as lock-step batches; the chain meets its record's prefix in the server's prompt cache;
prompt tokens sent vs computed (cached) in the usage; the real local server with the bundled model."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from fault_server import ALWAYS_JUNK, FaultServer, mar_reply
from scripted_backend import ScriptedBackend

from negforge.synth.backends.openai_backend import cached_prompt_tokens, to_completion
from negforge.synth.backends.usage import Usage
from negforge.synth.config import GenerateConfig, LLMConfig, ProfileConfig
from negforge.synth.generate import generate_records
from negforge.synth.params import GenParams
from negforge.synth.schedule import resolve_schedule
from negforge.synth.schema import Passage, Record

POSITIVE = (
    "Vitamin D supplementation reduced the incidence of influenza A in schoolchildren by forty "
    "percent in a randomised, double-blind, placebo-controlled trial in Japan during one winter."
)


def rec(i: int, extra: str = "", text: str = POSITIVE) -> Record:
    return Record(id=f"q{i}", query=f"Vitamin D prevents influenza [r{i}]{extra}", positives=[Passage(text=text)])


def records(text: str = POSITIVE) -> list[Record]:
    # r2 never gets a parseable draft (re-asks, rejections); r4's drafts fail at the backend (a failed record)
    return [
        rec(0, text=text),
        rec(1, text=text),
        rec(2, " " + ALWAYS_JUNK, text),
        *(rec(i, text=text) for i in (3, 4, 5)),
    ]


def cfg(schedule: str, **llm) -> GenerateConfig:
    return GenerateConfig(
        num_negatives=2,
        reflection_rounds=1,
        max_reasks=1,
        seed=3,
        cache_dir=None,
        batch_size=6,
        schedule=schedule,
        llm=LLMConfig(params=GenParams(max_tokens=200, temperature=0.0), **llm),
        profile=ProfileConfig(describe_with_llm=False),
    )


def reply(conv: list[dict]):
    first = conv[0]["content"]
    if "[r4]" in first and "Write a hard negative" in first:
        return RuntimeError("boom")
    return mar_reply(conv)


def counts(report) -> dict:
    d = report.to_dict()
    return {k: v for k, v in d.items() if k not in ("usage", "wall_s")}


def test_per_record_equals_lockstep_with_the_scripted_backend():
    runs = {}
    for schedule in ("lockstep", "per_record"):
        b = ScriptedBackend(reply)
        done, report = generate_records(records(), None, cfg(schedule), backend=b, show_progress=False)
        runs[schedule] = (done, report, b)
    (d1, r1, b1), (d2, r2, b2) = runs["lockstep"], runs["per_record"]
    assert [r.id for r in d1] == ["q0", "q1", "q2", "q3", "q5"] and [f.id for f in r1.failed] == ["q4"]
    assert d1 == d2 and r1.failed == r2.failed and counts(r1) == counts(r2)
    assert r1.reasks["generate"] > 0 and r1.reasons["parse_error"] > 0  # the junk record really was re-asked
    assert r1.usage["calls"] == r2.usage["calls"] and r1.usage["prompt_tokens"] == r2.usage["prompt_tokens"]
    assert max(b1.batches) > 1 and set(b2.batches) == {1}  # lock-step batches; chains send one row a call
    # the same conversations were sent, in another order
    assert sorted(str(c) for c, _ in b1.seen) == sorted(str(c) for c, _ in b2.seen)


def test_every_call_of_a_record_begins_with_its_shared_prefix():
    b = ScriptedBackend(reply)
    generate_records([rec(0)], None, cfg("per_record"), backend=b, show_progress=False)
    prompts = [c[0]["content"] for c, _ in b.seen]
    shared = prompts[0].split("\n\nStep: ")[0]
    assert len(prompts) == 5 and all(p.startswith(shared + "\n\nStep: ") for p in prompts)
    assert "Query: Vitamin D prevents influenza [r0]" in shared and POSITIVE in shared


def test_auto_is_per_record_for_servers_and_lockstep_for_engines():
    assert resolve_schedule("auto", SimpleNamespace(name="openai")) == "per_record"
    assert resolve_schedule("auto", SimpleNamespace(name="local")) == "per_record"
    assert resolve_schedule("auto", SimpleNamespace(name="vllm")) == "lockstep"
    assert resolve_schedule("lockstep", SimpleNamespace(name="openai")) == "lockstep"
    with pytest.raises(ValueError):
        GenerateConfig(schedule="sometimes")


def test_chains_against_a_server_equal_lockstep_and_compute_fewer_prompt_tokens():
    """The OpenAI backend over HTTP, a server with a 2-slot prompt cache: same output, fewer tokens computed
    (a positive of ~190 words, so the shared prefix is most of each prompt, as with real documents)."""
    long = " ".join([POSITIVE] * 7)
    runs, shared = {}, {}
    for schedule in ("lockstep", "auto"):
        with FaultServer(reply_fn=mar_reply, cache_slots=2) as s:
            c = cfg(schedule, backend="openai", base_url=s.base_url, model="m", concurrency=2, max_retries=0)
            runs[schedule] = generate_records(records(long)[:4], None, c, show_progress=False)
            assert s.peak_in_flight <= 2  # one bound over every chain's calls
            shared[schedule] = len(s.requests[0]["messages"][0]["content"].split("\n\nStep: ")[0].split())
    (d1, r1), (d2, r2) = runs["lockstep"], runs["auto"]
    assert d1 == d2 and counts(r1) == counts(r2) and r1.records_done == 4
    u1, u2 = r1.usage, r2.usage
    assert u1["prompt_tokens"] == u2["prompt_tokens"] > 0  # the same tokens sent
    assert u2["prompt_tokens_computed"] == u2["prompt_tokens"] - u2["prompt_tokens_cached"]
    assert u2["prompt_tokens_computed"] < u1["prompt_tokens_computed"], (u1, u2)
    # every call of a chain but its first found the whole shared prefix of its record cached
    assert u2["prompt_tokens_cached"] >= (u2["calls"] - 4) * shared["auto"], (u2, shared)
    assert u1["prompt_tokens_cached"] < (u1["calls"] - 4) * shared["lockstep"], (u1, shared)


def test_cached_prompt_tokens_from_openai_usage_or_llama_timings():
    openai_style = SimpleNamespace(usage=SimpleNamespace(prompt_tokens_details=SimpleNamespace(cached_tokens=96)))
    llama_style = SimpleNamespace(
        usage=SimpleNamespace(prompt_tokens_details=None), model_extra={"timings": {"cache_n": 40}}
    )
    assert cached_prompt_tokens(openai_style) == 96 and cached_prompt_tokens(llama_style) == 40
    assert cached_prompt_tokens(SimpleNamespace(usage=None)) == 0
    resp = SimpleNamespace(
        choices=[SimpleNamespace(message=SimpleNamespace(content="hi"), finish_reason="stop")],
        usage=SimpleNamespace(prompt_tokens=100, completion_tokens=2, prompt_tokens_details={"cached_tokens": 64}),
    )
    c = to_completion(resp)
    u = Usage()
    u.record(c)
    assert (c.prompt_tokens, c.cached_prompt_tokens) == (100, 64)
    assert u.to_dict()["prompt_tokens_computed"] == 36 and u.to_dict()["prompt_tokens_cached"] == 64


def test_overlapping_calls_count_their_wall_time_once():
    u = Usage()

    def busy() -> None:
        with u.busy():
            time.sleep(0.3)

    threads = [threading.Thread(target=busy) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 0.28 < u.wall_s < 0.6


# -- the real bundled model ------------------------------------------------------------------------
@pytest.mark.slow
def test_per_record_on_the_local_server_equals_lockstep_and_hits_the_prompt_cache(local_server, monkeypatch):
    monkeypatch.setenv("NEGFORGE_MODEL", "SmolLM2-135M-Instruct")
    runs = {}
    for schedule in ("lockstep", "per_record"):
        c = cfg(
            schedule,
            backend="openai",
            base_url=local_server.base_url,
            model="SmolLM2-135M-Instruct",
            concurrency=1,
            timeout_s=900,
        ).model_copy(update={"num_negatives": 1, "max_prompt_words": 60, "batch_size": 3})
        c.llm.params = GenParams(max_tokens=120, temperature=0.0, seed=0)
        runs[schedule] = generate_records(records()[:3], None, c, show_progress=False)
    (d1, r1), (d2, r2) = runs["lockstep"], runs["per_record"]
    assert d1 == d2 and counts(r1) == counts(r2), (r1.table(), r2.table())
    u1, u2 = r1.usage, r2.usage
    assert u2["prompt_tokens_cached"] > 0 and u2["prompt_tokens_computed"] < u1["prompt_tokens_computed"], (u1, u2)
