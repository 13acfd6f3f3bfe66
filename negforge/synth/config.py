"""One pydantic config per stage (extra="forbid"), loaded from YAML with flag overrides.

A YAML file may hold one stage's fields at the top level, or a whole :class:`RunConfig`
(sections ``generate:``, ``verify:``, ``mine:``, ``mix:``, ``train:``, ``eval:``); a stage
command reads its own section. Overrides are ``dotted.key=value`` strings whose value is
parsed as YAML (``mix.k=8``, ``mix.ratios={llm: 0.5, bm25: 0.5}``).
"""

from __future__ import annotations

import logging
import os
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_serializer, model_validator

from .errors import ConfigError, validation_message
from .models import DEFAULT_ENCODER, DEFAULT_GGUF
from .params import GenParams
from .paths import cache_path

log = logging.getLogger(__name__)

DEFAULT_DATA = "../shared/data/scifact"


def _known_sources(names: Any) -> Any:
    """``names`` unchanged when every name is a negative source; else the error pydantic reports."""
    from .schema import Source

    bad = [s for s in names if s not in Source.__members__]
    if bad:
        raise ValueError(f"unknown source {bad[0]!r}; valid: {', '.join(Source.__members__)}")
    return names


_moved_warned: set[tuple[str, str]] = set()


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=True)
    # Keys that moved into a sub-section: old key -> "section.key". The old spelling still works (with a
    # warning, once per key) so that configs written before the move keep running.
    MOVED: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _move_old_keys(cls, data: Any) -> Any:
        if not cls.MOVED or not isinstance(data, dict) or not any(k in data for k in cls.MOVED):
            return data
        data = dict(data)
        for old, new in cls.MOVED.items():
            if old not in data:
                continue
            value = data.pop(old)
            head, _, tail = new.partition(".")
            sub = data.get(head)
            sub = {"model": sub} if isinstance(sub, str) else dict(sub or {})
            sub.setdefault(tail, value)
            data[head] = sub
            if (cls.__name__, old) not in _moved_warned:
                _moved_warned.add((cls.__name__, old))
                log.warning("config: %s.%s is now %s (the old key still works for now)", cls.SECTION, old, new)
        return data

    SECTION: ClassVar[str] = ""


class BackendName(str, Enum):
    local = "local"  # the bundled xllamacpp server for ``gguf``, started and stopped by negforge
    openai = "openai"  # the OpenAI API or any OpenAI-compatible server at ``base_url``
    vllm = "vllm"  # the offline vllm.LLM engine


class EncoderBackend(str, Enum):
    """Where corpus / query encoding runs (training always uses torch): negforge.mixers.runtime."""

    torch = "torch"
    onnx = "onnx"  # ONNX Runtime
    openvino = "openvino"


class Precision(str, Enum):
    auto = "auto"  # openvino: bf16 where the CPU has native bf16, else fp32; the others: fp32
    fp32 = "fp32"
    bf16 = "bf16"  # torch (CPU autocast), openvino
    int8 = "int8"  # onnx (dynamic quantisation), openvino (int8 weights)


class LLMConfig(_Cfg):
    """The LLM that writes (generate.llm) or judges (verify.judge) negatives."""

    backend: BackendName = Field(
        BackendName.local,
        description=(
            "local: the bundled xllamacpp server for `gguf`, started and stopped by negforge; openai: the OpenAI API "
            "or any OpenAI-compatible server at `base_url`; vllm: the offline vllm.LLM engine."
        ),
    )
    model: str = Field(
        "SmolLM2-135M-Instruct",
        description=("Model name sent to the server, or the model vLLM loads (a HF directory)."),
    )
    base_url: Optional[str] = Field(
        None,
        description=(
            "An OpenAI-compatible server's URL (else $OPENAI_BASE_URL). Setting it (and not the backend) means "
            "backend=openai; backend=openai without one means the local server. The OpenAI API: "
            "https://api.openai.com/v1."
        ),
    )
    api_key_env: str = Field(
        "OPENAI_API_KEY",
        description=(
            "Name of the environment variable holding the API key, sent as a bearer token to base_url (the key itself "
            "is never read from a file). A name that is not the provider's usual one with a non-local base_url draws "
            "a warning: a config from someone else could point both at another secret and at their own host."
        ),
    )
    gguf: str = Field(DEFAULT_GGUF, description="backend=local: the GGUF model file (`bundled:...` or a path).")
    n_ctx: int = Field(4096, ge=512, description="backend=local: context length per parallel slot.")
    concurrency: int = Field(4, ge=1, le=1024, description="Requests in flight at once.")
    timeout_s: float = Field(120.0, gt=0, description="Seconds per request before it is retried.")
    max_retries: int = Field(5, ge=0, le=20, description="Extra attempts per request (429, 5xx, timeouts).")
    price_per_1k_prompt: float = Field(0.0, ge=0, description="Cost accounting: price per 1,000 prompt tokens.")
    price_per_1k_completion: float = Field(0.0, ge=0, description="Cost accounting: price per 1,000 completion tokens.")
    params: GenParams = Field(
        default_factory=GenParams,
        description=("Sampling: temperature, top_p, max_tokens (always sent), seed, stop, json_mode, json_schema."),
    )
    vllm: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "backend=vllm: extra vllm.LLM engine keywords (dtype, max_model_len, enforce_eager, tensor_parallel_size, ...)."
        ),
    )

    @model_validator(mode="after")
    def _server_from_url(self) -> LLMConfig:
        """local vs openai follows ``base_url``: a URL is that server, none is the local one."""
        if self.backend == BackendName.local and self.base_url is not None:
            if "backend" in self.model_fields_set:
                raise ValueError(
                    f"backend 'local' starts its own server; to use the one at {self.base_url} set "
                    "backend: openai (or remove base_url)"
                )
            self.backend = BackendName.openai.value  # type: ignore[assignment]  # stored as values (use_enum_values)
        elif self.backend == BackendName.openai and self.base_url is None:
            self.backend = BackendName.local.value  # type: ignore[assignment]
        return self


class EncoderConfig(_Cfg):
    """The bi-encoder that mining, verification and evaluation share, and where corpus embeddings are cached.

    In a run config it is one top-level ``encoder:`` section; a stage section may override it. The cache
    key holds the model, ``max_seq_length`` and the corpus, so the stages share one cache only while
    they agree on both."""

    model: str = Field(DEFAULT_ENCODER, description="sentence-transformers model: a folder, a hub name or 'bundled'.")
    max_seq_length: int = Field(256, ge=16, description="Tokens per text when encoding corpora and queries.")
    batch_size: int = Field(64, ge=1, description="Texts per encoder batch (also the cross-encoder's batch).")
    cache_dir: str = Field(
        default_factory=lambda: cache_path("embeddings"),
        description=(
            "Corpus embeddings (and BM25 indexes) are cached here, keyed by model, length and corpus content."
        ),
    )
    backend: EncoderBackend = Field(
        EncoderBackend.torch,
        description=(
            "Where corpus / query encoding runs: torch, onnx (ONNX Runtime) or openvino (training always uses torch)."
        ),
    )
    precision: Precision = Field(
        Precision.fp32,
        description=(
            "auto (openvino: bf16 where the CPU has it, else fp32), fp32, bf16 (torch autocast, openvino) or int8 "
            "(onnx dynamic quantisation, openvino int8 weights)."
        ),
    )
    processes: int = Field(
        1,
        ge=1,
        description=(
            "Corpus encoding in this many processes (sentence-transformers' multi-process pool: one per GPU, else "
            "CPU processes sharing the cores); 1: in this process. Backend torch at fp32 only."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _name_only(cls, data: Any) -> Any:
        return {"model": data} if isinstance(data, str) else data


class BM25Config(_Cfg):
    """The bm25 miner (bm25s)."""

    k1: float = Field(1.5, ge=0, description="Term-frequency saturation.")
    b: float = Field(0.75, ge=0, le=1, description="Length normalisation.")
    method: str = Field("lucene", description="BM25 variant: lucene, robertson, atire, bm25l, bm25+.")
    stopwords: Optional[str] = Field("en", description="Stopword list (a language code), or null for none.")
    stemmer: Optional[str] = Field(None, description="PyStemmer algorithm (e.g. english), or null for none.")


class DenseConfig(_Cfg):
    """The dense miner's index (faiss) over the encoder's corpus embeddings."""

    index: Literal["auto", "flat", "flat_bf16", "ivf", "hnsw"] = Field(
        "auto",
        description=(
            "flat: exact inner product (BLAS); flat_bf16: the same top-k, candidates from a bf16 pass (torch) and "
            "their scores computed exactly in fp32; ivf / hnsw: faiss ANN; auto: flat below 100k documents, flat_bf16 "
            "(on CPUs with native bf16, else flat) up to ann_threshold documents, ivf above."
        ),
    )
    ann_threshold: int = Field(500_000, ge=1, description="index=auto: corpus size above which ivf is used.")


class ClickConfig(_Cfg):
    """The click miner: skipped documents in an impressions log, and documents clicked for related queries."""

    log: Optional[str] = Field(None, description="Impressions JSONL (`negforge clicklog` writes a demo one).")
    min_impressions: int = Field(2, ge=1, description="A (query, doc) pair needs this many impressions.")
    propensities: Optional[list[float]] = Field(
        None,
        description=(
            "Examination probability by position (null: fitted from the log with a position-based click model)."
        ),
    )
    max_ctr: float = Field(
        0.1,
        ge=0,
        le=1,
        description=("A skipped document is a negative only while its debiased click rate is at most this."),
    )
    min_dwell_s: float = Field(10.0, ge=0, description="Clicks with a shorter dwell time are bounces (not clicks).")
    related_text_sim: float = Field(
        0.5,
        ge=0,
        le=1,
        description=(
            "Queries whose token Jaccard similarity reaches this are related (their clicked documents become candidates)."
        ),
    )


class ProfileConfig(_Cfg):
    """The corpus profile the prompts receive (see negforge.synth.profile)."""

    corpus: Optional[str] = Field(
        None, description=("BEIR folder or corpus JSONL to profile (null: the input records' positives).")
    )
    description: Optional[str] = Field(
        None, description=("One line saying what the corpus's documents are (null: the LLM writes it).")
    )
    describe_with_llm: bool = Field(
        True, description=("With no description: the LLM writes one once, stored with the profile.")
    )
    examples: int = Field(3, ge=0, le=10, description="Real documents shown to the LLM as style examples.")
    example_words: int = Field(50, ge=10, le=400, description="Each example is trimmed to about this many words.")
    sample_size: int = Field(2000, ge=10, description="Documents sampled (seeded) for the length distribution.")
    match_length: bool = Field(
        True, description=("Keep a draft's target length within the corpus's 10th-90th percentile.")
    )
    seed: int = Field(0, description="Seed of the sample; the profile is stored under <generate.cache_dir>/profiles.")


class RayConfig(_Cfg):
    """``negforge generate --ray``: the records as a Ray dataset, the flow in a pool of actors
    (negforge.synth.ray_job)."""

    enabled: bool = Field(False, description="Run the generation job on Ray (the CLI's --ray).")
    address: Optional[str] = Field(
        None, description=("The Ray cluster's address; null: $RAY_ADDRESS, else a local cluster started for the job.")
    )
    num_cpus: Optional[int] = Field(None, ge=1, description="CPUs of that local cluster (null: Ray's own count).")
    actors: int = Field(
        2,
        ge=1,
        description=("Actors in the pool, each holding one backend (a vLLM engine on its GPUs, or an OpenAI client)."),
    )
    base_urls: list[str] = Field(
        default_factory=list,
        description=("OpenAI-compatible servers: actor i talks to base_urls[i % n] (empty: llm.base_url)."),
    )
    cpus_per_actor: float = Field(1.0, ge=0, description="CPUs Ray reserves for each actor.")
    gpus_per_actor: float = Field(
        0.0, ge=0, description=("GPUs for each actor (vLLM: the engine's tensor_parallel_size).")
    )


class GenerateConfig(_Cfg):
    """``negforge generate``: LLM-written hard negatives."""

    SECTION: ClassVar[str] = "generate"
    llm: LLMConfig = Field(default_factory=LLMConfig, description="The LLM that writes the negatives.")
    template: str = Field(
        "mar",
        description=(
            "Template set: a built-in set (mar, counterfactual, mar_scifact) or a folder holding <step>.jinja2 files "
            "and a space.yaml; the set's space.yaml names its flow."
        ),
    )
    template_dir: Optional[str] = Field(
        None, description=("A folder holding your own set folders, searched before the built-in sets.")
    )
    profile: ProfileConfig = Field(default_factory=ProfileConfig, description="The corpus profile the prompts receive.")
    num_negatives: int = Field(2, ge=1, le=32, description="Drafts per (query, positive).")
    reflection_rounds: int = Field(1, ge=0, le=5, description="Rounds of the reflect step (0: none).")
    max_reasks: int = Field(1, ge=0, le=5, description="Re-asks with the validation error before a reply is rejected.")
    max_prompt_words: int = Field(300, ge=20, description="The positive is cut to this many words in the prompts.")
    seed: int = Field(0, description="Seed of the sampled settings (attributes, lengths) and of the LLM requests.")
    cache_dir: Optional[str] = Field(
        default_factory=lambda: cache_path("llm"),
        description=("On-disk cache of LLM replies (null disables it); a rerun or a resumed job costs no tokens."),
    )
    limit: Optional[int] = Field(None, ge=1, description="First N records only (null: all).")
    batch_size: int = Field(16, ge=1, description="Records per batch (each step of the flow runs batched).")
    schedule: Literal["auto", "lockstep", "per_record"] = Field(
        "auto",
        description=(
            "Order of the LLM calls. lockstep: each step is one batched call over the batch's rows (an offline vLLM "
            "engine batches them). per_record: each record's steps run as one chain of calls, llm.concurrency "
            "chains side by side, so every call meets its record's prompt prefix in the server's cache. auto: "
            "per_record for servers (backend openai / local), lockstep otherwise (vllm)."
        ),
    )
    shard: int = Field(0, ge=0, description="This job's shard, 0 <= shard < num_shards.")
    num_shards: int = Field(
        1, ge=1, description="Split the records into this many shards by a stable hash of their id."
    )
    max_failed_fraction: float = Field(
        0.01,
        ge=0,
        le=1,
        description=(
            "A job whose share of failed records (LLM work failed after retries) passes this ends with exit 3; failed "
            "records are never in the output, they are listed in OUT.failures.jsonl and retried by a rerun."
        ),
    )
    ray: RayConfig = Field(
        default_factory=RayConfig,
        description=("Many machines / GPUs: the job on a Ray cluster (negforge generate --ray; needs negforge[ray])."),
    )

    @field_validator("num_shards")
    @classmethod
    def _shards(cls, v: int, info: Any) -> int:
        if info.data.get("shard", 0) >= v:
            raise ValueError(f"shard must be < num_shards ({v})")
        return v


class VerifyConfig(_Cfg):
    """``negforge verify``: false-negative control, the verifiers in order."""

    SECTION: ClassVar[str] = "verify"
    MOVED: ClassVar[dict[str, str]] = {
        "cache_dir": "encoder.cache_dir",
        "batch_size": "encoder.batch_size",
        "backend": "encoder.backend",
        "precision": "encoder.precision",
    }
    verifiers: list[str] = Field(
        default_factory=lambda: ["qrels", "embedding"],
        description=(
            "Applied in order; the first that rejects a negative decides. Valid: qrels, embedding, cross_encoder, "
            "llm_judge."
        ),
    )
    encoder: EncoderConfig = Field(
        default_factory=EncoderConfig,
        description=("The embedding verifier's encoder and cache (a run config's top-level `encoder`)."),
    )
    cross_encoder: Optional[str] = Field(
        None,
        description=("A CrossEncoder folder for the cross_encoder verifier (e.g. from `negforge verifier train`)."),
    )
    perc_pos: float = Field(
        0.95,
        gt=0,
        le=2.0,
        description=(
            "Positive-aware rule (NV-Retriever TopK-PercPos): drop if score > positive's score * perc_pos ..."
        ),
    )
    abs_margin: float = Field(0.0, ge=0, description="... or if positive's score - score < abs_margin.")
    min_perc_pos: Optional[float] = Field(
        0.2,
        ge=0,
        lt=1,
        description=(
            "Off-topic floor (embedding verifier): drop a negative from min_perc_pos_sources whose cosine to the query "
            "is below positive's * min_perc_pos (too far from the query to teach anything); null: no floor."
        ),
    )
    min_perc_pos_sources: list[str] = Field(
        default_factory=lambda: ["llm"],
        description=(
            "Sources the off-topic floor applies to (mined negatives are retrieved for the query: by default only "
            "LLM-written ones)."
        ),
    )
    judge: Optional[LLMConfig] = Field(
        None, description=("The LLM judge's backend (null: the bundled local model at temperature 0).")
    )
    judge_max_reasks: int = Field(
        1, ge=0, le=5, description=("Re-asks with the validation error before a judge reply counts as unparseable.")
    )
    judge_template: str = Field("judge", description="The judge's prompt template.")
    judge_partly_rejects: bool = Field(
        True, description="A judge 'partly' answer drops the negative (false: keeps it)."
    )
    judge_cache_dir: Optional[str] = Field(
        default_factory=lambda: cache_path("llm"), description=("On-disk cache of judge replies (null disables it).")
    )
    reverify: bool = Field(False, description="Re-check negatives that already have a verdict.")
    fn_action: Literal["drop", "relabel", "drop_query"] = Field(
        "drop",
        description=(
            "What a likely false negative (a rejection other than off-topic or a copy of a positive) becomes: drop = "
            "rejected verdict, out of training; relabel = moved into the record's positives (the verifier and score in "
            "positive.relabelled); drop_query = as drop, and a query with more than drop_query_over such negatives "
            "is removed."
        ),
    )
    drop_query_over: int = Field(
        8, ge=0, description="fn_action=drop_query: the most likely false negatives a query may have."
    )

    @field_validator("min_perc_pos_sources")
    @classmethod
    def _floor_sources(cls, v: list[str]) -> list[str]:
        return _known_sources(v)


class MineConfig(_Cfg):
    """``negforge mine``: negatives from a corpus, per miner, through one set of rules."""

    SECTION: ClassVar[str] = "mine"
    MOVED: ClassVar[dict[str, str]] = {
        "cache_dir": "encoder.cache_dir",
        "batch_size": "encoder.batch_size",
        "index": "dense.index",
        "ann_threshold": "dense.ann_threshold",
        "click_log": "click.log",
        "min_impressions": "click.min_impressions",
        "propensities": "click.propensities",
        "backend": "encoder.backend",
        "precision": "encoder.precision",
    }
    sources: list[str] = Field(
        default_factory=lambda: ["bm25", "dense"], description="Miners, in order: bm25, dense, click."
    )
    num_negatives: int = Field(8, ge=1, description="Negatives per source per query.")
    range_min: int = Field(0, ge=0, description="Skip the first range_min survivors (after positives are removed).")
    range_max: int = Field(50, ge=1, description="Take negatives among the survivors ranked [range_min, range_max).")
    max_score: Optional[float] = Field(
        None, description="Scored on one scale (dense): drop candidates scoring above this."
    )
    relative_margin: Optional[float] = Field(
        None, description=("Scored on one scale (dense): drop if score > positive's - |positive's| * relative_margin.")
    )
    cross_encoder: Optional[str] = Field(
        None,
        description=(
            "A CrossEncoder folder (e.g. from `negforge verifier train`): candidates and positives are rescored with it, "
            "re-ordered by P(relevant), and max_score / relative_margin apply to that score for every source."
        ),
    )
    sampling: Literal["top", "random"] = Field(
        "top",
        description=(
            "top: the first num_negatives of the window; random: a sample seeded by (seed, record id, source)."
        ),
    )
    seed: int = Field(0, description="Seed of sampling=random (and of the ivf index's training sample).")
    encoder: EncoderConfig = Field(
        default_factory=EncoderConfig,
        description=(
            "The dense miner's encoder and the cache of embeddings and BM25 indexes (a run config's top-level `encoder`)."
        ),
    )
    bm25: BM25Config = Field(default_factory=BM25Config, description="The bm25 miner.")
    dense: DenseConfig = Field(default_factory=DenseConfig, description="The dense miner's index.")
    click: ClickConfig = Field(default_factory=ClickConfig, description="The click miner.")


class MixConfig(_Cfg):
    """``negforge mix``: k verified negatives per query, drawn from the sources by ratio."""

    SECTION: ClassVar[str] = "mix"
    k: int = Field(4, ge=1, description="Negatives per query.")
    ratios: dict[str, float] = Field(
        default_factory=lambda: {"llm": 0.5, "bm25": 0.25, "dense": 0.25},
        description=("Share of each source (normalised); a source short of its share gives the rest to the others."),
    )
    seed: int = Field(0, description="Seed of the draws (with the record id, the epoch and the source).")
    epochs: int = Field(1, ge=1, description="Fresh draws, one per epoch (`negforge mix` writes a file for each).")
    dedup_cosine: Optional[float] = Field(
        None,
        gt=0,
        le=1,
        description=("Also drop embedding near-duplicates above this cosine (null: exact duplicates only)."),
    )
    require_verified: bool = Field(True, description="Only verified-kept negatives; an unverified one is an error.")
    curriculum: bool = Field(False, description="The share of the hardest negatives grows with the epoch.")

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, v: dict[str, float]) -> dict[str, float]:
        _known_sources(v)
        if any(x < 0 for x in v.values()) or sum(v.values()) <= 0:
            raise ValueError("ratios must be >= 0 and sum to more than 0")
        return v


class TrainConfig(_Cfg):
    """``negforge train``: contrastive fine-tuning with in-batch and hard negatives."""

    SECTION: ClassVar[str] = "train"
    encoder: str = Field(DEFAULT_ENCODER, description="The model to fine-tune (a folder, a hub name or 'bundled').")
    loss: str = Field("mnrl", description="mnrl, cached_mnrl, mnrl_xbm, jointlh, summarglh, lsepair, rand1lh.")
    epochs: int = Field(1, ge=1, description="Passes over the examples.")
    batch_size: int = Field(32, ge=2, description="Queries per batch (each brings its positive and hard negatives).")
    mini_batch_size: int = Field(8, ge=1, description="Cached (GradCache) losses only: the mini-batch size.")
    lr: float = Field(2e-5, gt=0, description="Learning rate.")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of the steps spent warming up the learning rate.")
    scale: float = Field(20.0, gt=0, description="1 / temperature.")
    max_seq_length: int = Field(
        128,
        ge=16,
        description=(
            "Tokens per text in training (all-MiniLM-L6-v2 itself was trained at 128; 256 doubles a CPU step)."
        ),
    )
    num_hard_negatives: int = Field(1, ge=0, description="Hard negatives per training example.")
    queue_size: int = Field(
        0,
        ge=0,
        description=(
            "loss mnrl_xbm only: passage embeddings of earlier steps kept as extra negatives (a FIFO memory bank; "
            "entries that are a positive of the query are left out); 0: none, plain MNRL."
        ),
    )
    momentum: float = Field(
        0.0,
        ge=0,
        lt=1,
        description=(
            "loss mnrl_xbm only: 0: the bank holds the trained model's own detached embeddings (XBM); m > 0: a "
            "momentum copy of the encoder (updated as m * copy + (1 - m) * model every step) embeds them (MoCo)."
        ),
    )
    entropy_weight: float = Field(
        0.0,
        ge=0,
        description=(
            "> 0: add the query-view entropy term (spreads a query's hard negatives over the similarity range)."
        ),
    )
    max_positives: Optional[int] = Field(
        4,
        ge=1,
        description=(
            "Positives per example (rows per query for mnrl, slots for the multi-positive losses); null: all."
        ),
    )
    positive_rule: Literal["first", "grade", "sample"] = Field(
        "grade",
        description=(
            "Which positives when a query has more: first (record order), grade (highest qrels grade first), "
            "sample (a seeded draw per epoch)."
        ),
    )
    batch_sampler: Literal["query_aware", "no_duplicates"] = Field(
        "query_aware",
        description=(
            "query_aware: no duplicates and no query's own positive as another row's text in its batch (no false "
            "in-batch negatives); no_duplicates: sentence-transformers' sampler (texts only)."
        ),
    )
    seed: int = Field(0, description="Seed of the data order, the sampler and the model's new weights.")
    output_dir: str = Field("runs/default/model", description="Where the model is saved.")
    logging_steps: int = Field(1, ge=1, description="Record the training loss every N steps (the report plots each).")
    max_steps: Optional[int] = Field(None, ge=1, description="Stop after N optimizer steps (overrides epochs).")
    save_steps: Optional[int] = Field(None, ge=1, description="Checkpoint every N steps into output_dir/checkpoints.")
    resume_from: Optional[str] = Field(
        None, description=("A checkpoint folder, or 'latest' (the newest under output_dir/checkpoints).")
    )
    eval_corpus_size: int = Field(
        1000, ge=10, description="Documents in the per-epoch validation corpus (with eval data)."
    )


class EvalConfig(_Cfg):
    """``negforge eval``: nDCG@10, Recall@10/100 and MRR@10 on a BEIR split."""

    SECTION: ClassVar[str] = "eval"
    MOVED: ClassVar[dict[str, str]] = {
        "cache_dir": "encoder.cache_dir",
        "batch_size": "encoder.batch_size",
        "max_seq_length": "encoder.max_seq_length",
        "backend": "encoder.backend",
        "precision": "encoder.precision",
    }
    encoder: EncoderConfig = Field(
        default_factory=EncoderConfig,
        description=(
            "The model `negforge eval` evaluates, and how corpora are encoded and cached (in a run the base and "
            "fine-tuned models are evaluated with these settings)."
        ),
    )
    split: str = Field("test", description="The qrels split to evaluate on.")
    ignore_identical_ids: bool = Field(
        True,
        description=(
            "As BEIR: a retrieved document whose id equals the query's is not counted (datasets whose queries are "
            "also corpus documents, e.g. ArguAna, Quora); false counts it like any other."
        ),
    )


ENCODER_SECTIONS = ("mine", "verify", "eval")  # the run-config sections that share the top-level encoder


# The run's encoder runtime unless its config says otherwise (the fastest variant within 0.002 nDCG@10 of torch)
RUN_ENCODER = {"backend": "openvino", "precision": "auto"}


class RunConfig(_Cfg):
    """``negforge run``: the whole path on one dataset (every stage's section, one shared encoder)."""

    data: str = Field(DEFAULT_DATA, description="BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv).")
    train_split: str = Field("train", description="qrels split the train queries come from.")
    out_dir: str = Field("runs/default", description="Every stage's records, stamps and the metrics go here.")
    llm_queries: Optional[int] = Field(
        8,
        ge=0,
        description=(
            "The LLM stage runs on the first N train queries (null / --all-queries: all; 0: no LLM stage, mined "
            "negatives only); 8 keeps the bundled default run near 15 minutes on a 2-core CPU machine."
        ),
    )
    refresh_every_epochs: Optional[int] = Field(
        None,
        ge=1,
        description=(
            "Fresh negatives (as ANCE): after every N of the mix.epochs epochs, the dense negatives are mined again "
            "with the model being trained, verified, and the next epochs mix from them (needs mix.epochs > N and "
            "dense in mine.sources); null: the pool mined by the base model throughout."
        ),
    )
    shortcut_check: bool = Field(
        True,
        description=(
            "After verify: per source, how well a classifier tells the kept negatives from real documents (shortcut.json)."
        ),
    )
    report: bool = Field(True, description="Write out_dir/report (report.md + PNGs) at the end.")
    encoder: EncoderConfig = Field(
        default_factory=lambda: EncoderConfig(**RUN_ENCODER),
        description=(
            "The encoder and embedding cache that mine, verify and eval share (a section's own `encoder` overrides it). "
            "A run encodes with OpenVINO by default (backend openvino, precision auto: bf16 where the CPU has it; "
            "bench/results/encoding.md), the stage commands with torch."
        ),
    )
    generate: GenerateConfig = Field(default_factory=GenerateConfig, description="The generate stage.")
    verify: VerifyConfig = Field(default_factory=VerifyConfig, description="The verify stage.")
    mine: MineConfig = Field(default_factory=MineConfig, description="The mine stage.")
    mix: MixConfig = Field(default_factory=MixConfig, description="The mix stage.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="The train stage.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation before and after training.")

    @model_validator(mode="before")
    @classmethod
    def _share_encoder(cls, data: Any) -> Any:
        """The top-level ``encoder`` fills the ``encoder`` of mine, verify and eval (key by key, the section's
        own keys win)."""
        if not isinstance(data, dict):
            return data
        shared = data.get("encoder")
        shared = {"model": shared} if isinstance(shared, str) else dict(shared or {})
        return share_encoder({**data, "encoder": {**RUN_ENCODER, **shared}})

    @model_validator(mode="after")
    def _refresh_fits(self) -> RunConfig:
        n = self.refresh_every_epochs
        if n is None:
            return self
        if self.mix.epochs <= n:
            raise ValueError(
                f"refresh_every_epochs={n} re-mines after epochs {n}, {2 * n}, ... of mix.epochs ({self.mix.epochs}): "
                f"set mix.epochs above {n}, or refresh_every_epochs to null"
            )
        if "dense" not in self.mine.sources:
            raise ValueError(
                f"refresh_every_epochs re-mines the dense negatives: add dense to mine.sources ({self.mine.sources})"
            )
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        """A section's ``encoder`` is left out where it equals the top-level one (written once, edited once)."""
        out = handler(self)
        for sec in ENCODER_SECTIONS:
            if isinstance(out.get(sec), dict) and out[sec].get("encoder") == out.get("encoder"):
                out[sec].pop("encoder")
        return out


def share_encoder(data: dict) -> dict:
    """``data`` (a run config as a dict) with the top-level ``encoder`` merged under each section's own."""
    shared = data.get("encoder")
    if shared is None:
        return data
    shared = {"model": shared} if isinstance(shared, str) else dict(shared)
    data = dict(data)
    for sec in ENCODER_SECTIONS:
        section = data.get(sec)
        if section is None:
            section = {}
        if not isinstance(section, dict):
            continue
        own = section.get("encoder")
        own = {"model": own} if isinstance(own, str) else dict(own or {})
        section = {k: v for k, v in section.items()}
        # keys that moved into encoder (cache_dir, batch_size, ...) count as the section's own
        for old, new in _SECTION_CLASSES[sec].MOVED.items():
            if new.startswith("encoder.") and old in section:
                own.setdefault(new.split(".", 1)[1], section.pop(old))
        section["encoder"] = {**shared, **own}
        data[sec] = section
    return data


_SECTION_CLASSES: dict[str, type[_Cfg]] = {"mine": MineConfig, "verify": VerifyConfig, "eval": EvalConfig}


C = TypeVar("C", bound=BaseModel)


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        tree = tree.setdefault(k, {})
        if not isinstance(tree, dict):
            raise ConfigError(f"override {dotted!r}: {k!r} is not a section")
    tree[keys[-1]] = value


def yaml_problem(e: yaml.YAMLError) -> tuple[int, int, str]:
    """(line, column, what is wrong) of a YAML error, 1-based; the message on one line."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    what = " ".join(str(getattr(e, "problem", None) or e).split())
    return (mark.line + 1, mark.column + 1, what) if mark is not None else (0, 0, what)


def parse_overrides(overrides: list[str] | None) -> dict:
    tree: dict = {}
    for item in overrides or []:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"override {item!r} must look like key.path=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            _, col, what = yaml_problem(e)
            raise ConfigError(
                f"--set {item!r}: the value is not valid YAML ({what} at column {col}); quote it if it is meant as text"
            ) from None
        _set_dotted(tree, key.strip(), value)
    return tree


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(
    cls: type[C],
    path: str | os.PathLike | None = None,
    overrides: list[str] | None = None,
    section: str | None = None,
    **flags: Any,
) -> C:
    """Build ``cls`` from an optional YAML file (its ``section`` if present), then ``overrides``
    (``a.b=value`` strings), then keyword ``flags`` whose value is not None."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        from .io import read_text

        try:
            loaded = yaml.safe_load(read_text(p)) or {}
        except yaml.YAMLError as e:
            line, col, what = yaml_problem(e)
            raise ConfigError(f"{p}:{line}: not valid YAML ({what} at column {col})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping")
        run_keys = [k for k in loaded if k in RunConfig.model_fields and k not in cls.model_fields]
        if section and (isinstance(loaded.get(section), dict) or run_keys):
            # a stage read from a run config: its section, with the run's shared encoder where it takes one
            data = (share_encoder(loaded) if section in ENCODER_SECTIONS else loaded).get(section) or {}
        else:
            data = loaded
    data = _merge(data, parse_overrides(overrides))
    for k, v in flags.items():
        if v is not None:
            _set_dotted(data, k, v)
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"invalid {cls.__name__}: {validation_message(e)}") from None
