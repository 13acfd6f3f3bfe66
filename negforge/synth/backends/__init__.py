"""LLM backends behind one Protocol; see :mod:`negforge.synth.backends.base`.

``openai`` covers the OpenAI API and every OpenAI-compatible server (``vllm serve``,
llama.cpp, xllamacpp) through ``base_url``; ``local`` starts the bundled xllamacpp server and talks
to it like ``openai``; ``vllm`` is the offline ``vllm.LLM`` engine. Each is built from an
:class:`~negforge.synth.config.LLMConfig`: ``BACKENDS.create(cfg.backend, cfg)``.
"""

from ..registry import Registry
from .base import Backend, BaseBackend, Completion, Conversation, Message

BACKENDS: Registry[Backend] = Registry("backend")
BACKENDS.register("openai", "negforge.synth.backends.openai_backend:OpenAIBackend")
BACKENDS.register("local", "negforge.synth.backends.server:LocalBackend")
BACKENDS.register("vllm", "negforge.synth.backends.vllm_backend:VLLMBackend")

__all__ = ["BACKENDS", "Backend", "BaseBackend", "Completion", "Conversation", "Message"]
