"""The LLM judge: asks a model whether the passage answers the query (prompts/judge.jinja2).

The reply is a JSON object ``{"answer": "yes" | "partly" | "no", "reason": "..."}`` parsed like every
other LLM reply (:mod:`negforge.synth.parsing`, never eval); a reply that does not parse is re-asked
with the validation error, up to ``verify.judge_max_reasks`` times, all such rows in one call
(:func:`negforge.synth.asking.ask_all`). ``scores["llm_judge"]`` is 1.0 for yes, 0.5 for partly, 0.0 for no.

* "yes" drops the negative: it answers the query, so it is a false negative.
* "partly" drops it too by default (``verify.judge_partly_rejects``): a passage that answers part
  of the query is closer to a positive than to a negative, and a false negative in a contrastive
  loss costs more than one lost hard negative. Set it to false to keep "partly" negatives.
* "no" passes.
* A reply still unparseable after the re-asks, or a failed call, keeps the negative (the judge gave no evidence against
  it) with the reason "judge reply unparseable" / "judge call failed" and is counted; it never
  raises. Only a backend that cannot be used at all (connection, configuration) raises.

All pending negatives go to the backend in a few large ``generate`` calls (``CHUNK`` each), through
:func:`negforge.synth.backends.factory.open_backend` with its on-disk cache (``verify.judge_cache_dir``).
"""

from __future__ import annotations

import logging
import re
from typing import Any, ClassVar, Literal, Optional

from pydantic import BaseModel, ConfigDict, field_validator

from ..asking import Ask, ask_all
from ..backends.usage import Usage
from ..config import LLMConfig
from ..params import GenParams
from ..templates import render
from .base import Check, Pair, VerifyContext

log = logging.getLogger(__name__)

CHUNK = 64  # conversations per backend.generate call
MAX_PASSAGE_CHARS = 4000  # longer passages are cut before rendering (keeps prompts inside n_ctx)
ANSWER_SCORE = {"yes": 1.0, "partly": 0.5, "no": 0.0}
UNPARSEABLE = "judge reply unparseable"
FAILED = "judge call failed"
REASKED = "judge re-asked"
# The judge's default model: the bundled local LLM, answering deterministically and briefly.
DEFAULT_JUDGE = LLMConfig(params=GenParams(temperature=0.0, max_tokens=160, json_mode=True))


class JudgeReply(BaseModel):
    model_config = ConfigDict(extra="ignore")

    answer: Literal["yes", "partly", "no"]
    reason: str = ""
    FORMAT: ClassVar[str] = '{"answer": "yes | partly | no", "reason": "<one sentence>"}'

    @field_validator("answer", mode="before")
    @classmethod
    def _answer(cls, v: object) -> object:
        return re.sub(r"[^a-z]", "", v.lower()) if isinstance(v, str) else v

    @field_validator("reason", mode="before")
    @classmethod
    def _reason(cls, v: object) -> object:
        return "" if v is None else str(v)


def judge_conversation(query: str, passage: str, template: str = "judge") -> list[dict[str, str]]:
    return [{"role": "user", "content": render(template, query=query, passage=passage[:MAX_PASSAGE_CHARS])}]


def judge_checks(
    pairs: list[Pair],
    backend: Any,
    params: GenParams,
    template: str = "judge",
    partly_rejects: bool = True,
    show_progress: bool = False,
    name: str = "llm_judge",
    max_reasks: int = 1,
) -> list[Check]:
    """Judge every pair with ``backend`` (batched, same order) and turn the replies into checks."""
    from tqdm.auto import tqdm

    asks = [Ask(judge_conversation(r.query, n.full_text, template), JudgeReply, JudgeReply.FORMAT) for r, n in pairs]
    for start in tqdm(range(0, len(asks), CHUNK), desc="llm judge", unit="batch", disable=not show_progress):
        ask_all(backend, asks[start : start + CHUNK], params, max_reasks, "llm judge")
    out = []
    for a in asks:
        if a.failed_backend:
            out.append(
                Check(True, f"{FAILED}: {a.error.removeprefix('backend: ')}; kept without judgement", note=FAILED)
            )
            continue
        reply: JudgeReply | None = a.value
        if reply is None:
            out.append(Check(True, f"{UNPARSEABLE} ({a.error}); kept without judgement", note=UNPARSEABLE))
            continue
        scores = {name: ANSWER_SCORE[reply.answer]}
        why = f": {reply.reason.strip()}" if reply.reason.strip() else ""
        if reply.answer == "yes":
            out.append(Check(False, f"LLM judge says the passage answers the query (yes){why}", scores))
        elif reply.answer == "partly":
            verb = "dropped" if partly_rejects else "kept"
            out.append(
                Check(
                    not partly_rejects,
                    f"LLM judge says the passage partly answers the query ({verb} by judge_partly_rejects){why}",
                    scores,
                )
            )
        else:
            out.append(Check(True, f"LLM judge says it does not answer (no){why}", scores))
        if a.reasked:
            out[-1].note = out[-1].note or REASKED
    return out


class LLMJudgeVerifier:
    name = "llm_judge"

    def __init__(self, ctx: VerifyContext):
        self.cfg, self.show_progress = ctx.cfg, ctx.show_progress
        self.llm = ctx.cfg.judge or DEFAULT_JUDGE
        render(ctx.cfg.judge_template, query="q", passage="p")  # a bad template name fails before any call
        self.usage: Optional[Usage] = None

    def check(self, pairs: list[Pair]) -> list[Check]:
        if not pairs:
            return []
        from ..backends.factory import open_backend

        with open_backend(self.llm, cache_dir=self.cfg.judge_cache_dir) as backend:
            out = judge_checks(
                pairs,
                backend,
                self.llm.params,
                self.cfg.judge_template,
                self.cfg.judge_partly_rejects,
                self.show_progress,
                self.name,
                self.cfg.judge_max_reasks,
            )
            self.usage = backend.usage
        if self.usage is not None:
            from ..backends.usage import usage_line

            log.info("llm judge: %d pairs; %s", len(pairs), usage_line(self.usage))
        return out
