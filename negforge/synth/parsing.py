"""LLM replies -> validated pydantic objects, never ``eval``.

:func:`extract_json` finds the first JSON object in a reply (code fences and leading prose are
tolerated); a reply cut off at ``max_tokens`` gets its open string and braces closed once, and is
marked ``repaired``. The reply models are lenient about what a weak model gets wrong harmlessly
(key aliases, lists where a string was asked, ``"Keep"`` for ``"keep"``) and strict about what
matters (a passage of real length, a decision among the valid ones). A :class:`ParseError`
message is written to be appended to the conversation as the re-ask.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Annotated, Any, ClassVar, Literal, Optional

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from .errors import validation_message

MIN_WORDS = 8  # a passage shorter than this is not a passage
_EMPTY = {"", "none", "n/a", "na", "null", "unknown", "not mentioned", "not specified", "not stated", "-"}


class ParseError(ValueError):
    """A reply that cannot be used; the message says what to fix (it is sent back as the re-ask)."""


def _to_text(v: Any) -> str:
    """Strings stay; lists are joined; numbers become text; None and placeholders become ""."""
    if v is None:
        return ""
    if isinstance(v, (list, tuple)):
        v = ", ".join(t for t in (_to_text(x) for x in v) if t)
    elif isinstance(v, dict):
        v = ", ".join(f"{k}: {t}" for k, t in ((k, _to_text(x)) for k, x in v.items()) if t)
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        v = str(v)
    if not isinstance(v, str):
        raise ValueError(f"expected text, got {type(v).__name__}")
    v = " ".join(v.split())
    return "" if v.lower().strip(" .") in _EMPTY else v


Text = Annotated[str, BeforeValidator(_to_text)]


def _passage(v: str) -> str:
    n = len(v.split())
    if n < MIN_WORDS:
        raise ValueError(f"the passage has {n} words; write a full passage of at least {MIN_WORDS} words")
    return v


class _Reply(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class DraftReply(_Reply):
    """Generate step: one hard-negative passage, then one sentence on why it is hard.

    The passage comes first: asked for reasoning first, SmolLM2-135M wrote only the reasoning in 5
    of 6 replies (no passage); passage first under the schema below, 6 of 6 replies parsed."""

    passage: Text = Field(
        validation_alias=AliasChoices("passage", "text", "content", "negative", "hard_negative", "document")
    )
    reasoning: Text = ""
    FORMAT: ClassVar[str] = (
        '{"passage": "<the passage>", "reasoning": "<one sentence: why it is hard, yet does not answer the query>"}'
    )
    SCHEMA: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": ["passage", "reasoning"],
        "properties": {
            "passage": {"type": "string", "minLength": 40},
            "reasoning": {"type": "string", "maxLength": 300},
        },
    }

    @field_validator("passage")
    @classmethod
    def _long_enough(cls, v: str) -> str:
        return _passage(v)


_DECISIONS = {
    "keep": "keep",
    "accept": "keep",
    "ok": "keep",
    "good": "keep",
    "revise": "revise",
    "rewrite": "revise",
    "edit": "revise",
    "fix": "revise",
    "drop": "drop",
    "reject": "drop",
    "discard": "drop",
    "remove": "drop",
}


def _decision(v: Any) -> str:
    word = _to_text(v).lower().strip(" .!'\"")
    return _DECISIONS.get(word, word)


class ReflectionReply(_Reply):
    """Reflect step: keep the draft, revise it (with the new text), or drop it (with a reason)."""

    reasoning: Text = ""
    decision: Annotated[Literal["keep", "revise", "drop"], BeforeValidator(_decision)] = Field(
        validation_alias=AliasChoices("decision", "verdict", "action")
    )
    reason: Text = ""
    passage: Optional[Text] = Field(
        None, validation_alias=AliasChoices("passage", "revised_passage", "revision", "revised", "text")
    )

    @model_validator(mode="after")
    def _revision_given(self) -> ReflectionReply:
        if self.decision == "revise":
            if not self.passage:
                raise ValueError("decision 'revise' needs the revised text in 'passage'")
            _passage(self.passage)
        return self

    FORMAT: ClassVar[str] = (
        '{"reasoning": "<step by step: does it answer the query? is it on topic? does it copy the relevant '
        'passage?>", "decision": "keep | revise | drop", "reason": "<one sentence>", '
        '"passage": "<the revised passage, only when revise>"}'
    )
    SCHEMA: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": ["reasoning", "decision", "reason"],
        "properties": {
            "reasoning": {"type": "string", "maxLength": 400},
            "decision": {"type": "string", "enum": ["keep", "revise", "drop"]},
            "reason": {"type": "string", "maxLength": 200},
            "passage": {"type": "string"},
        },
    }


def _text_list(v: Any) -> list[str]:
    """A list of short texts from a list, a numbered / bulleted string, or a list of objects."""
    if isinstance(v, str):
        v = [re.sub(r"^\s*(?:[-*]|\d+[.)])\s*", "", x) for x in re.split(r"\n|;", v)]
    if not isinstance(v, (list, tuple)):
        v = [v]
    out = []
    for x in v:
        t = _to_text(x)
        if t and t not in out:
            out.append(t)
    return out


class RequirementsReply(_Reply):
    """Counterfactual flow, step 1: the query's information requirements that the positive meets."""

    requirements: Annotated[list[str], BeforeValidator(_text_list)] = Field(
        validation_alias=AliasChoices("requirements", "information_requirements", "requirement", "items")
    )
    FORMAT: ClassVar[str] = '{"requirements": ["<requirement 1>", "<requirement 2>", "..."]}'
    SCHEMA: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": ["requirements"],
        "properties": {
            "requirements": {
                "type": "array",
                "minItems": 1,
                "maxItems": 8,
                "items": {"type": "string", "maxLength": 120},
            }
        },
    }

    @field_validator("requirements")
    @classmethod
    def _some(cls, v: list[str]) -> list[str]:
        v = [x for x in v if not (x.startswith("<") and x.endswith(">")) and x != "..."]  # the format echoed back
        if not v:
            raise ValueError("list at least one requirement of the query, in your own words")
        return v


class RewriteReply(DraftReply):
    """Counterfactual flow, step 2: the rewritten positive, then what was changed."""

    FORMAT: ClassVar[str] = '{"passage": "<the rewritten document>", "reasoning": "<one sentence: what you changed>"}'


_YES = {"yes": True, "y": True, "true": True, "1": True, "no": False, "n": False, "false": False, "0": False}


def _yes_no(v: Any) -> Optional[bool]:
    if isinstance(v, bool) or v is None:
        return v
    word = _to_text(v).lower().strip(" .!'\"").split(" ")[0] if _to_text(v) else ""
    if word not in _YES:
        raise ValueError("answer yes or no")
    return _YES[word]


class CounterfactualCheck(ReflectionReply):
    """Counterfactual flow, step 3: is the chosen requirement broken, is everything else unchanged?"""

    broken: Annotated[Optional[bool], BeforeValidator(_yes_no)] = None
    unchanged: Annotated[Optional[bool], BeforeValidator(_yes_no)] = None
    FORMAT: ClassVar[str] = (
        '{"broken": "yes | no", "unchanged": "yes | no", "decision": "keep | revise | drop", '
        '"reason": "<one sentence>", "passage": "<the revised document, only when revise>"}'
    )
    SCHEMA: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": ["broken", "unchanged", "decision", "reason"],
        "properties": {
            "broken": {"type": "string", "enum": ["yes", "no"]},
            "unchanged": {"type": "string", "enum": ["yes", "no"]},
            "decision": {"type": "string", "enum": ["keep", "revise", "drop"]},
            "reason": {"type": "string", "maxLength": 200},
            "passage": {"type": "string"},
        },
    }


class DescriptionReply(_Reply):
    """Corpus profile: one noun phrase saying what the corpus's documents are."""

    description: Text = Field(validation_alias=AliasChoices("description", "collection", "summary", "answer"))
    FORMAT: ClassVar[str] = '{"description": "<kind of documents> about <subject>"}'
    SCHEMA: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": ["description"],
        "properties": {"description": {"type": "string", "maxLength": 120}},
    }

    @field_validator("description")
    @classmethod
    def _given(cls, v: str) -> str:
        if not v:
            raise ValueError("give the description")
        if "<" in v and ">" in v:
            raise ValueError("write the description itself, not the placeholder")
        return v


@lru_cache(maxsize=8)
def analysis_model(names: tuple[str, ...]) -> type[_Reply]:
    """Analyse step: one text field per query attribute, plus the fact that answers the query."""
    fields: dict[str, Any] = {n: (Text, "") for n in names}
    fields["key_fact"] = (Text, "")

    def _something(self: Any) -> Any:
        if not any(getattr(self, n) for n in names):
            raise ValueError(f"no attribute filled in; use the keys {', '.join(names)}")
        return self

    return create_model(
        "AnalysisReply",
        __base__=_Reply,
        __validators__={"_something": model_validator(mode="after")(_something)},  # type: ignore[dict-item]
        **fields,
    )


def analysis_schema(names: Sequence[str]) -> dict[str, Any]:
    """Every attribute a short string ("" when absent), then the key fact."""
    props: dict[str, Any] = {n: {"type": "string", "maxLength": 80} for n in names}
    props["key_fact"] = {"type": "string", "maxLength": 240}
    return {"type": "object", "required": list(props), "properties": props}


def reply_schema(model: type[BaseModel], names: Sequence[str] = ()) -> dict[str, Any]:
    """The JSON schema sent with a step's requests (``GenParams.json_schema``)."""
    schema = getattr(model, "SCHEMA", None)
    return schema if schema is not None else analysis_schema(names)


def analysis_format(names: Sequence[str]) -> str:
    keys = ", ".join(f'"{n}": "..."' for n in names)
    return "{" + keys + ', "key_fact": "<what in the passage answers the query>"}'


def extract_json(text: str) -> dict[str, Any]:
    """The first JSON object in ``text`` (after code fences or prose); ParseError when there is none."""
    dec = json.JSONDecoder()
    for m in re.finditer(r"\{", text):
        try:
            obj, _ = dec.raw_decode(text, m.start())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    raise ParseError("the reply has no JSON object; reply with only the JSON object, no other text")


_CLOSERS = ('"}', "}", '"]}', '"}}', "]}")


def _close_truncated(text: str) -> Optional[dict[str, Any]]:
    start = text.find("{")
    if start < 0:
        return None
    body = text[start:].rstrip()
    if body.endswith("\\"):
        body = body[:-1]
    for closer in _CLOSERS:
        try:
            obj = json.loads(body + closer)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    return None


def _trim_to_sentence(obj: dict[str, Any]) -> dict[str, Any]:
    """A passage cut mid-sentence by max_tokens ends at its last full sentence instead."""
    for key, v in obj.items():
        if isinstance(v, str) and len(v.split()) >= MIN_WORDS:
            cut = max(v.rfind(". "), v.rfind("? "), v.rfind("! "), v.rfind("."))
            if cut > 0 and len(v[: cut + 1].split()) >= MIN_WORDS:
                obj[key] = v[: cut + 1]
    return obj


def parse_reply(text: str, model: type[BaseModel], finish_reason: Optional[str] = None) -> tuple[Any, bool]:
    """``(validated object, repaired)``. ``repaired`` is True when a reply cut off at max_tokens was
    closed and its last partial sentence dropped. Raises ParseError with a re-ask message."""
    repaired = False
    try:
        obj = extract_json(text)
    except ParseError:
        closed = _close_truncated(text) if finish_reason == "length" else None
        if closed is None:
            hint = " (it was cut off at max_tokens: write less)" if finish_reason == "length" else ""
            raise ParseError(f"the reply has no complete JSON object{hint}; reply with only the JSON object") from None
        obj, repaired = _trim_to_sentence(closed), True
    try:
        return model.model_validate(obj), repaired
    except ValidationError as e:
        raise ParseError(validation_message(e)) from None


def reask_message(error: str, fmt: str) -> str:
    """The user turn appended after a reply that failed to parse."""
    return f"That reply could not be used: {error}.\nReply again with only this JSON object:\n{fmt}"
