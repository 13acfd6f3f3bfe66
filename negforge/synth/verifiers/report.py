"""What the verifier did, per source and per rule: checked, kept, dropped and why.

``counts[source][rule]`` holds ``checked`` (the rule looked at it), ``dropped`` (the rule rejected
it), ``skipped`` (an earlier rule had already rejected it, so this rule did not look) and any
special outcome the rule noted (e.g. ``judge reply unparseable``). ``totals[source]`` holds
``negatives`` (all on the records), ``checked`` (verified in this pass), ``kept``, ``dropped`` and
``already`` (had a verdict before and ``reverify`` was off: left as they were), ``likely_fn`` (dropped
as probably relevant: not off-topic, not a copy) and ``relabelled`` (of those, moved into the positives
by ``fn_action=relabel``). ``dropped_queries`` lists the records ``fn_action=drop_query`` removed.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Optional

from pydantic import Field, model_serializer

from ..reports import Report

MAX_EXAMPLES = 3
TOTALS = ("negatives", "checked", "kept", "dropped", "already", "likely_fn", "relabelled")


class VerifyReport(Report):
    rules: list[str]
    counts: dict[str, dict[str, Counter[str]]] = Field(default_factory=dict)  # source -> rule -> outcome -> n
    totals: dict[str, Counter[str]] = Field(default_factory=dict)  # source -> TOTALS key -> n
    examples: dict[str, list[str]] = Field(default_factory=dict)  # rule -> up to MAX_EXAMPLES reasons
    usage: Optional[dict[str, Any]] = None  # LLM judge usage, when it ran
    wall_s: float = 0.0
    fn_action: str = "drop"
    dropped_queries: list[str] = Field(default_factory=list)

    def count(self, source: str, rule: str, key: str, n: int = 1) -> None:
        self.counts.setdefault(source, {}).setdefault(rule, Counter())[key] += n

    def total(self, source: str) -> Counter[str]:
        """The totals counter of ``source`` (created empty on first use)."""
        return self.totals.setdefault(source, Counter())

    def example(self, rule: str, reason: str) -> None:
        seen = self.examples.setdefault(rule, [])
        if len(seen) < MAX_EXAMPLES:
            seen.append(reason)

    @property
    def checked(self) -> int:
        return sum(t["checked"] for t in self.totals.values())

    @property
    def kept(self) -> int:
        return sum(t["kept"] for t in self.totals.values())

    @property
    def dropped(self) -> int:
        return sum(t["dropped"] for t in self.totals.values())

    @property
    def relabelled(self) -> int:
        return sum(t["relabelled"] for t in self.totals.values())

    @model_serializer(mode="plain")
    def _dump(self) -> dict[str, Any]:
        """The JSON layout: every total per source, outcomes per source and rule (``by_rule``)."""
        sources = sorted(self.totals)
        return {
            "rules": list(self.rules),
            "checked": self.checked,
            "kept": self.kept,
            "dropped": self.dropped,
            "totals": {s: {k: int(self.totals[s][k]) for k in TOTALS} for s in sources},
            "fn_action": self.fn_action,
            "relabelled": self.relabelled,
            "dropped_queries": list(self.dropped_queries),
            "by_rule": {
                s: {r: dict(self.counts.get(s, {})[r]) for r in self.rules if r in self.counts.get(s, {})}
                for s in sources
            },
            "examples": {r: list(v) for r, v in self.examples.items()},
            "usage": self.usage,
            "wall_s": round(self.wall_s, 2),
        }

    def table(self) -> str:
        lines = [
            f"verify ({' -> '.join(self.rules)}): {self.checked} negatives checked, {self.kept} kept, "
            f"{self.dropped} dropped in {self.wall_s:.1f} s"
        ]
        likely = sum(t["likely_fn"] for t in self.totals.values())
        if self.fn_action == "relabel":
            lines.append(
                f"fn_action relabel: {self.relabelled} of the dropped were likely false negatives, "
                "moved into the positives"
            )
        elif self.fn_action == "drop_query":
            lines.append(
                f"fn_action drop_query: {likely} likely false negatives; {len(self.dropped_queries)} "
                "queries with too many of them removed"
            )
        lines.append(
            f"{'source':<10}{'negatives':>10}{'checked':>9}{'kept':>7}{'dropped':>9}{'kept %':>8}{'already':>9}"
        )
        for s in sorted(self.totals):
            t = self.totals[s]
            share = f"{100 * t['kept'] / t['checked']:.1f}" if t["checked"] else "-"
            lines.append(
                f"{s:<10}{t['negatives']:>10}{t['checked']:>9}{t['kept']:>7}{t['dropped']:>9}"
                f"{share:>8}{t['already']:>9}"
            )
        lines.append(f"{'rule':<15}{'source':<10}{'checked':>9}{'dropped':>9}{'skipped':>9}  notes")
        for r in self.rules:
            for s in sorted(self.totals):
                c = self.counts.get(s, {}).get(r)
                if not c:
                    continue
                notes = ", ".join(
                    f"{k}: {v}" for k, v in sorted(c.items()) if k not in ("checked", "dropped", "skipped")
                )
                lines.append(f"{r:<15}{s:<10}{c['checked']:>9}{c['dropped']:>9}{c['skipped']:>9}  {notes}".rstrip())
        for r in self.rules:
            for reason in self.examples.get(r, []):
                lines.append(f"  dropped by {r}: {reason}")
        return "\n".join(lines)
