"""Which server and model an ``openai`` backend talks to, from the config and the environment.

In order: ``llm.base_url`` from the config, else ``$OPENAI_BASE_URL`` (the variable the openai
client itself reads), else negforge starts the bundled local server. Against a server of the
user's, the model is ``llm.model`` where the config names one other than the bundled default,
else ``$NEGFORGE_MODEL`` or ``$OPENAI_MODEL``, else the one model the server lists at
``/v1/models`` (a server without that route gets the default name, with a warning).
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request

from ..config import LLMConfig
from ..errors import BackendError

log = logging.getLogger(__name__)

BASE_URL_ENV = "OPENAI_BASE_URL"
MODEL_ENVS = ("NEGFORGE_MODEL", "OPENAI_MODEL")
DEFAULT_MODEL = LLMConfig.model_fields["model"].default  # the bundled model's served name


def served_models(base_url: str, api_key: str, timeout_s: float = 10.0) -> list[str]:
    """The model ids a server lists at ``GET {base_url}/models`` (OpenAI's ``{"data": [{"id": ...}]}``)."""
    url = base_url.rstrip("/") + "/models"
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 - the user's own server URL
            body = json.loads(resp.read().decode("utf-8"))
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise BackendError(
            f"could not list the models at {url} ({e}); set the model with {MODEL_ENVS[0]} or llm.model"
        ) from None
    rows = body.get("data") if isinstance(body, dict) else None
    return [str(m["id"]) for m in rows or [] if isinstance(m, dict) and m.get("id")]


def resolve_endpoint(cfg: LLMConfig) -> LLMConfig:
    """``cfg`` with ``base_url`` and ``model`` filled from the environment or the server where the
    config leaves them open. ``base_url`` stays None (backend ``local``) when the bundled local server
    should start; a URL from the environment makes it an ``openai`` backend."""
    if cfg.backend not in ("openai", "local"):
        return cfg
    base_url = cfg.base_url or os.environ.get(BASE_URL_ENV, "").strip() or None
    if base_url is None:
        return cfg
    model = cfg.model
    if model == DEFAULT_MODEL:  # not chosen by the user: the variable, else what the server serves
        env_model = next((os.environ[v].strip() for v in MODEL_ENVS if os.environ.get(v, "").strip()), None)
        if env_model:
            model = env_model
        else:
            from .openai_backend import resolve_api_key

            try:
                models = served_models(base_url, resolve_api_key(cfg.api_key_env, base_url), min(cfg.timeout_s, 30.0))
            except BackendError as e:  # a server without /models: it may take any name (llama.cpp does)
                log.warning("%s; sending the model name %r", e, model)
                models = [model]
            if len(models) > 1:
                raise BackendError(
                    f"{base_url} serves {len(models)} models ({', '.join(models[:10])}): name one "
                    f"with {MODEL_ENVS[0]}=... or llm.model"
                )
            if not models:
                log.warning("%s/models lists no model; sending the model name %r", base_url.rstrip("/"), model)
            model = models[0] if models else model
        source = "the environment" if env_model else f"{base_url}/models"
        log.info("using model %s at %s (model from %s)", model, base_url, source)
    return cfg.model_copy(update={"backend": "openai", "base_url": base_url, "model": model})
