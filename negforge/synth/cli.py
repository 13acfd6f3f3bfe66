"""``negforge`` console script: generate | verify | mine | mix | train | eval | run | prompt ..."""

from __future__ import annotations

import importlib

import typer

from .commands import MODULES
from .commands.common import AliasGroup

app = typer.Typer(
    name="negforge",
    cls=AliasGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Hard negatives for dense retrievers: generate with an LLM, verify, mine, mix, train, evaluate.",
    epilog="Flags mean the same in every command that has them: -i/--input, -o/--output, -d/--data (a "
    "BEIR folder), -c/--config, -s/--set key=value, --limit N (first N), -q/--quiet, -v/--verbose. "
    "Start with: negforge run",
)


def _version(value: bool) -> None:
    if value:
        from negforge import __version__

        typer.echo(f"negforge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Hard negatives for dense retrievers: generate with an LLM, verify, mine, mix, train, evaluate."""


for _name in MODULES:
    try:
        _mod = importlib.import_module(f"negforge.synth.commands.{_name}")
    except ModuleNotFoundError as e:  # a command module not written yet must not break the others
        if e.name != f"negforge.synth.commands.{_name}":
            raise
        continue
    _mod.register(app)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C: temp files removed, locks released, summary written


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    app()


if __name__ == "__main__":
    main()
