"""The attribute space of multi-attribute generation, declared as data, and its seeded sampler.

Two kinds of attributes:

* **query attributes**: what a query can be about (in the built-in ``mar`` set: topic, entities,
  intent, time, place, quantity, scope, answer type). The analyse step asks the LLM to fill them in
  for a (query, positive) pair; one of them is the one a negative *flips*.
* **controls** (:class:`AttributeSpace`): sampled per negative: the domain to stay in, the
  difficulty level, whether to change or withhold the flipped attribute, and the length in
  words, matched to the positive's length and kept within the corpus's usual lengths.

The space is data: a template set declares it in its ``space.yaml`` (:mod:`negforge.synth.space`);
:func:`default_space` is the built-in ``mar`` set's.

Sampling uses a local ``random.Random`` seeded from a SHA-256 of (seed, record id, draft index):
never the global RNG and never Python's salted ``hash()``, so the same job samples the same
settings in any process, on any machine, in any order. The setting chosen is stored on each
negative's provenance.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional

from .errors import ConfigError
from .seeding import stable_seed  # noqa: F401  (also imported from here)


@dataclass(frozen=True)
class AttributeSpace:
    """Everything that is sampled per negative (a set's ``space.yaml`` declares it)."""

    query_attributes: Mapping[str, str]
    domains: Mapping[str, str]
    difficulties: Mapping[str, str]
    edits: Mapping[str, str]
    length_factors: tuple[float, ...] = (0.8, 1.0, 1.2)  # times the positive's length in words
    never_flip: tuple[str, ...] = ("topic",)  # flipping the topic makes an easy, off-topic negative
    min_words: int = 30
    max_words: int = 250

    def __post_init__(self) -> None:
        for name in ("length_factors",):  # which other keys a flow needs, its set's space.yaml check says
            if not getattr(self, name):
                raise ConfigError(f"AttributeSpace.{name} is empty: give at least one choice")
        if not 0 < self.min_words <= self.max_words:
            raise ConfigError(
                f"AttributeSpace: need 0 < min_words <= max_words (got {self.min_words}, {self.max_words})"
            )


@lru_cache(maxsize=1)
def default_space() -> AttributeSpace:
    """The built-in ``mar`` set's attribute space."""
    from .templates import TemplateSet

    return TemplateSet("mar").space.attribute_space()


def word_count(text: str) -> int:
    return len(text.split())


def target_length(
    positive_words: int,
    factor: float,
    space: AttributeSpace,
    max_words: Optional[int] = None,
    corpus_range: Optional[tuple[int, int]] = None,
) -> int:
    """Words to ask for: the positive's length, first brought inside the corpus's usual range
    (``corpus_range``: e.g. its 10th and 90th percentile), times ``factor``, rounded to 10, clamped to
    the space (and to ``max_words``, e.g. what fits in the completion's max_tokens)."""
    base = positive_words
    if corpus_range:
        base = max(corpus_range[0], min(corpus_range[1], base))
    hi = min(space.max_words, max_words) if max_words else space.max_words
    lo = min(space.min_words, hi)
    return int(max(lo, min(hi, round(base * factor / 10) * 10)))


def sample_setting(
    seed: int,
    record_id: str,
    index: int,
    positive_words: int,
    present: Optional[Iterable[str]] = None,
    space: Optional[AttributeSpace] = None,
    max_words: Optional[int] = None,
    corpus_range: Optional[tuple[int, int]] = None,
) -> dict[str, Any]:
    """The controls for draft ``index`` of record ``record_id``.

    ``present`` are the query attributes the analysis found (the flip is drawn among them, in the
    space's order; all of them when none were found). The draws happen in a fixed order from a
    local RNG, so the result depends only on the arguments.
    """
    space = space or default_space()
    for name in ("query_attributes", "domains", "difficulties", "edits"):
        if not getattr(space, name):
            raise ConfigError(f"the attribute space has no {name}: give at least one choice")
    rng = random.Random(stable_seed(seed, record_id, index))
    domain = rng.choice(list(space.domains))
    difficulty = rng.choice(list(space.difficulties))
    edit = rng.choice(list(space.edits))
    factor = rng.choice(list(space.length_factors))
    found = set(present or ())
    flippable = [a for a in space.query_attributes if a not in space.never_flip] or list(space.query_attributes)
    candidates = [a for a in flippable if a in found] or flippable
    flip = rng.choice(candidates)
    return {
        "domain": domain,
        "difficulty": difficulty,
        "edit": edit,
        "flip": flip,
        "length_words": target_length(positive_words, factor, space, max_words, corpus_range),
    }


def describe_setting(setting: Mapping[str, Any], space: Optional[AttributeSpace] = None) -> dict[str, str]:
    """The human descriptions of a setting's choices, for the prompt templates."""
    space = space or default_space()
    try:
        return {
            "domain": space.domains[setting["domain"]],
            "difficulty": space.difficulties[setting["difficulty"]],
            "edit": space.edits[setting["edit"]],
            "flip": space.query_attributes[setting["flip"]],
        }
    except KeyError as e:
        raise ConfigError(f"setting names {e.args[0]!r}, which is not in the attribute space") from None
