"""Write docs/config.md, the config reference, from the config models' fields and descriptions.

    python3 scripts/write_config_reference.py        # rewrites docs/config.md
tests/test_config.py fails when the file and the models drift apart (and when a field has no description).
"""

from __future__ import annotations

import json
import sys
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from negforge.synth.config import RunConfig
from negforge.synth.paths import cache_root

HEADER = """\
# Config reference

Generated from the config models in `negforge/synth/config.py` by `python3 scripts/write_config_reference.py`
(`make docs`); do not edit by hand. `configs/default.yaml` holds the same defaults as YAML.

A run config (`negforge run CONFIG`) holds every section below; a stage command (`negforge mine -c FILE`)
reads its own section of one, or a file with that section's fields at the top level. Any value can be
overridden with `--set section.key=value` (the value is parsed as YAML). `encoder` is written once at the
top level and shared by `mine`, `verify` and `eval`; a section's own `encoder` keys override it.
Cache folders default to `$NEGFORGE_CACHE_DIR`, else `~/.cache/negforge`.
"""


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The config model a field holds (directly or as Optional[...]), else None."""
    for t in (annotation, *typing.get_args(annotation)):
        if isinstance(t, type) and issubclass(t, BaseModel) and t.__module__.startswith("negforge.synth.config"):
            return t
    return None


def _type(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if not typing.get_args(annotation) else None
    text = text or str(annotation).replace("typing.", "")
    for prefix in ("negforge.synth.config.", "negforge.synth.params."):
        text = text.replace(prefix, "")
    return text.replace("NoneType", "None").replace("|", "\\|")


def _default(field: Any) -> str:
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(section)"
    if hasattr(value, "value"):
        value = value.value
    if isinstance(value, str) and value.startswith(str(cache_root())):
        value = "<cache>" + value[len(str(cache_root())) :]
    shown = value if isinstance(value, str) else json.dumps(value)  # as YAML / JSON writes it
    return f"`{shown}`".replace("|", "\\|")


def sections(model: type[BaseModel], prefix: str = "") -> list[tuple[str, type[BaseModel]]]:
    """(dotted name, model) for ``model`` and every config section below it, depth first."""
    out = [(prefix, model)]
    for name, field in model.model_fields.items():
        sub = _submodel(field.annotation)
        if sub is not None:
            out += sections(sub, f"{prefix}.{name}" if prefix else name)
    return out


def undocumented() -> list[str]:
    """Dotted names of fields without a description."""
    return [
        f"{p}.{n}".lstrip(".")
        for p, m in sections(RunConfig)
        for n, f in m.model_fields.items()
        if not (f.description or "").strip()
    ]


def render() -> str:
    lines = [HEADER]
    first: dict[type[BaseModel], str] = {}
    for path, model in sections(RunConfig):
        if model in first:  # mine.encoder, verify.judge, ...: the keys of a section documented above
            lines += [f"## `{path}`", "", f"The keys of [`{first[model]}`](#{first[model].replace('.', '')}).", ""]
            continue
        first[model] = path
        title = f"`{path}`" if path else "Top level (`negforge run`)"
        doc = " ".join((model.__doc__ or "").split())
        lines += [f"## {title}", "", doc, "", "| key | type | default | description |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            desc = " ".join((field.description or "").split()).replace("|", "\\|")
            lines.append(f"| `{name}` | {_type(field.annotation)} | {_default(field)} | {desc} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs" / "config.md"
    out.write_text(render())
    print(f"wrote {out}")
