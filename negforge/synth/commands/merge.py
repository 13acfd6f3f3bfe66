"""``negforge merge``: join the shard outputs of ``negforge generate``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import QuietOpt, VerboseOpt, example, handle_errors, load_inputs, setup_logging


def register(app: typer.Typer) -> None:
    @app.command("merge", epilog=example("negforge merge -o generated.jsonl part0.jsonl part1.jsonl part2.jsonl"))
    @handle_errors
    def merge(
        shards: list[Path] = typer.Argument(..., help="Shard outputs of `negforge generate --shard i`."),
        output: Optional[Path] = typer.Option(
            None, "--output", "-o", help="Merged records JSONL (written atomically)."
        ),
        order: Optional[Path] = typer.Option(
            None,
            "--order",
            help="Put records in this input's order (records "
            "JSONL, FlagEmbedding JSONL or BEIR folder). \\[default: shard file order]",
        ),
        split: str = typer.Option("train", "--split", help="qrels split when --order is a BEIR folder."),
        quiet: bool = QuietOpt,
        verbose: bool = VerboseOpt,
    ) -> None:
        """Join shard outputs into one file; the same id with different content in two shards is an error."""
        from ..errors import ConfigError
        from ..job import merge_outputs

        setup_logging(quiet, verbose)
        if output is None:  # the old form, `negforge merge OUT SHARD...`, while OUT is still to be written
            if len(shards) < 2 or shards[0].exists():
                raise ConfigError("give the merged file with -o/--output (negforge merge -o OUT SHARD...)")
            output, shards = shards[0], shards[1:]
        out = output

        ids = [r.id for r in load_inputs(order, split)[0]] if order is not None else None
        n = merge_outputs(out, shards, order=ids)
        typer.echo(f"merged {n} records from {len(shards)} files -> {out}")
