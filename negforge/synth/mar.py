"""The ``mar`` flow: multi-attribute self-reflection (analyse -> generate -> reflect) over a batch.

:class:`MarFlow` holds the three steps, their prompts (the template set's), the reply parsing and re-asks,
the draft checks and the record it finishes; :mod:`negforge.synth.generate` runs a flow as the stage.
Other flows subclass it (:mod:`negforge.synth.counterfactual`); :mod:`negforge.synth.flows` registers them.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

from .asking import Ask as _Ask
from .asking import ask_all
from .attributes import describe_setting, sample_setting, word_count
from .backends.base import Backend
from .config import GenerateConfig
from .draft_checks import copies_positive, talks_about_the_task
from .gen_report import FailedRecord, GenerateReport
from .params import GenParams
from .parsing import DraftReply, ReflectionReply, analysis_format, analysis_model, reply_schema
from .profile import CorpusProfile, empty_profile
from .schema import Negative, Provenance, Record, Source, Status, Verdict, normalise_text
from .templates import TemplateSet

log = logging.getLogger(__name__)

PLACEHOLDER_DRAFT = "<the draft the generate step wrote>"


def _stored_draft(record: Record, index: int) -> tuple[str, Optional[dict[str, Any]]]:
    """The text and attributes of the record's LLM negative with draft ``index`` ("", None when none)."""
    for n in record.negatives_from(Source.llm):
        if n.provenance.extra.get("index") == index:
            return n.text, dict(n.provenance.attributes)
    return "", None


@dataclass
class _Draft:
    rec: int
    index: int
    setting: dict[str, Any]
    text: str = ""
    reasoning: str = ""
    status: str = "pending"  # pending -> kept | dropped (on the record, rejected verdict) | rejected (left out)
    rule: str = ""  # why dropped: "reflection" or "meta_text"
    kind: str = ""  # why rejected (the summary's reason key)
    reason: str = ""
    rounds: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def _clip(text: str, words: int) -> str:
    parts = text.split()
    return text if len(parts) <= words else " ".join(parts[:words]) + " ..."


class MarFlow:
    """The three MAR steps over one batch of records; counts go into ``summary``."""

    STEPS: tuple[str, ...] = ("analyse", "generate", "reflect")
    REQUIRED_SPACE: tuple[str, ...] = (
        "query_attributes",
        "domains",
        "difficulties",
        "edits",
    )  # space.yaml keys this flow reads
    DRAFT_REPLY, REFLECT_REPLY = DraftReply, ReflectionReply  # reply models of the 2nd and 3rd step
    META_KEY = "llm_analysis"  # where the first step's result goes on the record

    def __init__(
        self,
        backend: Backend,
        cfg: GenerateConfig,
        summary: GenerateReport,
        templates: Optional[TemplateSet] = None,
        profile: Optional[CorpusProfile] = None,
    ):
        self.backend, self.cfg, self.summary = backend, cfg, summary
        self.failed: dict[int, FailedRecord] = {}  # record index in the batch -> why (first failure)
        self.templates = templates or TemplateSet(cfg.template, cfg.template_dir)
        self.space = self.templates.space.attribute_space()
        self.checks = self.templates.space.draft_checks
        self.profile = profile
        self.profile_vars = profile.for_templates() if profile is not None else empty_profile()
        self.corpus_range = profile.length_range() if profile is not None and cfg.profile.match_length else None
        self.params = cfg.llm.params
        self.names = tuple(self.space.query_attributes)
        self.analysis_model = analysis_model(self.names)
        # ~1.4 tokens a word, ~60 tokens for the reasoning and the JSON around the passage
        self.max_words = max(1, int((self.params.max_tokens - 60) / 1.4))

    # -- one step over many rows ---------------------------------------------------------------
    def ask(self, step: str, asks: list[_Ask]) -> None:
        """Send every row; re-ask the rows whose reply failed to parse, all together, up to max_reasks."""
        if not asks:
            return
        sent = ask_all(self.backend, asks, self._params(asks[0].model), self.cfg.max_reasks, step)
        if sent:
            self.summary.reasks[step] += sent

    def _params(self, model: Any) -> GenParams:
        """The job's params with this step's reply schema (only when JSON mode is on)."""
        if not self.params.json_mode:
            return self.params
        return self.params.model_copy(update={"json_schema": reply_schema(model, self.names)})

    def _positive(self, r: Record) -> str:
        return _clip(r.positives[0].full_text, self.cfg.max_prompt_words)

    def _user(self, step: str, **variables: Any) -> list[dict[str, str]]:
        """One user message: the set's shared prefix (the same for every step of this record) then the step's part."""
        content = self.templates.render_prompt(step, profile=self.profile_vars, **variables)
        return [{"role": "user", "content": content}]

    # -- the exact messages of each step (also what `negforge prompt render` shows) ---------------
    def analyse_messages(self, r: Record) -> list[dict[str, str]]:
        return self._user(
            "analyse",
            query=r.query,
            positive=self._positive(r),
            attributes=dict(self.space.query_attributes),
            output_format=analysis_format(self.names),
        )

    def setting(self, r: Record, index: int, analysis: dict[str, str]) -> dict[str, Any]:
        """The seeded controls of draft ``index``; the flip is drawn among the attributes the analysis found."""
        found = [n for n in self.names if analysis.get(n)]
        return sample_setting(
            self.cfg.seed,
            r.id,
            index,
            word_count(r.positives[0].text),
            found,
            self.space,
            self.max_words,
            self.corpus_range,
        )

    def generate_messages(self, r: Record, analysis: dict[str, str], setting: dict[str, Any]) -> list[dict[str, str]]:
        return self._user(
            "generate",
            query=r.query,
            positive=self._positive(r),
            analysis={n: analysis[n] for n in self.names if analysis.get(n)},
            key_fact=analysis.get("key_fact", ""),
            setting=setting,
            hints=describe_setting(setting, self.space),
            output_format=DraftReply.FORMAT,
        )

    def reflect_messages(self, r: Record, draft: str, setting: dict[str, Any], rnd: int) -> list[dict[str, str]]:
        return self._user(
            "reflect",
            query=r.query,
            positive=self._positive(r),
            draft=draft,
            setting=setting,
            hints=describe_setting(setting, self.space),
            round=rnd,
            output_format=ReflectionReply.FORMAT,
        )

    # -- the steps -----------------------------------------------------------------------------
    def analyse(self, records: list[Record]) -> list[dict[str, str]]:
        """The first step over the batch (MAR: the attributes; a flow's own reply model and reading)."""
        model, fmt = self.first_reply()
        asks = [_Ask(self.analyse_messages(r), model, fmt) for r in records]
        self.ask(self.STEPS[0], asks)
        out: list[Any] = []
        for ri, (r, a) in enumerate(zip(records, asks)):
            if a.failed_backend:
                self.fail(ri, r, self.STEPS[0], a.error)  # held back as failed (counterfactual: requirements)
                out.append({})
            elif a.value is None:
                self.summary.analysis_failed += 1
                out.append({})
            else:
                out.append(self.read_analysis(a.value))
        return out

    def first_reply(self) -> tuple[Any, str]:
        """The first step's reply model and the JSON format shown for it."""
        return self.analysis_model, analysis_format(self.names)

    def read_analysis(self, value: Any) -> dict[str, Any]:
        return self._clean_analysis(value.model_dump())

    def _clean_analysis(self, values: dict[str, str]) -> dict[str, str]:
        """Drop filler a weak model writes instead of an attribute: an attribute's name or description copied
        back (SmolLM2-135M answered "The main subject" for most fields), or one value pasted into 3+ fields."""
        filler = {normalise_text(x) for x in [*self.space.query_attributes, *self.space.query_attributes.values()]}
        counts = Counter(normalise_text(v) for k, v in values.items() if k != "key_fact" and v)
        out = {
            k: v
            for k, v in values.items()
            if v and normalise_text(v) not in filler and (k == "key_fact" or counts[normalise_text(v)] < 3)
        }
        self.summary.analysis_filler += sum(1 for v in values.values() if v) - len(out)
        return out

    def write(self, records: list[Record], analyses: list[dict[str, str]]) -> list[_Draft]:
        drafts, asks = [], []
        for ri, (r, an) in enumerate(zip(records, analyses)):
            if ri in self.failed:
                continue
            for i in range(self.cfg.num_negatives):
                setting = self.setting(r, i, an)
                drafts.append(_Draft(ri, i, setting))
                asks.append(_Ask(self.generate_messages(r, an, setting), self.DRAFT_REPLY, self.DRAFT_REPLY.FORMAT))
        self.ask(self.STEPS[1], asks)
        for d, a in zip(drafts, asks):
            self.summary.repaired += a.repaired
            if a.failed_backend:
                self.fail(d.rec, records[d.rec], self.STEPS[1], a.error)
            if a.value is None:
                self._reject(d, "backend_error" if a.failed_backend else "parse_error", a.error)
            else:
                d.text, d.reasoning = a.value.passage, a.value.reasoning
                self._check(d, records[d.rec], drafts)
        return drafts

    def reflect(self, records: list[Record], drafts: list[_Draft], rnd: int) -> None:
        open_ = [d for d in drafts if d.status == "pending" and d.rec not in self.failed]
        asks = [
            _Ask(
                self.reflect_messages(records[d.rec], d.text, d.setting, rnd),
                self.REFLECT_REPLY,
                self.REFLECT_REPLY.FORMAT,
            )
            for d in open_
        ]
        self.ask(self.STEPS[2], asks)
        last = rnd == self.cfg.reflection_rounds
        for d, a in zip(open_, asks):
            self.summary.repaired += a.repaired
            if a.failed_backend:
                self.fail(d.rec, records[d.rec], self.STEPS[2], a.error)
            if a.value is None:
                self._reject(d, "reflect_backend_error" if a.failed_backend else "reflect_parse_error", a.error)
                continue
            v: ReflectionReply = a.value
            decision, reason = self.judge(v)
            d.rounds = rnd
            d.history.append({"round": rnd, "decision": decision, "reason": reason})
            if decision == "keep":
                d.status = "kept"
            elif decision == "drop":
                d.status, d.rule = "dropped", "reflection"
                d.reason = reason or "the reflection step dropped it (no reason given)"
            else:
                self.summary.revisions += 1
                d.text = v.passage or d.text
                self._check(d, records[d.rec], drafts)
                if last and d.status == "pending":
                    d.status = "kept"  # revised in the last round: the verifier has the final word

    def judge(self, v: Any) -> tuple[str, str]:
        """The reflection reply's decision and reason (a flow may overrule the model here)."""
        return v.decision, v.reason

    def _reject(self, d: _Draft, reason: str, detail: str) -> None:
        d.status, d.kind, d.reason = "rejected", reason, f"{reason}: {detail}" if detail else reason

    def fail(self, ri: int, record: Record, step: str, error: str) -> None:
        """Record ``ri`` of the batch failed at the backend in ``step``: it is held back, not finished."""
        if ri not in self.failed:
            self.failed[ri] = FailedRecord(id=record.id, step=step, error=error)

    def _check(self, d: _Draft, record: Record, drafts: list[_Draft]) -> None:
        if talks_about_the_task(d.text, self.checks.meta_phrases):  # kept, rejected: visible in reports, never mixed
            d.status, d.rule, d.reason = "dropped", "meta_text", self.checks.meta_reason
        elif copies_positive(d.text, record, self.checks.copy_share):
            self._reject(d, "copies_positive", "")
        elif any(
            o is not d
            and o.rec == d.rec
            and o.status != "rejected"
            and o.text
            and normalise_text(o.text) == normalise_text(d.text)
            for o in drafts
        ):
            self._reject(d, "duplicate", "")

    # -- a batch -------------------------------------------------------------------------------
    def run_batch(self, records: list[Record]) -> tuple[list[Record], list[FailedRecord]]:
        """The done records (input order) and the failed ones of one batch; only done records are counted
        in drafts / status / reasons."""
        self.failed = {}
        analyses = self.analyse(records)
        drafts = self.write(records, analyses)
        for rnd in range(1, self.cfg.reflection_rounds + 1):
            if not any(d.status == "pending" and d.rec not in self.failed for d in drafts):
                break
            self.reflect(records, drafts, rnd)
        done = []
        for ri, (r, an) in enumerate(zip(records, analyses)):
            if ri in self.failed:
                continue
            mine = [d for d in drafts if d.rec == ri]
            for d in mine:
                if d.status == "pending":  # reflection_rounds = 0
                    d.status = "kept"
                self.summary.status[d.status] += 1
                if d.status == "dropped":
                    self.summary.reasons["reflection_drop" if d.rule == "reflection" else d.rule] += 1
                elif d.status == "rejected":
                    self.summary.reasons[d.kind] += 1
            self.summary.drafts += len(mine)
            done.append(self._finish(r, an, mine))
        self.summary.records_done += len(done)
        failed = [self.failed[ri] for ri in sorted(self.failed)]
        for f in failed:
            self.summary.add_failure(f)
        return done, failed

    def stored_analysis(self, analysis: dict[str, Any]) -> Any:
        return analysis

    def attributes(self, setting: dict[str, Any], analysis: dict[str, Any]) -> dict[str, Any]:
        """What goes into a negative's provenance attributes: the setting, and the flipped attribute's value."""
        return {**setting, "flip_value": analysis.get(setting["flip"], "")}

    def _provenance_extra(self) -> dict[str, Any]:
        return {"flow": self.templates.flow, "profile": self.profile.key if self.profile is not None else None}

    # -- what `negforge prompt render` shows: a step's messages for a record, with what was filled in ------
    def preview(self, record: Record, step: str, index: int = 0) -> tuple[list[dict[str, str]], dict[str, Any]]:
        """The messages of ``step`` for ``record`` (draft ``index``). The generate and reflect steps use the
        record's own analysis and draft when it has them (a generated record), else visible placeholders."""
        if step == "analyse":
            return self.analyse_messages(record), {}
        real = record.meta.get("llm_analysis")
        analysis = real or {
            **{n: f"<{n} from the analyse step>" for n in self.names},
            "key_fact": "<key_fact from the analyse step>",
        }
        setting = self.setting(record, index, real or {})
        info: dict[str, Any] = {"setting": setting, "analysis": "from the record" if real else "placeholder"}
        if step == "generate":
            return self.generate_messages(record, analysis, setting), info
        draft, stored = _stored_draft(record, index)
        if stored is not None:
            setting = info["setting"] = {k: v for k, v in stored.items() if k != "flip_value"}
        info["draft"] = "from the record" if draft else "placeholder"
        return self.reflect_messages(record, draft or PLACEHOLDER_DRAFT, setting, 1), info

    def _finish(self, record: Record, analysis: dict[str, str], drafts: list[_Draft]) -> Record:
        out = record.model_copy(deep=True)
        out.meta[self.META_KEY] = self.stored_analysis(analysis)
        for d in drafts:
            if d.status not in ("kept", "dropped"):
                continue
            prov = Provenance(
                model=self.backend.model,
                template=self.templates.name,
                template_hash=self.templates.hash,
                attributes=self.attributes(d.setting, analysis),
                seed=self.cfg.seed,
                rounds=d.rounds,
                extra={"index": d.index, "reasoning": d.reasoning, "reflection": d.history, **self._provenance_extra()},
            )
            verdict = Verdict(status=Status.rejected, rule=d.rule, reason=d.reason) if d.status == "dropped" else None
            out.negatives.append(Negative(text=d.text, source=Source.llm, provenance=prov, verdict=verdict))
        return out
