"""Shared CLI plumbing: config + overrides, input loading, logging, error reporting.

Every command module exposes ``register(app: typer.Typer)``; commands parse their config,
build parts, run, and print. Heavy imports stay inside the command functions.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, TypeVar

import typer
from pydantic import BaseModel
from typer.core import TyperGroup

from ..config import load_config
from ..errors import NegforgeError

C = TypeVar("C", bound=BaseModel)

ConfigOpt = typer.Option(
    None,
    "--config",
    "-c",
    help="YAML config: a stage's fields, or a whole run config (the command reads its own section).",
    exists=False,
)
SetOpt = typer.Option(
    None, "--set", "-s", help="Override a config value, e.g. --set mix.k=8 (repeatable; the value is parsed as YAML)."
)
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars (ours or the libraries'); warnings only.")
VerboseOpt = typer.Option(False, "--verbose", "-v", help="Debug logging.")


def _config_field(cls: type, field: str) -> Any:
    *path, name = field.split(".")  # a dotted field reaches into sub-sections (encoder.model)
    for part in path:
        cls = cls.model_fields[part].annotation  # type: ignore[attr-defined]
    return cls.model_fields[name]  # type: ignore[attr-defined]


def config_help(cls: type, field: str, key: str) -> str:
    """A flag's help from the config field it sets: its ``description`` and its default (one source for
    ``--help`` and docs/config.md)."""
    return (_config_field(cls, field).description or "") + config_default(cls, field, key)


def config_default(cls: type, field: str, key: str) -> str:
    """`` [default: V (config KEY)]`` for a flag whose None means: the config's value. Escaped for rich."""
    value = _config_field(cls, field).get_default(call_default_factory=True)
    shown = (
        ",".join(map(str, value))
        if isinstance(value, (list, tuple))
        else "none"
        if value is None
        else ("on" if value else "off")
        if isinstance(value, bool)
        else value
    )
    return f" \\[default: {shown} (config {key})]"


def example(*lines: str) -> str:
    """An ``epilog`` with the command's examples (shown under --help)."""
    return "Example:\n\n" + "\n\n".join(f"  {line}" for line in lines)


# Old flag spellings, still accepted but not shown in --help. Keys: "*" (every command), a command
# name, or "group command" ("verifier train").
FLAG_ALIASES: dict[str, dict[str, str]] = {
    "*": {"--out": "--output"},
    "verifier train": {"--max-queries": "--limit"},
    "report": {"--limit": "--sample"},
}


def _rewrite(args: list[str], table: dict[str, str]) -> list[str]:
    out: list[str] = []
    for i, tok in enumerate(args):
        if tok == "--":
            return out + args[i:]
        if not isinstance(tok, str):  # CliRunner passes values through as given
            out.append(tok)
            continue
        name, eq, value = tok.partition("=")
        out.append(table[name] + eq + value if name in table and (eq or name == tok) else tok)
    return out


class AliasGroup(TyperGroup):
    """A command group that maps the old flag spellings in FLAG_ALIASES to today's before parsing."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        sub = next((i for i, a in enumerate(args) if not str(a).startswith("-")), None)
        if sub is not None:
            name = args[sub] if ctx.parent is None else f"{ctx.info_name} {args[sub]}"
            table = {**(FLAG_ALIASES["*"] if ctx.parent is None else {}), **FLAG_ALIASES.get(name, {})}
            args = args[: sub + 1] + _rewrite(args[sub + 1 :], table)
        return super().parse_args(ctx, args)


def setup_logging(quiet: bool = False, verbose: bool = False) -> None:
    """INFO by default, warnings only with ``quiet`` (no library progress bars either), DEBUG with ``verbose``."""
    from ..logs import configure

    configure(quiet=quiet, verbose=verbose)


def stage_config(cls: type[C], config: Optional[Path], sets: Optional[list[str]], section: str, **flags: Any) -> C:
    """A stage config from YAML (its ``section`` if the file is a run config), ``--set`` and flags."""
    # --set values may be written with or without the section prefix.
    prefix = section + "."
    sets = [s[len(prefix) :] if s.startswith(prefix) else s for s in (sets or [])]
    return load_config(cls, config, sets, section=section, **flags)


def load_inputs(
    path: Path,
    split: str = "train",
    limit: Optional[int] = None,
    data: Optional[Path] = None,
    columns: Optional[str] = None,
    dropped: Optional[dict[str, int]] = None,
    allow_empty: bool = False,
):
    """``(records, dataset)`` from any input :func:`negforge.synth.inputs.read_input` reads (records,
    BEIR, FlagEmbedding, Tevatron, a datasets folder or Hub name, Parquet, CSV/TSV, JSONL columns).

    The dataset holds the corpus, queries and qrels where the input has them (a BEIR folder, a
    Tevatron corpus), else it is empty; with ``data`` (a BEIR folder) they come from there instead.
    ``columns`` is a ``--columns`` value (``query=COL,positive=COL``). What the reader left out is counted
    into ``dropped``; no records at all is an InputError unless ``allow_empty``.
    """
    from ..data import load_beir
    from ..inputs import parse_columns, read_input

    loaded = read_input(
        path, columns=parse_columns(columns), split=split, limit=limit, dropped=dropped, allow_empty=allow_empty
    )
    dataset = load_beir(data, split) if data is not None else loaded.dataset
    return loaded.records, dataset


ColumnsOpt = typer.Option(
    None,
    "--columns",
    help="Input columns for tables and datasets, e.g. "
    "query=question,positive=answer. \\[default: query/anchor, positive/pos, negative/neg...]",
)


def emit_report(report: Any, json_path: Optional[Path] = None) -> None:
    """The one way a command shows a stage report: its table on stdout, and with ``json_path`` the
    report as JSON there (:meth:`negforge.synth.reports.Report.write_json`)."""
    if json_path is not None:
        report.write_json(json_path)
    typer.echo(report.table())


# verify and fn-report: records plus the corpus and qrels of --data
VerifyInputOpt = typer.Option(
    ...,
    "--input",
    "-i",
    help="Records JSONL, or any input `negforge mine` reads "
    "(FlagEmbedding/Tevatron JSONL, a BEIR or datasets folder, Parquet, CSV/TSV).",
)
VerifyDataOpt = typer.Option(
    None, "--data", "-d", help="BEIR folder whose corpus and qrels the verifiers use (e.g. ../shared/data/scifact)."
)
VerifySplitOpt = typer.Option("train", "--split", help="qrels split of --data (or of a BEIR --input).")
VerifiersOpt = typer.Option(
    None,
    "--verifiers",
    help="Comma-separated, in order: qrels, embedding, "
    "cross_encoder, llm_judge. \\[default: qrels,embedding (config verify.verifiers)]",
)


def verifier_names(value: Optional[str]) -> Optional[list[str]]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def handle_errors(fn: Callable) -> Callable:
    """Print a user error in one line (exit 2) instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NegforgeError as e:
            line = " ".join(str(e).split())  # one line, whatever the message carried
            typer.secho(f"error: {line}", fg=typer.colors.RED, err=True)
            sys.exit(getattr(e, "exit_code", 2))

    return wrapper
