"""Counterfactual negatives: break one information requirement of the positive at a time.

After CausalNeg (arXiv 2606.01304), which reports that naively added LLM negatives often hurt: instead
of writing a new document, the flow rewrites the positive so that exactly one of the query's
information requirements is no longer met while everything else (named things, style, length) stays.

1. **requirements**: the LLM lists the query's information requirements that the positive meets (at
   most ``max_requirements`` of the set's ``space.yaml``);
2. **rewrite**: for each of ``num_negatives`` drafts, one requirement (taken in a seeded order, so the
   drafts of a record break different ones) and one edit (``space.yaml`` ``edits``: contradict it,
   remove it ...) are drawn; the LLM rewrites the positive at the positive's length (kept within the
   corpus's usual range);
3. **reflect**: the LLM checks that the requirement is really broken (``broken``) and that nothing
   else changed (``unchanged``); a "keep" with either answered "no" is a drop.

It is :class:`~negforge.synth.mar.MarFlow` with other steps: the same batching, re-asks, parsing,
cheap draft checks (here only a near-verbatim copy counts as a copy: ``copy_share`` 0.95), verdicts,
provenance, cache and resume. A record whose requirements never parse goes on with one fallback
requirement (what in the document answers the query) and is counted in ``analysis_failed``.
"""

from __future__ import annotations

import random
from typing import Any

from .attributes import stable_seed, target_length, word_count
from .mar import PLACEHOLDER_DRAFT, MarFlow, _stored_draft
from .parsing import CounterfactualCheck, RequirementsReply, RewriteReply
from .schema import Record

FALLBACK_REQUIREMENT = "what in the document answers the query"


class CounterfactualFlow(MarFlow):
    STEPS = ("requirements", "rewrite", "reflect")
    REQUIRED_SPACE = ("edits",)
    DRAFT_REPLY, REFLECT_REPLY = RewriteReply, CounterfactualCheck
    META_KEY = "llm_requirements"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.names = ()
        self.max_requirements = self.templates.space.max_requirements

    # -- messages ------------------------------------------------------------------------------
    def analyse_messages(self, r: Record) -> list[dict[str, str]]:
        return self._user(
            "requirements",
            query=r.query,
            positive=self._positive(r),
            max_requirements=self.max_requirements,
            output_format=RequirementsReply.FORMAT,
        )

    def setting(self, r: Record, index: int, analysis: dict[str, Any]) -> dict[str, Any]:
        """Draft ``index`` breaks requirement ``order[index % n]`` of a seeded order; edit and length are seeded."""
        reqs = analysis.get("requirements") or [FALLBACK_REQUIREMENT]
        order = list(range(len(reqs)))
        random.Random(stable_seed(self.cfg.seed, r.id, "requirements")).shuffle(order)
        i = order[index % len(order)]
        rng = random.Random(stable_seed(self.cfg.seed, r.id, index))
        edit = rng.choice(list(self.space.edits))
        factor = rng.choice(list(self.space.length_factors))
        words = target_length(word_count(r.positives[0].text), factor, self.space, self.max_words, self.corpus_range)
        return {"requirement": reqs[i], "requirement_index": i, "edit": edit, "length_words": words}

    def _hints(self, setting: dict[str, Any]) -> dict[str, str]:
        return {"edit": self.space.edits[setting["edit"]]}

    def generate_messages(self, r: Record, analysis: dict[str, Any], setting: dict[str, Any]) -> list[dict[str, str]]:
        return self._user(
            "rewrite",
            query=r.query,
            positive=self._positive(r),
            requirements=analysis.get("requirements") or [FALLBACK_REQUIREMENT],
            setting=setting,
            hints=self._hints(setting),
            output_format=RewriteReply.FORMAT,
        )

    def reflect_messages(self, r: Record, draft: str, setting: dict[str, Any], rnd: int) -> list[dict[str, str]]:
        return self._user(
            "reflect",
            query=r.query,
            positive=self._positive(r),
            draft=draft,
            setting=setting,
            hints=self._hints(setting),
            round=rnd,
            output_format=CounterfactualCheck.FORMAT,
        )

    # -- steps ---------------------------------------------------------------------------------
    def first_reply(self) -> tuple[Any, str]:
        return RequirementsReply, RequirementsReply.FORMAT

    def read_analysis(self, value: RequirementsReply) -> dict[str, Any]:
        return {"requirements": value.requirements[: self.max_requirements]}

    def judge(self, v: CounterfactualCheck) -> tuple[str, str]:
        if v.decision == "keep" and v.broken is False:
            return "drop", "the check says the requirement is still met: " + (v.reason or "no reason given")
        if v.decision == "keep" and v.unchanged is False:
            return "drop", "the check says more than the requirement changed: " + (v.reason or "no reason given")
        return v.decision, v.reason

    def stored_analysis(self, analysis: dict[str, Any]) -> list[str]:
        return list(analysis.get("requirements") or [])

    def attributes(self, setting: dict[str, Any], analysis: dict[str, Any]) -> dict[str, Any]:
        return dict(setting)

    def preview(self, record: Record, step: str, index: int = 0) -> tuple[list[dict[str, str]], dict[str, Any]]:
        if step == "requirements":
            return self.analyse_messages(record), {}
        real = record.meta.get(self.META_KEY)
        analysis = {"requirements": real or [f"<requirement {i} from the requirements step>" for i in (1, 2)]}
        setting = self.setting(record, index, analysis)
        info: dict[str, Any] = {"setting": setting, "requirements": "from the record" if real else "placeholder"}
        if step == "rewrite":
            return self.generate_messages(record, analysis, setting), info
        draft, stored = _stored_draft(record, index)
        if stored is not None:
            setting = info["setting"] = stored
        info["draft"] = "from the record" if draft else "placeholder"
        return self.reflect_messages(record, draft or PLACEHOLDER_DRAFT, setting, 1), info
