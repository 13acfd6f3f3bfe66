"""``negforge export``: records in a trainer's format."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import QuietOpt, handle_errors, setup_logging


def register(app: typer.Typer) -> None:
    @app.command("export")
    @handle_errors
    def export(
        input: Path = typer.Option(..., "--input", "-i", help="Mixed records JSONL."),
        fmt: str = typer.Option(..., "--format", "-f", help="sentence-transformers | sentence-transformers-triplet "
                                "| flag | tevatron | parquet"),
        output: Path = typer.Option(..., "--output", "-o", help="A folder for sentence-transformers, else a file."),
        num_negatives: Optional[int] = typer.Option(None, "--num-negatives",
                                                    help="sentence-transformers: negative columns (default: the most any record has)."),
        quiet: bool = QuietOpt,
    ) -> None:
        """Write records in a trainer's format (sentence-transformers, FlagEmbedding, Tevatron, Parquet)."""
        from negforge.trainer.export import export_records

        from ..io import read_records

        setup_logging(quiet)
        path = export_records(read_records(input), fmt, output, num_negatives=num_negatives)
        typer.echo(f"wrote {fmt} to {path}")
