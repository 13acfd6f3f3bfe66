"""The corpus profile: what the prompts know about the user's corpus, computed once per corpus and cached.

* a seeded sample of real documents, trimmed, shown to the LLM as style examples;
* the corpus's length distribution in words (10th/25th/50th/75th/90th percentile, mean): a draft's
  target length is the positive's, first brought inside the 10th-90th percentile range;
* a one-line description of the corpus (what its documents are): ``generate.profile.description``, or
  written once by the LLM from sample documents and stored with the profile.

The profile is read from ``generate.profile.corpus`` (a BEIR folder or a corpus JSONL; the CLI fills it
in from ``--data``), else from the distinct positives of the job's input records (all of them, before
``limit`` and sharding). It is stored beside the LLM cache (``<generate.cache_dir>/profiles/<key>.json``;
not stored when that cache is off) by a key of the corpus content, the profile settings and (when the LLM
writes the description) the model, so every shard and every rerun of a job sees the same profile.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, Field

from .schema import Record

log = logging.getLogger(__name__)

DESCRIBE_EXAMPLES, DESCRIBE_WORDS, MAX_DESCRIPTION_WORDS = 5, 60, 25


class CorpusProfile(BaseModel):
    key: str
    source: str  # the corpus path, or "input records"
    n_docs: int
    description: str = ""
    description_source: str = "none"  # config | llm | none
    examples: list[str] = Field(default_factory=list)
    length: dict[str, float] = Field(default_factory=dict)  # words: p10, p25, median, p75, p90, mean

    def for_templates(self) -> dict[str, Any]:
        return {"description": self.description, "examples": list(self.examples), "length": dict(self.length)}

    def length_range(self) -> Optional[tuple[int, int]]:
        return (int(self.length["p10"]), int(self.length["p90"])) if self.length else None


def empty_profile() -> dict[str, Any]:
    """What templates get with no profile: no description, no examples."""
    return {"description": "", "examples": [], "length": {}}


def trim(text: str, words: int) -> str:
    """The first ``words`` words, ended at the last full sentence when one ends past half of them."""
    parts = text.split()
    if len(parts) <= words:
        return " ".join(parts)
    cut = " ".join(parts[:words])
    end = max(cut.rfind(". "), cut.rfind("? "), cut.rfind("! "))
    return cut[: end + 1] if end > len(cut) // 2 else cut + " ..."


def _percentile(sorted_vals: list[int], q: float) -> float:
    if not sorted_vals:
        return 0.0
    pos = (len(sorted_vals) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(sorted_vals) - 1)
    return float(sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo))


def length_stats(texts: Sequence[str]) -> dict[str, float]:
    n = sorted(len(t.split()) for t in texts)
    out = {f"p{int(q * 100)}": round(_percentile(n, q), 1) for q in (0.1, 0.25, 0.75, 0.9)}
    out["median"] = round(_percentile(n, 0.5), 1)
    out["mean"] = round(statistics.fmean(n), 1) if n else 0.0
    return out


def corpus_texts(cfg: Any, records: Sequence[Record], titles: bool = True) -> tuple[list[str], str]:
    """The documents to profile: ``cfg.corpus`` (BEIR folder or corpus JSONL), else the records' positives
    (``titles``: title and text, as the prompts show them; False: the text alone)."""
    if cfg.corpus:
        from .data import load_corpus

        path = Path(cfg.corpus)
        corpus = load_corpus(path / "corpus.jsonl" if path.is_dir() else path)
        return (corpus.full_texts() if titles else list(corpus.texts)), str(path)
    seen: dict[str, None] = {}
    for r in records:
        for p in r.positives:
            seen.setdefault(p.full_text if titles else p.text, None)
    return list(seen), "input records"


def _key(texts: Sequence[str], cfg: Any, model: Optional[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode() + b"\x01")
    settings = cfg.model_dump(mode="json", exclude={"corpus"})
    h.update(json.dumps(settings, sort_keys=True).encode())
    if not cfg.description and cfg.describe_with_llm:
        h.update(b"llm:" + str(model).encode())
    return h.hexdigest()[:16]


def _cache_path(cache_dir: Optional[str], key: str) -> Optional[Path]:
    return Path(cache_dir) / "profiles" / f"{key}.json" if cache_dir else None


def compute_profile(texts: Sequence[str], cfg: Any, source: str, key: str) -> CorpusProfile:
    """The profile without an LLM: seeded length sample and style examples, the configured description."""
    rng = random.Random(cfg.seed)
    idx = list(range(len(texts)))
    sample = idx if len(idx) <= cfg.sample_size else rng.sample(idx, cfg.sample_size)
    lengths = length_stats([texts[i] for i in sample])
    candidates = [i for i in sample if len(texts[i].split()) >= 10] or sample
    picks = candidates if len(candidates) <= cfg.examples else rng.sample(candidates, cfg.examples)
    examples = [trim(texts[i], cfg.example_words) for i in picks]
    return CorpusProfile(
        key=key,
        source=source,
        n_docs=len(texts),
        description=cfg.description or "",
        description_source="config" if cfg.description else "none",
        examples=examples,
        length=lengths,
    )


def describe_with_llm(profile: CorpusProfile, texts: Sequence[str], cfg: Any, backend: Any, params: Any) -> str:
    """One line from the LLM saying what the documents are ("" when its reply is unusable)."""
    from .parsing import DescriptionReply, ParseError, parse_reply
    from .templates import render

    rng = random.Random(cfg.seed + 1)
    picks = rng.sample(range(len(texts)), min(DESCRIBE_EXAMPLES, len(texts)))
    prompt = render(
        "profile_describe",
        examples=[trim(texts[i], DESCRIBE_WORDS) for i in picks],
        output_format=DescriptionReply.FORMAT,
    )
    p = params.model_copy(
        update={
            "temperature": 0.0,
            "max_tokens": 80,
            "json_schema": DescriptionReply.SCHEMA if params.json_mode else None,
        }
    )
    (c,) = backend.generate([[{"role": "user", "content": prompt}]], p)
    if not c.ok:
        log.warning(
            "corpus profile: the LLM could not describe the corpus (%s); going on without a description", c.error
        )
        return ""
    try:
        value, _ = parse_reply(c.text or "", DescriptionReply, c.finish_reason)
    except ParseError as e:
        log.warning("corpus profile: unusable description reply (%s); going on without one", e)
        return ""
    words = value.description.strip().rstrip(".").split()
    return " ".join(words[:MAX_DESCRIPTION_WORDS])


def corpus_profile(
    cfg: Any,
    records: Sequence[Record],
    backend: Any = None,
    params: Any = None,
    cache_dir: Optional[str] = None,
    model: Optional[str] = None,
) -> CorpusProfile:
    """The stored profile for ``cfg`` (a :class:`~negforge.synth.config.ProfileConfig`), or a new one.

    With a ``backend`` and no configured description, the LLM writes the description once; the profile
    is then stored under ``cache_dir`` (None: not stored). Without a backend (``prompt render``) a stored
    profile is used when there is one, else one without a description is returned and not stored.
    """
    texts, source = corpus_texts(cfg, records)
    key = _key(texts, cfg, model or getattr(backend, "model", None))
    path = _cache_path(cache_dir, key)
    if path is not None and path.is_file():
        try:
            return CorpusProfile.model_validate_json(path.read_text())
        except ValueError:
            log.warning("%s: unreadable corpus profile; computing it again", path)
    profile = compute_profile(texts, cfg, source, key)
    wants_llm = not cfg.description and cfg.describe_with_llm
    if wants_llm and backend is not None and texts:
        profile.description = describe_with_llm(profile, texts, cfg, backend, params)
        profile.description_source = "llm" if profile.description else "none"
    elif wants_llm:
        return profile  # not final: the job's LLM writes the description once
    if path is not None:
        from .io import write_json

        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, profile.model_dump(mode="json"))
        log.info(
            "corpus profile %s (%s): %d docs, median %s words, description %r",
            key,
            source,
            len(texts),
            profile.length.get("median"),
            profile.description,
        )
    return profile


def with_corpus(cfg: Any, source: Optional[Path]) -> Any:
    """``cfg`` (a GenerateConfig) with ``profile.corpus`` set to ``source`` when that is a BEIR folder and
    no corpus was configured: the CLI profiles the corpus the records came from."""
    if cfg.profile.corpus is not None or source is None or not (Path(source) / "corpus.jsonl").is_file():
        return cfg
    return cfg.model_copy(update={"profile": cfg.profile.model_copy(update={"corpus": str(source)})})
