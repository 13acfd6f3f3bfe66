"""Backends: the real ``openai`` client against a fault-injecting HTTP server on 127.0.0.1, the
on-disk cache, usage accounting, and the real bundled SmolLM2 served by xllamacpp."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fault_server import JUNK_TEXT, FaultServer
from pydantic import ValidationError
from scripted_backend import ScriptedBackend

from negforge.synth.backends.base import Backend, Completion
from negforge.synth.backends.factory import open_backend
from negforge.synth.backends.openai_backend import OpenAIBackend, request_kwargs, resolve_api_key, retry_after_s
from negforge.synth.backends.usage import Usage
from negforge.synth.cache import CachedBackend, CompletionCache, cache_key
from negforge.synth.config import LLMConfig
from negforge.synth.errors import BackendError
from negforge.synth.params import GenParams

P = GenParams(max_tokens=16, temperature=0.0, seed=1)


def conv(tag: str, text: str = "question") -> list[dict]:
    return [{"role": "system", "content": "You write hard negatives."}, {"role": "user", "content": f"{text} [{tag}]"}]


def backend(server: FaultServer, **kw) -> OpenAIBackend:
    cfg = LLMConfig(base_url=server.base_url, **{"timeout_s": 0.5, "max_retries": 3, "concurrency": 4, **kw})
    b = OpenAIBackend(cfg)
    b.backoff_s, b.jitter_s = 0.02, 0.02  # fast backoff for tests; Retry-After is still honoured
    return b


@pytest.fixture
def server():
    with FaultServer() as s:
        yield s


# -- params mapping, keys ----------------------------------------------------------------------------
def test_request_kwargs_maps_every_param_in_one_place():
    kw = request_kwargs(GenParams(temperature=0.3, top_p=0.9, max_tokens=7, seed=None, stop=["\n\n"], json_mode=True))
    assert kw == {
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 7,
        "stop": ["\n\n"],
        "response_format": {"type": "json_object"},
    }
    assert request_kwargs(GenParams(seed=5, json_mode=False)) == {
        "temperature": 0.7,
        "top_p": 0.95,
        "max_tokens": 512,
        "seed": 5,
    }
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        GenParams(n=3)  # one completion per conversation: there is no n
    # Replies cached before n was removed still hit: the key is the one GenParams.model_dump_json() gave then.
    assert GenParams().cache_key() == (
        '{"temperature":0.7,"top_p":0.95,"max_tokens":512,"seed":0,"n":1,"stop":[],"json_mode":true,"json_schema":null}'
    )
    schema = {"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}}}
    assert request_kwargs(GenParams(json_schema=schema))["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "reply", "schema": schema, "strict": False},
    }
    assert "response_format" not in request_kwargs(GenParams(json_schema=schema, json_mode=False))


def test_api_key_rules(monkeypatch):
    monkeypatch.delenv("NEGFORGE_TEST_KEY", raising=False)
    assert resolve_api_key("NEGFORGE_TEST_KEY", "http://127.0.0.1:8000/v1") == "local"
    with pytest.raises(BackendError, match="NEGFORGE_TEST_KEY"):
        resolve_api_key("NEGFORGE_TEST_KEY", "https://api.openai.com/v1")
    with pytest.raises(BackendError, match="NEGFORGE_TEST_KEY"):
        OpenAIBackend(LLMConfig(api_key_env="NEGFORGE_TEST_KEY"))  # no base_url: the OpenAI API
    monkeypatch.setenv("NEGFORGE_TEST_KEY", "sk-test")
    assert resolve_api_key("NEGFORGE_TEST_KEY", "https://api.openai.com/v1") == "sk-test"


def test_key_is_sent_and_params_reach_the_server(server, monkeypatch):
    monkeypatch.setenv("NEGFORGE_TEST_KEY", "sk-123")
    with backend(server, api_key_env="NEGFORGE_TEST_KEY", model="my-model") as b:
        (c,) = b.generate([conv("a")], GenParams(max_tokens=9, seed=4, stop=["END"]))
    assert c.ok and c.text == "reply to question [a]"
    body = server.requests[0]
    assert body["model"] == "my-model" and body["max_tokens"] == 9 and body["seed"] == 4 and body["stop"] == ["END"]
    assert body["response_format"] == {"type": "json_object"} and "n" not in body
    assert server.headers[0]["authorization"] == "Bearer sk-123"


# -- batching --------------------------------------------------------------------------------------
def test_batch_in_order_with_bounded_concurrency():
    with FaultServer({f"[r{i}]": [("sleep", 0.2)] for i in range(12)}) as s, backend(s, concurrency=3) as b:
        out = b.generate([conv(f"r{i}") for i in range(12)], P)
        assert [c.text for c in out] == [f"reply to question [r{i}]" for i in range(12)]
        assert s.peak_in_flight == 3  # the semaphore, not the server, bounded it
        assert len(b.last_latencies_s) == 12 and min(b.last_latencies_s) >= 0.2
        assert b.usage.calls == 12 and b.usage.requests == 12 and b.usage.retries == 0
        assert isinstance(b, Backend)


def test_generate_from_a_thread_and_from_inside_a_running_loop(server):
    with backend(server) as b:
        result: list = []
        t = threading.Thread(target=lambda: result.extend(b.generate([conv("t")], P)))
        t.start()
        t.join(10)
        assert result[0].text == "reply to question [t]"

        async def inside_loop():
            return b.generate([conv("l")], P)

        assert asyncio.run(inside_loop())[0].text == "reply to question [l]"
        assert b.generate([], P) == []


# -- faults, retries and exact counts ---------------------------------------------------------------
def test_faults_are_retried_and_counted_exactly():
    plan = {
        "[rate]": [("429", 1)],
        "[err]": ["500", "503"],
        "[hang]": [("hang", 1.5)],
        "[junk]": ["junk_content"],
        "[body]": ["junk_body"],
        "[empty]": ["no_choices"],
        "[bodies]": ["junk_body", "no_choices"] * 5,
        "[bad]": ["400"],
        "[dead]": ["500"] * 10,
    }
    tags = ["ok1", "rate", "err", "hang", "junk", "body", "empty", "bodies", "bad", "dead", "ok2"]
    with FaultServer(plan) as s, backend(s, max_retries=3, concurrency=4) as b:
        t0 = time.perf_counter()
        out = dict(zip(tags, b.generate([conv(t) for t in tags], P)))
        wall = time.perf_counter() - t0
        # retried rows succeed
        for t in ("ok1", "rate", "err", "hang", "body", "empty", "ok2"):  # malformed 200s are retried like 5xx
            assert out[t].ok and out[t].text == f"reply to question [{t}]", t
        assert b.last_latencies_s[tags.index("rate")] >= 1.0 and wall >= 1.0  # Retry-After: 1 honoured
        # junk text is the generator's problem: it comes back ok, verbatim
        assert out["junk"].ok and out["junk"].text == JUNK_TEXT
        # malformed 200s until the retries run out, a 400 and an exhausted row come back failed with a reason
        assert not out["bodies"].ok and "MalformedReply" in out["bodies"].error
        assert "gave up after 4 attempts" in out["bodies"].error and s.count("no_choices") == 1 + 2
        assert not out["bad"].ok and "400" in out["bad"].error
        assert not out["dead"].ok and "gave up after 4 attempts" in out["dead"].error
        assert s.count("400") == 1  # not retried
        u = b.usage
        assert u.retries == 1 + 2 + 1 + 1 + 1 + 3 + 3  # rate, err x2, hang (timeout), body, empty, bodies, dead
        assert u.failed == 3 and u.calls == len(tags)
        assert u.requests == len(s.requests) == len(tags) + u.retries
        assert s.count("500") + s.count("503") == 2 + 4 and s.count("hang") == 1
        assert u.prompt_tokens == s.prompt_tokens and u.completion_tokens == s.completion_tokens
        assert u.completion_tokens == sum(c.completion_tokens for c in out.values()) > 0


def test_retry_after_parsing():
    class R:
        def __init__(self, h):
            self.headers = h

    class E(Exception):
        def __init__(self, h):
            self.response = R(h)

    assert retry_after_s(E({"retry-after": "2"})) == 2.0
    assert retry_after_s(E({"retry-after-ms": "250"})) == 0.25
    assert 0 <= retry_after_s(E({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) < 1  # past date: now
    assert retry_after_s(E({})) is None and retry_after_s(ValueError()) is None


def test_json_mode_falls_back_once_and_remembers():
    with FaultServer(reject_response_format=True) as s, backend(s) as b:
        out = b.generate([conv(f"j{i}") for i in range(3)], GenParams(max_tokens=8, json_mode=True))
        assert all(c.ok for c in out)
        first = len(s.requests)
        assert 3 < first <= 6  # each in-flight row was rejected at most once
        b.generate([conv("later")], GenParams(max_tokens=8, json_mode=True))
        assert "response_format" not in s.requests[-1] and len(s.requests) == first + 1
        assert b.usage.retries == 0 and b.usage.failed == 0


def test_unreachable_server_or_bad_key_raises(monkeypatch):
    with FaultServer() as s:
        dead_url = s.base_url
    b = OpenAIBackend(LLMConfig(base_url=dead_url, max_retries=0, timeout_s=2))
    with pytest.raises(BackendError, match="cannot be used"):
        b.generate([conv("a"), conv("b")], P)
    b.close()
    with FaultServer({"[a]": ["401"], "[b]": ["401"]}) as s, backend(s) as b:
        with pytest.raises(BackendError, match="401"):
            b.generate([conv("a"), conv("b")], P)
    with FaultServer({"[a]": ["401"]}) as s, backend(s) as b:  # one row got through: per-row failure only
        out = b.generate([conv("a"), conv("b")], P)
        assert not out[0].ok and out[1].ok


# -- usage and cost -----------------------------------------------------------------------------------
def test_usage_cost_and_snapshots():
    u = Usage.from_config(LLMConfig(price_per_1k_prompt=1.0, price_per_1k_completion=2.0))
    u.record(Completion(text="x", prompt_tokens=1000, completion_tokens=500))
    before = u.snapshot()
    u.record(Completion(text="y", cached=True, prompt_tokens=9, completion_tokens=9))  # cached: free
    u.record(Completion(error="boom"))
    assert u.cost == pytest.approx(2.0) and u.prompt_tokens == 1000 and u.cached == 1 and u.failed == 1
    d = u.since(before).to_dict()
    assert d["calls"] == 2 and d["prompt_tokens"] == 0 and d["cost"] == 0
    assert set(u.to_dict()) >= {
        "calls",
        "prompt_tokens",
        "completion_tokens",
        "cached",
        "retries",
        "failed",
        "cost",
        "wall_s",
    }


def test_scripted_backend():
    b = ScriptedBackend.sequence(["one two", ValueError("bad json"), Completion(text="raw", completion_tokens=3)])
    out = b.generate([conv("a"), conv("b"), conv("c")], P)
    assert [c.text for c in out] == ["one two", None, "raw"] and "bad json" in out[1].error
    assert b.usage.calls == 3 and b.usage.failed == 1 and b.usage.completion_tokens == 2 + 3
    assert b.batches == [3] and b.seen[0][1] == P and isinstance(b, Backend)
    with pytest.raises(AssertionError, match="ran out"):
        b.generate([conv("d")], P)


def test_base_backend_bookkeeping_and_contract():
    from negforge.synth.backends import BACKENDS, BaseBackend

    class Short(BaseBackend):
        name = "short"
        closed = 0

        def _generate(self, conversations, params):
            return [Completion(text="x", completion_tokens=1)] * (len(conversations) - 1)

        def close(self):
            self.closed += 1

    with Short("m") as b:
        assert b.generate([], P) == [] and b.usage.calls == 0  # the empty batch never reaches _generate
        with pytest.raises(BackendError, match="the short backend returned 1 completions for 2 conversations"):
            b.generate([conv("a"), conv("b")], P)
        assert isinstance(b, Backend) and b.cache_model == "m" and b.usage.wall_s > 0
    assert b.closed == 1
    assert {"local", "openai", "vllm"} <= set(BACKENDS.names())
    # local vs openai follows base_url; a local backend given a URL says what to change
    assert LLMConfig().backend == "local" and LLMConfig(backend="openai").backend == "local"
    assert LLMConfig(base_url="http://127.0.0.1:1/v1").backend == "openai"
    with pytest.raises(ValidationError, match="set backend: openai"):
        LLMConfig(backend="local", base_url="http://127.0.0.1:1/v1")


# -- cache -------------------------------------------------------------------------------------------
def test_cache_hits_cost_nothing_and_misses_on_any_change(cache_dir):
    convs = [conv(f"c{i}") for i in range(3)]
    with FaultServer({"[c1]": ["400"]}) as s:
        b = CachedBackend(backend(s, max_retries=0), CompletionCache(cache_dir))
        first = b.generate(convs, P)
        assert [c.ok for c in first] == [True, False, True] and len(b.cache) == 2  # failed rows are not stored
        before, sent = b.usage.snapshot(), len(s.requests)
        second = b.generate(convs, P)
        assert [c.cached for c in second] == [True, False, True] and all(c.ok for c in second)
        assert [second[i].text for i in (0, 2)] == [first[i].text for i in (0, 2)]
        assert second[0].prompt_tokens == 0 and len(s.requests) == sent + 1  # only the failed row went out
        delta = b.usage.since(before)
        assert delta.calls == 3 and delta.cached == 2 and delta.prompt_tokens == second[1].prompt_tokens > 0
        before, sent = b.usage.snapshot(), len(s.requests)
        third = b.generate(convs + [convs[0]], P)  # a duplicate row is a hit too
        assert all(c.cached for c in third) and len(s.requests) == sent
        assert b.usage.since(before).total_tokens == 0 and b.usage.since(before).cached == 4
        other = b.generate(convs[:1], GenParams(max_tokens=16, temperature=0.0, seed=2))  # params change: miss
        assert not other[0].cached and len(s.requests) == sent + 1
        b.close()
        again = CachedBackend(backend(s), CompletionCache(cache_dir))  # persisted on disk
        assert all(c.cached for c in again.generate(convs, P)) and len(s.requests) == sent + 1
        again.close()


def test_cache_survives_kill_9(cache_dir):
    script = f"""
import os, signal
from negforge.synth.backends.base import Completion
from negforge.synth.cache import CompletionCache
c = CompletionCache({str(cache_dir)!r})
c.put_many("m", [("k1", Completion(text="committed"))])
c._db.execute("BEGIN IMMEDIATE")
c._db.execute("INSERT INTO completions VALUES ('k2', 'm', 'torn', 0, 0, NULL, 0)")
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == -9
    cache = CompletionCache(cache_dir)
    assert cache._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    found = cache.get_many(["k1", "k2"])
    assert set(found) == {"k1"} and found["k1"].text == "committed" and found["k1"].cached
    cache.close()


def test_open_backend_with_base_url(server, cache_dir):
    with open_backend(LLMConfig(base_url=server.base_url), cache_dir=str(cache_dir)) as b:
        assert isinstance(b, CachedBackend) and b.generate([conv("x")], P)[0].ok
    assert b.inner._loop is None  # closed on exit
    with open_backend(LLMConfig(base_url=server.base_url)) as b:
        assert isinstance(b, OpenAIBackend) and b.generate([conv("x")], P)[0].ok


def test_cache_key_covers_model_params_and_messages():
    base = cache_key("m", P, conv("a"))
    assert base == cache_key("m", GenParams(max_tokens=16, temperature=0.0, seed=1), conv("a"))
    assert base != cache_key("m2", P, conv("a"))
    assert base != cache_key("m", GenParams(max_tokens=16, temperature=0.0, seed=2), conv("a"))
    edited = conv("a")
    edited[0]["content"] += " "  # a template edit changes the rendered messages
    assert base != cache_key("m", P, edited)


# -- the real bundled model (SmolLM2-135M via xllamacpp) ---------------------------------------------
@pytest.mark.slow
def test_local_server_batch_order_usage_and_cache(local_server, cache_dir):
    # Prompts of very different lengths: the server's prompt_tokens must come back in the same order.
    convs = [[{"role": "user", "content": "Name a colour. " + "Please answer briefly. " * (8 * i)}] for i in range(4)]
    params = GenParams(max_tokens=12, temperature=0.0, seed=0, json_mode=False)
    cfg = LLMConfig(base_url=local_server.base_url, concurrency=2, timeout_s=600)
    with open_backend(cfg, cache_dir=str(cache_dir)) as b:
        out = b.generate(convs, params)
        assert len(out) == 4 and all(c.ok and c.text.strip() for c in out), [c.error for c in out]
        prompt_tokens = [c.prompt_tokens for c in out]
        assert prompt_tokens == sorted(prompt_tokens) and len(set(prompt_tokens)) == 4, prompt_tokens
        assert all(1 <= c.completion_tokens <= 12 for c in out)
        assert b.usage.prompt_tokens == sum(prompt_tokens) and b.usage.requests == 4
        assert b.usage.completion_tokens == sum(c.completion_tokens for c in out)
        before = b.usage.snapshot()
        again = b.generate(convs, params)
        assert [c.text for c in again] == [c.text for c in out] and all(c.cached for c in again)
        delta = b.usage.since(before)
        assert delta.total_tokens == 0 and delta.requests == 0 and delta.cached == 4


@pytest.mark.slow
def test_local_server_json_mode(local_server):
    """json_object mode constrains the grammar: every answer opens a JSON object, and every one that
    finished on its own (not cut by max_tokens) parses."""
    cfg = LLMConfig(base_url=local_server.base_url, concurrency=2, timeout_s=600)
    qs = ["the sky", "grass", "snow", "blood"]
    convs = [
        [
            {"role": "system", "content": "Reply with a JSON object only."},
            {"role": "user", "content": f'What colour is {q}? Reply exactly like {{"colour": "..."}}'},
        ]
        for q in qs
    ]
    with OpenAIBackend(cfg) as b:
        out = b.generate(convs, GenParams(max_tokens=32, temperature=0.0, seed=0, json_mode=True))
    assert all(c.ok for c in out)
    assert all(c.text.lstrip().startswith("{") for c in out), [c.text for c in out]
    finished = [c for c in out if c.finish_reason == "stop"]
    for c in finished:
        assert isinstance(json.loads(c.text), dict)
    assert finished, [c.text for c in out]  # "most of the time": at least one closed its object


@pytest.mark.slow
def test_open_backend_starts_its_own_local_server():
    with open_backend(LLMConfig(concurrency=1, n_ctx=1024, timeout_s=600)) as b:
        (c,) = b.generate(
            [[{"role": "user", "content": "Say hello."}]], GenParams(max_tokens=4, temperature=0.0, json_mode=False)
        )
        assert c.ok and c.completion_tokens >= 1 and b.base_url.startswith("http://127.0.0.1:")
        # the registered `local` backend; its cache identity is the GGUF file, not only the served name
        assert b.name == "local" and b.cache_model.startswith("SmolLM2-135M-Instruct@") and ".gguf:" in b.cache_model
    with pytest.raises(BackendError, match="not started"):
        _ = b.server.base_url  # closing the backend stopped its server
