"""A template set's ``space.yaml``: which flow the set drives, its attribute space and the phrases its
draft checks look for. Validated on load; every error names the file and the key.

Example (the built-in ``mar`` set's file has every key with comments)::

    flow: mar
    query_attributes: {topic: the main subject, entities: named things ...}
    domains: {same: the same narrow subject as the relevant document}
    difficulties: {hard: shares the topic and most key terms ...}
    edits: {change: state a different value for it ..., withhold: ...}
    length_factors: [0.8, 1.0, 1.2]
    never_flip: [topic]
    draft_checks: {meta_phrases: ["the query", "hard negative"], copy_share: 0.5}
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .attributes import AttributeSpace
from .errors import ConfigError

SPACE_FILE = "space.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DraftChecks(_Strict):
    """Cheap text checks run on every draft before a model sees it."""

    # lower-case phrases that show a draft talks about the task instead of being a document
    meta_phrases: list[str] = Field(default_factory=list)
    # why such a draft is dropped (its verdict's reason)
    meta_reason: str = "the draft talks about the task instead of being a document of the corpus"
    # a draft sharing at least this share of its word 8-grams with a positive copies it
    copy_share: float = Field(0.5, gt=0, le=1)

    @field_validator("meta_phrases")
    @classmethod
    def _lower(cls, v: list[str]) -> list[str]:
        if any(not p.strip() for p in v):
            raise ValueError("a meta phrase is empty")
        return [" ".join(p.lower().split()) for p in v]


class SetSpace(_Strict):
    """Everything a set declares besides its templates."""

    flow: str = "mar"
    description: str = ""  # one line for people: what the set is for
    query_attributes: dict[str, str] = Field(default_factory=dict)  # name -> what to look for in the query
    domains: dict[str, str] = Field(default_factory=dict)
    difficulties: dict[str, str] = Field(default_factory=dict)
    edits: dict[str, str] = Field(default_factory=dict)
    length_factors: list[float] = Field(default_factory=lambda: [1.0])  # times the positive's length in words
    never_flip: list[str] = Field(default_factory=list)
    min_words: int = Field(30, ge=1)
    max_words: int = Field(250, ge=1)
    max_requirements: int = Field(5, ge=1, le=20)  # counterfactual: requirements listed per query
    draft_checks: DraftChecks = Field(default_factory=DraftChecks)

    @field_validator("query_attributes", "domains", "difficulties", "edits")
    @classmethod
    def _described(cls, v: dict[str, str]) -> dict[str, str]:
        for name, what in v.items():
            if not isinstance(what, str) or not what.strip():
                raise ValueError(f"{name!r} needs a description (a non-empty string)")
            if name == "key_fact":
                raise ValueError("'key_fact' is reserved (the analyse step always asks for it)")
        return v

    @field_validator("length_factors")
    @classmethod
    def _factors(cls, v: list[float]) -> list[float]:
        if not v or any(f <= 0 for f in v):
            raise ValueError("give at least one factor, each > 0")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SetSpace:
        if self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) > max_words ({self.max_words})")
        unknown = [a for a in self.never_flip if a not in self.query_attributes]
        if unknown:
            raise ValueError(f"never_flip names {unknown[0]!r}, which is not a query attribute")
        return self

    def attribute_space(self) -> AttributeSpace:
        return AttributeSpace(
            query_attributes=dict(self.query_attributes),
            domains=dict(self.domains),
            difficulties=dict(self.difficulties),
            edits=dict(self.edits),
            length_factors=tuple(self.length_factors),
            never_flip=tuple(self.never_flip),
            min_words=self.min_words,
            max_words=self.max_words,
        )


def load_space(path: Path, required: tuple[str, ...] = ()) -> SetSpace:
    """Read and validate ``path``; ``required`` are keys the set's flow needs non-empty.
    Raises ConfigError naming the file and the key (and the line for YAML syntax errors)."""
    if not path.is_file():
        raise ConfigError(f"{path}: missing; a template set folder needs a {SPACE_FILE} (copy a built-in set's)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys (flow, query_attributes, ...)")
    try:
        space = SetSpace.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown key; valid keys: {', '.join(SetSpace.model_fields)}"
        raise ConfigError(f"{path}: key {key!r}: {msg}") from None
    for key in required:
        if not getattr(space, key):
            raise ConfigError(f"{path}: key {key!r}: the {space.flow!r} flow needs at least one entry")
    return space
