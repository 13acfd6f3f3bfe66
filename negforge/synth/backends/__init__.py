"""LLM backends behind one Protocol; see :mod:`negforge.synth.backends.base`.

``openai`` covers the OpenAI API and every OpenAI-compatible server (``vllm serve``,
llama.cpp, xllamacpp) through ``base_url``; ``vllm`` is the offline ``vllm.LLM`` engine.
"""
from ..registry import Registry
from .base import Backend, Completion, Conversation, Message

BACKENDS: Registry = Registry("backend")
BACKENDS.register("openai", "negforge.synth.backends.openai_backend:OpenAIBackend")
BACKENDS.register("vllm", "negforge.synth.backends.vllm_backend:VLLMBackend")

__all__ = ["BACKENDS", "Backend", "Completion", "Conversation", "Message"]
