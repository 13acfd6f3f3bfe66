"""One base for every stage's report: a pydantic model, dumped and printed one way.

Every stage returns ``(records, report)``; the report is a :class:`Report`. It dumps to a
JSON-ready dict with :meth:`Report.to_dict` (``model_dump``) and writes itself with
:meth:`Report.write_json`; :meth:`Report.table` is its human rendering (the CLI prints that, see
:func:`negforge.synth.commands.common.emit_report`). A subclass only declares its fields and,
where a plain ``key  value`` listing would not do, overrides :meth:`table`.

Seconds are stored exactly and dumped rounded (:data:`Seconds`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer

Seconds = Annotated[float, PlainSerializer(lambda v: round(v, 2), return_type=float)]
PathStr = Annotated[Path, PlainSerializer(str, return_type=str)]  # a path, written out as a string


class Report(BaseModel):
    """Base of every stage report (see the module doc)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain Python (JSON-ready: ``json.dumps`` takes it as it is)."""
        return self.model_dump(mode="python", by_alias=True)

    def write_json(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` atomically as indented JSON."""
        from .io import write_json

        write_json(path, self.to_dict())

    def table(self) -> str:
        """A human rendering; the default lists the top-level fields as ``name  value``."""
        data = self.to_dict()
        width = max((len(k) for k in data), default=0)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in data.items())

    def __str__(self) -> str:
        return self.table()
