"""One pydantic config per stage (extra="forbid"), loaded from YAML with flag overrides.

A YAML file may hold one stage's fields at the top level, or a whole :class:`RunConfig`
(sections ``generate:``, ``verify:``, ``mine:``, ``mix:``, ``train:``, ``eval:``); a stage
command reads its own section. Overrides are ``dotted.key=value`` strings whose value is
parsed as YAML (``mix.k=8``, ``mix.ratios={llm: 0.5, bm25: 0.5}``).
"""
from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Optional, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError, validation_message
from .models import DEFAULT_ENCODER, DEFAULT_GGUF
from .params import GenParams
from .paths import cache_path

DEFAULT_DATA = "../shared/data/scifact"


def _known_sources(names: Any) -> Any:
    """``names`` unchanged when every name is a negative source; else the error pydantic reports."""
    from .schema import Source

    bad = [s for s in names if s not in Source.__members__]
    if bad:
        raise ValueError(f"unknown source {bad[0]!r}; valid: {', '.join(Source.__members__)}")
    return names


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=True)


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
    backend: BackendName = BackendName.local
    # Model name sent to the server / loaded by vLLM (a HF directory for vLLM).
    model: str = "SmolLM2-135M-Instruct"
    # An OpenAI-compatible server's URL: setting it (and not the backend) means backend=openai. backend=openai
    # without one means the local server (as it always has); the OpenAI API is https://api.openai.com/v1.
    base_url: Optional[str] = None
    # The key is read from this environment variable, never from a file, and sent as a bearer token to
    # base_url. A name that is not the usual one for the provider (OPENAI_API_KEY for OpenAI and unknown
    # hosts) with a non-local base_url draws a warning: a config from someone else could point both at
    # another secret and at their own host.
    api_key_env: str = "OPENAI_API_KEY"
    gguf: str = DEFAULT_GGUF  # local server model file (``bundled:...`` or a path)
    n_ctx: int = Field(4096, ge=512)
    concurrency: int = Field(4, ge=1, le=1024)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(5, ge=0, le=20)
    price_per_1k_prompt: float = Field(0.0, ge=0)  # for cost accounting, in your currency
    price_per_1k_completion: float = Field(0.0, ge=0)
    params: GenParams = Field(default_factory=GenParams)
    # backend=vllm only: extra vllm.LLM engine keywords (dtype, max_model_len, enforce_eager, tensor_parallel_size, ...).
    vllm: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _server_from_url(self) -> "LLMConfig":
        """local vs openai follows ``base_url``: a URL is that server, none is the local one."""
        if self.backend == BackendName.local and self.base_url is not None:
            if "backend" in self.model_fields_set:
                raise ValueError(f"backend 'local' starts its own server; to use the one at {self.base_url} set "
                                 "backend: openai (or remove base_url)")
            self.backend = BackendName.openai.value  # type: ignore[assignment]  # stored as values (use_enum_values)
        elif self.backend == BackendName.openai and self.base_url is None:
            self.backend = BackendName.local.value  # type: ignore[assignment]
        return self


class ProfileConfig(_Cfg):
    """The corpus profile the prompts receive (see negforge.synth.profile)."""

    corpus: Optional[str] = None  # BEIR folder or corpus JSONL to profile (None: the input records' positives)
    description: Optional[str] = None  # one line saying what the corpus's documents are (None: the LLM writes it)
    describe_with_llm: bool = True  # with no description: the LLM writes one once, stored with the profile
    examples: int = Field(3, ge=0, le=10)  # real documents shown to the LLM as style examples
    example_words: int = Field(50, ge=10, le=400)  # each example is trimmed to about this many words
    sample_size: int = Field(2000, ge=10)  # documents sampled (seeded) for the length distribution
    match_length: bool = True  # keep a draft's target length within the corpus's 10th-90th percentile
    seed: int = 0  # stored under <generate.cache_dir>/profiles (not stored when that cache is off)


class GenerateConfig(_Cfg):
    llm: LLMConfig = Field(default_factory=LLMConfig)
    # Template set: a built-in set (mar, counterfactual, mar_scifact) or a folder holding <step>.jinja2 files
    # and a space.yaml; the set's space.yaml names its flow.
    template: str = "mar"
    template_dir: Optional[str] = None  # a folder holding your own set folders, searched before the built-in sets
    profile: ProfileConfig = Field(default_factory=ProfileConfig)
    num_negatives: int = Field(2, ge=1, le=32)  # drafts per (query, positive)
    reflection_rounds: int = Field(1, ge=0, le=5)
    max_reasks: int = Field(1, ge=0, le=5)  # re-asks with the validation error before rejecting
    max_prompt_words: int = Field(300, ge=20)  # the positive is cut to this many words in the prompts
    seed: int = 0
    cache_dir: Optional[str] = Field(default_factory=lambda: cache_path("llm"))  # None disables the on-disk cache
    limit: Optional[int] = Field(None, ge=1)  # first N records only (None: all)
    batch_size: int = Field(16, ge=1)  # records per batch (each stage of the flow runs batched)
    shard: int = Field(0, ge=0)
    num_shards: int = Field(1, ge=1)
    # A job whose share of failed records (LLM work failed after retries) passes this ends with exit 3;
    # failed records are never in the output, they are listed in OUT.failures.jsonl and retried by a rerun.
    max_failed_fraction: float = Field(0.01, ge=0, le=1)

    @field_validator("num_shards")
    @classmethod
    def _shards(cls, v: int, info: Any) -> int:
        if info.data.get("shard", 0) >= v:
            raise ValueError(f"shard must be < num_shards ({v})")
        return v


class VerifyConfig(_Cfg):
    # Applied in order; each records its score and verdict. Valid: qrels, embedding, cross_encoder, llm_judge.
    verifiers: list[str] = Field(default_factory=lambda: ["qrels", "embedding"])
    encoder: str = DEFAULT_ENCODER
    cross_encoder: Optional[str] = None  # a CrossEncoder path (e.g. from `negforge verifier train`)
    # Positive-aware rule (NV-Retriever TopK-PercPos): drop if score > pos_score * perc_pos ...
    perc_pos: float = Field(0.95, gt=0, le=2.0)
    # ... or if pos_score - score < abs_margin.
    abs_margin: float = Field(0.0, ge=0)
    # Off-topic floor (embedding verifier): drop a negative from these sources whose cosine to the
    # query is below pos_score * min_perc_pos: too far from the query to teach anything. Mined
    # negatives are retrieved for the query, so by default only LLM-written ones are checked.
    min_perc_pos: Optional[float] = Field(0.2, ge=0, lt=1)
    min_perc_pos_sources: list[str] = Field(default_factory=lambda: ["llm"])
    judge: Optional[LLMConfig] = None  # LLM judge backend (None: the bundled local model at temperature 0)
    judge_max_reasks: int = Field(1, ge=0, le=5)  # re-asks with the validation error before "unparseable"
    judge_template: str = "judge"
    judge_partly_rejects: bool = True  # a judge "partly" answer drops the negative (False: keeps it)
    judge_cache_dir: Optional[str] = Field(default_factory=lambda: cache_path("llm"))  # judge replies; None disables
    reverify: bool = False  # re-check negatives that already have a verdict
    # What a likely false negative (a rejection other than off-topic or a copy of a positive) becomes:
    # drop = rejected verdict, stays out of training; relabel = moved into the record's positives (with the
    # verifier and score in ``positive.relabelled``), so the multi-positive losses train on it; drop_query =
    # as drop, and a query with more than ``drop_query_over`` such negatives is removed (RLHN drops past 8).
    fn_action: Literal["drop", "relabel", "drop_query"] = "drop"
    drop_query_over: int = Field(8, ge=0)
    cache_dir: str = Field(default_factory=lambda: cache_path("embeddings"))  # corpus embeddings, shared with mine/eval
    batch_size: int = Field(64, ge=1)  # encoder / cross-encoder batch size
    # encoder runtime for corpus/query vectors (torch, onnx, openvino) and its precision (auto, fp32, bf16, int8)
    backend: EncoderBackend = EncoderBackend.torch
    precision: Precision = Precision.fp32

    @field_validator("min_perc_pos_sources")
    @classmethod
    def _floor_sources(cls, v: list[str]) -> list[str]:
        return _known_sources(v)


class MineConfig(_Cfg):
    sources: list[str] = Field(default_factory=lambda: ["bm25", "dense"])  # bm25, dense, click
    num_negatives: int = Field(8, ge=1)  # per source per query
    encoder: str = DEFAULT_ENCODER
    range_min: int = Field(0, ge=0)  # skip the top range_min ranks (after positives are removed)
    range_max: int = Field(50, ge=1)  # sample within ranks [range_min, range_max)
    max_score: Optional[float] = None  # dense: drop candidates scoring above this
    relative_margin: Optional[float] = None  # dense: drop if score > pos_score - |pos_score| * margin
    # A CrossEncoder path (e.g. from `negforge verifier train`): candidates and positives are rescored with it,
    # re-ordered by P(relevant), and max_score / relative_margin apply to that score for every source.
    cross_encoder: Optional[str] = None
    sampling: Literal["top", "random"] = "top"  # the first num_negatives of the window, or a seeded sample
    batch_size: int = Field(64, ge=1)
    cache_dir: str = Field(default_factory=lambda: cache_path("embeddings"))
    # encoder runtime for corpus/query vectors (torch, onnx, openvino) and its precision (auto, fp32, bf16, int8)
    backend: EncoderBackend = EncoderBackend.torch
    precision: Precision = Precision.fp32
    # dense index: flat = exact inner product; ivf / hnsw = faiss ANN; auto = flat up to ann_threshold docs
    index: Literal["auto", "flat", "ivf", "hnsw"] = "auto"
    ann_threshold: int = Field(500_000, ge=1)
    click_log: Optional[str] = None  # impressions JSONL for the click miner
    min_impressions: int = Field(2, ge=1)  # click: a (query, doc) pair needs this many impressions
    propensities: Optional[list[float]] = None  # click: examination probability by position (None: fit from the log)
    seed: int = 0


class MixConfig(_Cfg):
    k: int = Field(4, ge=1)  # negatives per query
    ratios: dict[str, float] = Field(default_factory=lambda: {"llm": 0.5, "bm25": 0.25, "dense": 0.25})
    seed: int = 0
    epochs: int = Field(1, ge=1)
    dedup_cosine: Optional[float] = Field(None, gt=0, le=1)  # also drop embedding near-duplicates
    require_verified: bool = True  # only kept negatives; unverified ones are an error
    curriculum: bool = False  # the share of the hardest negatives (by score rank) grows with the epoch

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, v: dict[str, float]) -> dict[str, float]:
        _known_sources(v)
        if any(x < 0 for x in v.values()) or sum(v.values()) <= 0:
            raise ValueError("ratios must be >= 0 and sum to more than 0")
        return v


class TrainConfig(_Cfg):
    encoder: str = DEFAULT_ENCODER
    loss: str = "mnrl"  # mnrl, cached_mnrl, jointlh, summarglh, lsepair, rand1lh
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=2)
    mini_batch_size: int = Field(8, ge=1)  # cached (GradCache) losses only
    lr: float = Field(2e-5, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    scale: float = Field(20.0, gt=0)  # 1 / temperature
    # all-MiniLM-L6-v2 itself was trained at 128 tokens; 256 doubles the cost of a step on CPU.
    max_seq_length: int = Field(128, ge=16)
    num_hard_negatives: int = Field(1, ge=0)  # hard negatives per training example
    # > 0: add the query-view entropy term (spreads a query's hard negatives over the similarity range)
    entropy_weight: float = Field(0.0, ge=0)
    # Positives per example (rows per query for mnrl, slots for the multi-positive losses); null: all.
    max_positives: Optional[int] = Field(4, ge=1)
    # Which positives when a query has more: first (record order), grade (highest qrels grade first),
    # sample (a seeded draw per epoch).
    positive_rule: Literal["first", "grade", "sample"] = "grade"
    # query_aware: no duplicates and no query's own positive as another row's text in its batch
    # (no false in-batch negatives); no_duplicates: sentence-transformers' sampler (texts only).
    batch_sampler: Literal["query_aware", "no_duplicates"] = "query_aware"
    seed: int = 0
    output_dir: str = "runs/default/model"
    logging_steps: int = Field(10, ge=1)  # record the training loss every N steps
    max_steps: Optional[int] = Field(None, ge=1)  # stop after N optimizer steps (overrides epochs)
    save_steps: Optional[int] = Field(None, ge=1)  # checkpoint every N steps into output_dir/checkpoints
    resume_from: Optional[str] = None  # a checkpoint folder, or "latest" (newest under output_dir/checkpoints)
    eval_corpus_size: int = Field(1000, ge=10)  # docs in the per-epoch validation corpus (with eval data)


class EvalConfig(_Cfg):
    encoder: str = DEFAULT_ENCODER
    split: str = "test"
    batch_size: int = Field(64, ge=1)
    max_seq_length: int = Field(256, ge=16)
    cache_dir: str = Field(default_factory=lambda: cache_path("embeddings"))
    # As BEIR: a retrieved document whose id equals the query's id is not counted (datasets whose
    # queries are also corpus documents, e.g. ArguAna, Quora). False counts it like any other.
    ignore_identical_ids: bool = True
    # encoder runtime for corpus/query vectors (torch, onnx, openvino) and its precision (auto, fp32, bf16, int8)
    backend: EncoderBackend = EncoderBackend.torch
    precision: Precision = Precision.fp32


class RunConfig(_Cfg):
    data: str = DEFAULT_DATA
    train_split: str = "train"
    out_dir: str = "runs/default"
    # The LLM stage runs on the first N train queries by default (all: null / --all-queries); 8 keeps
    # the bundled default run near 15 minutes on a 2-core CPU machine.
    llm_queries: Optional[int] = Field(8, ge=1)
    # After verify: per source, how well a classifier tells the kept negatives from real documents (shortcut.json)
    shortcut_check: bool = True
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    verify: VerifyConfig = Field(default_factory=VerifyConfig)
    mine: MineConfig = Field(default_factory=MineConfig)
    mix: MixConfig = Field(default_factory=MixConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)


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
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({what} at column {col}); "
                              "quote it if it is meant as text") from None
        _set_dotted(tree, key.strip(), value)
    return tree


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(cls: type[C], path: str | os.PathLike | None = None, overrides: list[str] | None = None,
                section: str | None = None, **flags: Any) -> C:
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
        data = loaded[section] if section and isinstance(loaded.get(section), dict) else loaded
    data = _merge(data, parse_overrides(overrides))
    for k, v in flags.items():
        if v is not None:
            _set_dotted(data, k, v)
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"invalid {cls.__name__}: {validation_message(e)}") from None
