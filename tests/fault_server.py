"""A small real HTTP server on 127.0.0.1 speaking enough of ``/v1/chat/completions`` to inject faults.

Faults are planned per conversation, so counts stay exact whatever order concurrent requests
arrive in: the plan maps a *tag* (any substring of the last user message, e.g. ``"row-3"``) to a
list of actions consumed one per request; when a tag's list is empty (or no tag matches) the
server answers normally. Actions:

- ``"ok"``: a normal completion (text ``"reply to <last user message>"``)
- ``("429", seconds)``: 429 with ``Retry-After: seconds``; ``"500"`` / ``"503"`` / ``"400"`` / ``"401"``
- ``("hang", seconds)``: sleep, then answer normally (the client has usually given up by then)
- ``("sleep", seconds)``: sleep, then answer normally (for concurrency checks)
- ``"junk_content"``: a valid completion whose text is not JSON (the generator's problem)
- ``"junk_body"``: HTTP 200 whose body is not JSON at all (the backend's problem)
- ``"no_choices"``: HTTP 200, a JSON completion with an empty ``choices`` list (the backend's problem)
- ``"die"``: the server stops listening (a crash): this request gets no answer, later ones are refused

``fail_all = "500"`` (settable while running) answers every request with that status: a full outage.
``mix = {action: probability}`` draws a fault (seeded by ``seed``) for requests no plan tag claims: the
soak bench's steady fault rate. ``restart(down_s)`` stops the server and starts it again on the same port.

Usage: the server reports ``prompt_tokens`` = words in all messages, ``completion_tokens`` = words in
the reply; ``cache_slots=k`` also reports ``prompt_tokens_details.cached_tokens``, the longest word prefix
shared with one of the last k prompts (a prompt cache of k slots, as llama.cpp keeps one per slot).
``reject_response_format=True`` answers 400 to any request that has one.
``reply_fn(messages) -> str`` replaces the normal reply text (e.g. :func:`mar_reply`, deterministic
answers to the MAR generation prompts); ``delay_s`` sleeps before every answer (to catch a job mid-run).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional, Union

Action = Union[str, tuple]
JUNK_TEXT = '{"negatives": ["unterminated'
ALWAYS_JUNK = "[always-junk]"  # mar_reply answers prose without JSON to any generate prompt holding this tag


def _common(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def words(text: str) -> int:
    return len(text.split())


def _query(prompt: str) -> str:
    m = re.search(r"^Query: (.*)$", prompt, re.M)
    return m.group(1).strip() if m else ""


def mar_reply(messages: list[dict]) -> str:
    """Deterministic, valid replies to the built-in MAR prompts (analyse / generate / reflect), keyed on
    the first user message (the rendered template), so a re-ask gets the same kind of answer."""
    prompt = next((m["content"] for m in messages if m.get("role") == "user"), "")
    query = _query(prompt)
    tag = hashlib.sha256(prompt.encode()).hexdigest()[:8]
    if "List the attributes of the query" in prompt:
        return json.dumps(
            {
                "topic": f"the topic of {query}",
                "entities": "protein X",
                "scope": "adult mice",
                "key_fact": "the study found the effect",
            }
        )
    if "Write a hard negative" in prompt:
        if ALWAYS_JUNK in prompt:
            return "I am sorry, I cannot write that passage."
        flip = re.search(r"but for the (\w+) \(", prompt)
        passage = (
            f"A study of the question '{query}' examined {flip.group(1) if flip else 'something'} in detail "
            f"(variant {tag}) using a cohort design; the outcome it reports is unrelated to the claim."
        )
        return json.dumps({"reasoning": "same topic, different detail", "passage": passage})
    if "You check hard negatives" in prompt:
        return json.dumps({"reasoning": "it does not answer the query", "decision": "keep", "reason": "fine"})
    return f"reply to {messages[-1].get('content', '') if messages else ''}"


class FaultServer:
    def __init__(
        self,
        plan: Optional[dict[str, list[Action]]] = None,
        reject_response_format: bool = False,
        reply_fn: Optional[Callable[[list[dict]], str]] = None,
        delay_s: float = 0.0,
        mix: Optional[dict[Action, float]] = None,
        seed: int = 0,
        cache_slots: int = 0,
    ):
        self.cache_slots = cache_slots
        self._recent: list[list[str]] = []  # the last cache_slots prompts, as words
        self.plan = {k: list(v) for k, v in (plan or {}).items()}
        self.reject_response_format = reject_response_format
        self.reply_fn, self.delay_s = reply_fn, delay_s
        self.fail_all: Optional[str] = None
        self.mix = list((mix or {}).items())
        import random

        self._rng = random.Random(seed)
        self._port = 0
        self.restarts = 0
        self.requests: list[dict[str, Any]] = []  # every request body, in arrival order
        self.headers: list[dict[str, str]] = []  # lower-cased names
        self.injected: dict[str, int] = {}  # action name -> times served
        self.completion_tokens = self.prompt_tokens = 0  # totals over answered completions (not hung ones)
        self.in_flight = self.peak_in_flight = 0
        self._lock = threading.Lock()
        self._httpd: Optional[ThreadingHTTPServer] = None

    @property
    def base_url(self) -> str:
        assert self._port, "server not started"
        return f"http://127.0.0.1:{self._port}/v1"

    def count(self, action: str) -> int:
        return self.injected.get(action, 0)

    def next_action(self, body: dict) -> Action:
        last_user = next((m["content"] for m in reversed(body.get("messages", [])) if m.get("role") == "user"), "")
        with self._lock:
            self.requests.append(body)
            if self.reject_response_format and "response_format" in body:
                action: Action = "reject_response_format"
            elif self.fail_all:
                action = self.fail_all
            else:
                tag = next((t for t in self.plan if t in last_user and self.plan[t]), None)
                action = self.plan[tag].pop(0) if tag else self._draw()
            name = action[0] if isinstance(action, tuple) else action
            self.injected[name] = self.injected.get(name, 0) + 1
        return action

    def _draw(self) -> Action:
        x = self._rng.random()
        for action, p in self.mix:
            if x < p:
                return action
            x -= p
        return "ok"

    def completion(self, body: dict, text: str) -> dict:
        prompt = sum(words(m.get("content", "")) for m in body.get("messages", []))
        completion = words(text)
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if self.cache_slots:
            toks = " ".join(m.get("content", "") for m in body.get("messages", [])).split()
            with self._lock:
                best = max((_common(toks, r) for r in self._recent), default=0)
                self._recent = (self._recent + [toks])[-self.cache_slots :]
            usage["prompt_tokens_details"] = {"cached_tokens": best}
        return {
            "id": "chatcmpl-fault",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fault"),
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": usage,
        }

    def start(self) -> FaultServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def send(self, status: int, payload: Any, headers: Optional[dict] = None, raw: bool = False) -> None:
                data = payload.encode() if raw else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain" if raw else "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

            def error(self, status: int, message: str, headers: Optional[dict] = None) -> None:
                self.send(status, {"error": {"message": message, "type": "fault", "code": status}}, headers)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server._lock:
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                    server.in_flight += 1
                    server.peak_in_flight = max(server.peak_in_flight, server.in_flight)
                try:
                    self.serve(body)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def serve(self, body: dict) -> None:
                if not self.path.endswith("/chat/completions"):
                    return self.error(404, f"no route {self.path}")
                action = server.next_action(body)
                name, arg = (action[0], action[1]) if isinstance(action, tuple) else (action, None)
                last = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")
                if name == "429":
                    return self.error(429, "rate limited", {"Retry-After": str(arg)})
                if name in ("500", "503", "400", "401"):
                    return self.error(int(name), f"injected {name}")
                if name == "die":
                    threading.Thread(target=server.stop, daemon=True).start()
                    self.close_connection = True
                    return
                if name == "reject_response_format":
                    return self.error(400, "response_format is not supported by this server")
                if name in ("hang", "sleep"):
                    time.sleep(arg)
                if server.delay_s:
                    time.sleep(server.delay_s)
                if name == "junk_body":
                    return self.send(200, "<html>upstream proxy error</html>", raw=True)
                if name == "no_choices":
                    return self.send(200, {"id": "chatcmpl-fault", "object": "chat.completion", "choices": []})
                if name == "junk_content":
                    text = JUNK_TEXT
                elif server.reply_fn is not None:
                    text = server.reply_fn(body["messages"])
                else:
                    text = f"reply to {last}"
                payload = server.completion(body, text)
                if name != "hang":  # a hung answer reaches no client: its tokens are not counted
                    with server._lock:
                        server.prompt_tokens += payload["usage"]["prompt_tokens"]
                        server.completion_tokens += payload["usage"]["completion_tokens"]
                self.send(200, payload)

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # the stdlib's 5 refuses connections at concurrency 64 (a real server's is large)

        self._httpd = Server(("127.0.0.1", self._port), Handler)
        self._httpd.daemon_threads = True
        self._port = self._httpd.server_address[1]  # a restart comes back on the same port
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()

    def restart(self, down_s: float) -> None:
        """Go down for ``down_s`` seconds (connections refused), then come back on the same port."""
        self.stop()
        time.sleep(down_s)
        self.restarts += 1
        self.start()

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
