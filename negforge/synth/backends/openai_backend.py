"""The OpenAI backend: the official API and every OpenAI-compatible server through ``base_url``.

``generate`` is synchronous to callers; inside, a batch runs on the backend's own event loop
thread (so it works from any thread, with or without a running loop) with at most
``cfg.concurrency`` requests in flight. Retries are ours (tenacity; the client's own are off):
429 / 5xx / timeouts / connection errors / malformed 200 replies (a body that is not JSON, no
``choices``, no text), exponential backoff with jitter, ``Retry-After`` honoured (capped at
:data:`MAX_RETRY_AFTER_S`), at most ``cfg.max_retries`` extra attempts.

Failure rule: a row that fails (non-retryable status, retries exhausted, malformed response)
comes back with ``ok=False`` and the reason. The batch raises :class:`BackendError` only when
*no* row succeeded and every failure was fatal for the configuration: the server could not be
reached at all, or it refused the key / the model (401, 403, 404). The contract is one completion
per conversation (repeat the conversation with another seed for more).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from email.utils import parsedate_to_datetime
from typing import Any, Optional
from urllib.parse import urlsplit

from ..config import LLMConfig
from ..errors import BackendError
from ..params import GenParams
from .base import BaseBackend, Completion, Conversation
from .usage import Usage

log = logging.getLogger(__name__)

OPENAI_URL = "https://api.openai.com/v1"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}
MAX_RETRY_AFTER_S = 60.0  # a server asking for longer waits this long, then is tried again
RETRYABLE_STATUS = {408, 409, 429}
FATAL_STATUS = {401, 403, 404}  # the key or the model is wrong: every row would fail the same way


def request_kwargs(params: GenParams, json_mode: Optional[bool] = None) -> dict[str, Any]:
    """GenParams -> chat.completions.create keywords; the one place they are mapped."""
    kw: dict[str, Any] = {"temperature": params.temperature, "top_p": params.top_p, "max_tokens": params.max_tokens}
    if params.seed is not None:
        kw["seed"] = params.seed
    if params.stop:
        kw["stop"] = list(params.stop)
    if params.json_mode if json_mode is None else json_mode:
        if params.json_schema:
            # strict=False: servers that constrain decoding (llama.cpp, vLLM) follow the schema anyway, and
            # OpenAI accepts keywords (minLength, maxLength) that its strict mode refuses.
            kw["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": params.json_schema, "strict": False},
            }
        else:
            kw["response_format"] = {"type": "json_object"}
    return kw


# The usual key variable per provider host (suffix match); any other host: OPENAI_API_KEY, the variable
# every OpenAI-compatible client reads.
CONVENTIONAL_KEY_ENV = {
    "openai.com": "OPENAI_API_KEY",
    "openai.azure.com": "AZURE_OPENAI_API_KEY",
    "together.xyz": "TOGETHER_API_KEY",
    "together.ai": "TOGETHER_API_KEY",
    "groq.com": "GROQ_API_KEY",
    "mistral.ai": "MISTRAL_API_KEY",
    "deepseek.com": "DEEPSEEK_API_KEY",
    "openrouter.ai": "OPENROUTER_API_KEY",
    "fireworks.ai": "FIREWORKS_API_KEY",
    "deepinfra.com": "DEEPINFRA_API_KEY",
    "anthropic.com": "ANTHROPIC_API_KEY",
    "googleapis.com": "GEMINI_API_KEY",
    "x.ai": "XAI_API_KEY",
    "perplexity.ai": "PERPLEXITY_API_KEY",
}


def conventional_key_env(base_url: str) -> str:
    host = (urlsplit(base_url).hostname or "").lower()
    for suffix, name in CONVENTIONAL_KEY_ENV.items():
        if host == suffix or host.endswith("." + suffix):
            return name
    return "OPENAI_API_KEY"


def is_local(base_url: str) -> bool:
    host = (urlsplit(base_url).hostname or "").lower()
    return host in LOCAL_HOSTS or host.startswith("127.")


def warn_unusual_key_env(env_var: str, base_url: str) -> bool:
    """Warn (and return True) when ``env_var`` is not the usual key variable for ``base_url``'s provider and
    the host is not local: a config from someone else could ship any secret of yours to their host."""
    usual = conventional_key_env(base_url)
    if env_var in (usual, "NEGFORGE_API_KEY") or is_local(base_url):
        return False
    log.warning(
        "llm.api_key_env=%s: the value of that environment variable is sent as a bearer token to %s, "
        "where the usual variable is %s; check that this config is yours before running it",
        env_var,
        base_url,
        usual,
    )
    return True


def resolve_api_key(env_var: str, base_url: str) -> str:
    """The key from ``$env_var``; a placeholder for servers that need none; an error for OpenAI."""
    warn_unusual_key_env(env_var, base_url)
    key = os.environ.get(env_var, "").strip()
    if key:
        return key
    host = (urlsplit(base_url).hostname or "").lower()
    if host in LOCAL_HOSTS:
        return "local"
    if host == "openai.com" or host.endswith(".openai.com"):
        raise BackendError(
            f"no API key for {base_url}: set the environment variable {env_var} "
            "(or name another variable with llm.api_key_env)"
        )
    log.warning("%s is not set; sending a placeholder API key to %s", env_var, base_url)
    return "none"


class MalformedReply(Exception):
    """A 200 answer that is not a usable chat completion (not JSON, no choices, no text): retried like a 5xx."""


def _status(exc: BaseException) -> Optional[int]:
    return getattr(exc, "status_code", None)


def is_retryable(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, (openai.APIConnectionError, MalformedReply)):  # includes APITimeoutError
        return True
    status = _status(exc)
    return status is not None and (status in RETRYABLE_STATUS or status >= 500)


def is_fatal(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return False
    return isinstance(exc, openai.APIConnectionError) or _status(exc) in FATAL_STATUS


def retry_after_s(exc: BaseException) -> Optional[float]:
    """Seconds the server asked us to wait (``Retry-After``: seconds or an HTTP date; ``retry-after-ms``)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        raw = headers.get("retry-after")
        if not raw:
            return None
        try:
            return max(0.0, float(raw))
        except ValueError:
            return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def describe(exc: BaseException) -> str:
    status = _status(exc)
    msg = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}{f' {status}' if status else ''}: {msg}"[:500]


def _rejects_response_format(exc: BaseException) -> bool:
    return _status(exc) in (400, 422) and "response_format" in describe(exc).lower()


class OpenAIBackend(BaseBackend):
    name = "openai"
    backoff_s = 0.5  # first backoff (doubled per attempt, plus up to ``jitter_s``), capped at backoff_max_s
    backoff_max_s = 20.0
    jitter_s = 0.5

    def __init__(self, cfg: LLMConfig, base_url: Optional[str] = None):
        super().__init__(cfg.model, Usage.from_config(cfg))
        self.cfg = cfg
        self.base_url = (base_url or cfg.base_url or OPENAI_URL).rstrip("/")
        self.api_key = resolve_api_key(cfg.api_key_env, self.base_url)
        self._local = threading.local()  # .fatal: per row of this thread's last batch, the fatal error if any
        self.last_latencies_s: list[float] = []  # per row of the last batch, retries included
        self._json_ok = True  # False once the server rejected response_format (remembered for the job)
        self._client: Any = None
        self._sem: Optional[asyncio.Semaphore] = None  # on the loop: bounds the requests of all batches together
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    # -- public -------------------------------------------------------------------------------
    def check_params(self, params: GenParams) -> None:
        request_kwargs(params)

    def _generate(self, conversations: list[Conversation], params: GenParams) -> list[Completion]:
        fut = asyncio.run_coroutine_threadsafe(self._batch(conversations, params), self._ensure_loop())
        try:
            rows = fut.result()
        except BaseException:
            fut.cancel()
            raise
        self._local.fatal = [c.error if is_fatal_ else None for c, is_fatal_ in rows]
        return [c for c, _ in rows]

    def _after_batch(self, rows: list[Completion]) -> None:
        fatal = getattr(self._local, "fatal", [])
        if fatal and all(e is not None for e in fatal):
            raise BackendError(f"the server at {self.base_url} cannot be used (model {self.model!r}): {fatal[0]}")

    def close(self) -> None:
        with self._lock:
            loop, thread, client = self._loop, self._thread, self._client
            self._loop = self._thread = self._client = None
        if loop is None:
            return
        if client is not None:
            try:
                asyncio.run_coroutine_threadsafe(client.close(), loop).result(timeout=5)
            except Exception as e:  # closing must never mask the real outcome of a job
                log.debug("closing the openai client: %s", e)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=5)
        loop.close()

    # -- internals ----------------------------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="negforge-openai", daemon=True)
                self._thread.start()
            return self._loop

    def _get_client(self) -> Any:
        if self._client is None:  # created on the loop thread so its connection pool belongs to that loop
            import openai

            self._client = openai.AsyncOpenAI(
                base_url=self.base_url, api_key=self.api_key, max_retries=0, timeout=self.cfg.timeout_s
            )
        return self._client

    async def _batch(self, conversations: list[Conversation], params: GenParams) -> list[tuple[Completion, bool]]:
        client = self._get_client()
        if self._sem is None:  # made on the loop thread, shared by every batch in flight (several threads)
            self._sem = asyncio.Semaphore(self.cfg.concurrency)
        sem = self._sem
        latencies = [0.0] * len(conversations)
        rows = await asyncio.gather(
            *(self._row(client, sem, latencies, i, c, params) for i, c in enumerate(conversations))
        )
        self.last_latencies_s = latencies
        return list(rows)

    async def _row(
        self, client: Any, sem: asyncio.Semaphore, latencies: list[float], i: int, conv: Conversation, params: GenParams
    ) -> tuple[Completion, bool]:
        async with sem:
            t0 = time.perf_counter()
            try:
                resp = await self._request_json_fallback(client, conv, params)
                out, fatal = to_completion(resp), False
            except Exception as e:  # every per-row failure becomes a failed row
                attempts = f" (gave up after {self.cfg.max_retries + 1} attempts)" if is_retryable(e) else ""
                out, fatal = Completion(error=describe(e) + attempts), is_fatal(e)
            latencies[i] = time.perf_counter() - t0
            return out, fatal

    async def _request_json_fallback(self, client: Any, conv: Conversation, params: GenParams) -> Any:
        while True:
            use_json = params.json_mode and self._json_ok
            try:
                return await self._request(client, conv, request_kwargs(params, use_json))
            except Exception as e:
                if not (use_json and _rejects_response_format(e)):
                    raise
                if self._json_ok:
                    self._json_ok = False
                    log.warning(
                        "%s rejected response_format=json_object (%s); sending the rest of this job without it",
                        self.base_url,
                        describe(e),
                    )

    async def _request(self, client: Any, conv: Conversation, kwargs: dict[str, Any]) -> Any:
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self.cfg.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(is_retryable),
            before_sleep=self._before_sleep,
            reraise=True,
        ):
            with attempt:
                self.usage.add(requests=1)
                resp = await client.chat.completions.create(model=self.model, messages=conv, **kwargs)
                done = to_completion(resp)
                if not done.ok:
                    raise MalformedReply(done.error)
        return resp

    def _wait(self, state: Any) -> float:
        import random

        exc = state.outcome.exception() if state.outcome else None
        asked = retry_after_s(exc) if exc is not None else None
        if asked is not None:
            return min(asked, MAX_RETRY_AFTER_S)
        n = state.attempt_number - 1
        return min(self.backoff_s * 2**n + random.uniform(0, self.jitter_s), self.backoff_max_s)

    def _before_sleep(self, state: Any) -> None:
        self.usage.add(retries=1)
        exc = state.outcome.exception()
        log.info(
            "retrying after %s (attempt %d, waiting %.2fs)",
            describe(exc),
            state.attempt_number,
            state.next_action.sleep if state.next_action else 0.0,
        )


def cached_prompt_tokens(resp: Any) -> int:
    """Prompt tokens the server took from its prompt cache: OpenAI's (and vLLM's, llama.cpp's)
    ``usage.prompt_tokens_details.cached_tokens``, else llama.cpp's ``timings.cache_n``; 0 when neither."""
    details = getattr(getattr(resp, "usage", None), "prompt_tokens_details", None)
    n = details.get("cached_tokens") if isinstance(details, dict) else getattr(details, "cached_tokens", None)
    if n is None:
        timings = (getattr(resp, "model_extra", None) or {}).get("timings")
        n = timings.get("cache_n") if isinstance(timings, dict) else None
    return n if isinstance(n, int) and n > 0 else 0


def to_completion(resp: Any) -> Completion:
    """A ChatCompletion -> Completion; anything malformed becomes a failed row with the reason."""
    choices = getattr(resp, "choices", None)
    if not choices:
        return Completion(error=f"malformed response (no choices): {str(resp)[:200]!r}")
    choice = choices[0]
    message = getattr(choice, "message", None)
    content = getattr(message, "content", None)
    usage = getattr(resp, "usage", None)
    tokens = dict(
        prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
        cached_prompt_tokens=cached_prompt_tokens(resp),
        completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
    )
    finish = getattr(choice, "finish_reason", None)
    if not isinstance(content, str):
        return Completion(
            error=f"response has no text content (finish_reason={finish})", finish_reason=finish, **tokens
        )
    return Completion(text=content, finish_reason=finish, **tokens)
