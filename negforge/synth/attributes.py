"""The attribute space of multi-attribute generation, declared as data, and its seeded sampler.

Two kinds of attributes:

* **query attributes** (:data:`QUERY_ATTRIBUTES`): what a query can be about (topic, entities,
  intent, time, place, quantity, population, method, answer type). The analyse step asks the LLM
  to fill them in for a (query, positive) pair; one of them is the one a negative *flips*.
* **controls** (:class:`AttributeSpace`): sampled per negative: the domain to stay in, the
  difficulty level, whether to change or withhold the flipped attribute, and the length in
  words, matched to the positive's length.

Sampling uses a local ``random.Random`` seeded from a SHA-256 of (seed, record id, draft index):
never the global RNG and never Python's salted ``hash()``, so the same job samples the same
settings in any process, on any machine, in any order. The setting chosen is stored on each
negative's provenance.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional

from .errors import ConfigError
from .seeding import stable_seed  # noqa: F401  (also imported from here)

# name -> what the analyse step should look for (shown to the LLM).
QUERY_ATTRIBUTES: dict[str, str] = {
    "topic": "the main subject",
    "entities": "named genes, proteins, drugs, diseases, organisms or other named things",
    "intent": "what the query asserts or asks (cause and effect, prevalence, comparison, mechanism ...)",
    "time": "dates, periods, ages or durations",
    "place": "countries, regions or institutions",
    "quantity": "numbers, doses, rates or effect sizes",
    "population": "who or what was studied (patients, mice, cells ...)",
    "method": "study design, technique or measurement",
    "answer_type": "what would settle the query (yes/no, a number, a mechanism ...)",
}

DOMAINS: dict[str, str] = {
    "same": "the same narrow research area as the relevant passage",
    "neighbouring": "a neighbouring research area that shares most of its vocabulary",
}

DIFFICULTIES: dict[str, str] = {
    "hard": "shares the topic and most key terms with the query, but differs in the flipped detail",
    "very hard": "reads almost like the relevant passage: same entities, terms and study type; only the "
                 "flipped detail differs, so it does not answer the query",
}

EDITS: dict[str, str] = {
    "change": "state a different value for it than the relevant passage does",
    "withhold": "discuss the same subject but never state it at all",
}


@dataclass(frozen=True)
class AttributeSpace:
    """Everything that is sampled per negative; swap in your own for another corpus."""

    query_attributes: Mapping[str, str] = field(default_factory=lambda: dict(QUERY_ATTRIBUTES))
    domains: Mapping[str, str] = field(default_factory=lambda: dict(DOMAINS))
    difficulties: Mapping[str, str] = field(default_factory=lambda: dict(DIFFICULTIES))
    edits: Mapping[str, str] = field(default_factory=lambda: dict(EDITS))
    length_factors: tuple[float, ...] = (0.8, 1.0, 1.2)  # times the positive's length in words
    never_flip: tuple[str, ...] = ("topic",)  # flipping the topic makes an easy, off-topic negative
    min_words: int = 30
    max_words: int = 250

    def __post_init__(self) -> None:
        for name in ("query_attributes", "domains", "difficulties", "edits", "length_factors"):
            if not getattr(self, name):
                raise ConfigError(f"AttributeSpace.{name} is empty: give at least one choice")
        if not 0 < self.min_words <= self.max_words:
            raise ConfigError(f"AttributeSpace: need 0 < min_words <= max_words (got {self.min_words}, {self.max_words})")


DEFAULT_SPACE = AttributeSpace()


def word_count(text: str) -> int:
    return len(text.split())


def target_length(positive_words: int, factor: float, space: AttributeSpace,
                  max_words: Optional[int] = None) -> int:
    """Words to ask for: the positive's length times ``factor``, rounded to 10, clamped to the space
    (and to ``max_words``, e.g. what fits in the completion's max_tokens)."""
    hi = min(space.max_words, max_words) if max_words else space.max_words
    lo = min(space.min_words, hi)
    return int(max(lo, min(hi, round(positive_words * factor / 10) * 10)))


def sample_setting(seed: int, record_id: str, index: int, positive_words: int,
                   present: Optional[Iterable[str]] = None, space: AttributeSpace = DEFAULT_SPACE,
                   max_words: Optional[int] = None) -> dict[str, Any]:
    """The controls for draft ``index`` of record ``record_id``.

    ``present`` are the query attributes the analysis found (the flip is drawn among them, in the
    space's order; all of them when none were found). The draws happen in a fixed order from a
    local RNG, so the result depends only on the arguments.
    """
    rng = random.Random(stable_seed(seed, record_id, index))
    domain = rng.choice(list(space.domains))
    difficulty = rng.choice(list(space.difficulties))
    edit = rng.choice(list(space.edits))
    factor = rng.choice(list(space.length_factors))
    found = set(present or ())
    flippable = [a for a in space.query_attributes if a not in space.never_flip] or list(space.query_attributes)
    candidates = [a for a in flippable if a in found] or flippable
    flip = rng.choice(candidates)
    return {"domain": domain, "difficulty": difficulty, "edit": edit, "flip": flip,
            "length_words": target_length(positive_words, factor, space, max_words)}


def describe_setting(setting: Mapping[str, Any], space: AttributeSpace = DEFAULT_SPACE) -> dict[str, str]:
    """The human descriptions of a setting's choices, for the prompt templates."""
    try:
        return {"domain": space.domains[setting["domain"]], "difficulty": space.difficulties[setting["difficulty"]],
                "edit": space.edits[setting["edit"]], "flip": space.query_attributes[setting["flip"]]}
    except KeyError as e:
        raise ConfigError(f"setting names {e.args[0]!r}, which is not in the attribute space") from None
