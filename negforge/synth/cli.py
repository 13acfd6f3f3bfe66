"""``negforge`` console script: generate | verify | mine | mix | train | eval | run | prompt ..."""
from __future__ import annotations

import importlib

import typer

from .commands import MODULES

app = typer.Typer(name="negforge", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Hard negatives for dense retrievers: generate with an LLM, verify, mine, mix, train, evaluate.")

for _name in MODULES:
    try:
        _mod = importlib.import_module(f"negforge.synth.commands.{_name}")
    except ModuleNotFoundError as e:  # a command module not written yet must not break the others
        if e.name != f"negforge.synth.commands.{_name}":
            raise
        continue
    _mod.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
