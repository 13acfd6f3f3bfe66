"""``negforge export``: records in a trainer's format."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import ColumnsOpt, QuietOpt, VerboseOpt, example, handle_errors, load_inputs, setup_logging


def register(app: typer.Typer) -> None:
    @app.command(
        "export",
        epilog=example(
            "negforge export -i mixed.jsonl -f flag -o train.jsonl",
            "negforge export -i mixed.jsonl -f sentence-transformers -o st-dataset/",
        ),
    )
    @handle_errors
    def export(
        input: Path = typer.Option(
            ...,
            "--input",
            "-i",
            help="Verified (or mixed) records JSONL; any other input "
            "negforge reads (e.g. FlagEmbedding JSONL) converts with --unverified.",
        ),
        fmt: str = typer.Option(
            ...,
            "--format",
            "-f",
            help="sentence-transformers (st) | sentence-transformers-triplet "
            "| sentence-transformers-labeled-pair | sentence-transformers-labeled-list | "
            "flagembedding (flag, bge) | tevatron | tevatron-legacy | parquet",
        ),
        output: Path = typer.Option(
            ...,
            "--output",
            "-o",
            help="A folder for sentence-transformers and tevatron (train.jsonl + corpus.jsonl), else a file.",
        ),
        num_negatives: Optional[int] = typer.Option(
            None,
            "--num-negatives",
            help="sentence-transformers n-tuple: negative columns. \\[default: the most any record has]",
        ),
        unverified: bool = typer.Option(
            False,
            "--unverified",
            help="Also export negatives no verifier has seen "
            "(without it that is an error; rejected negatives are never exported).",
        ),
        scores: str = typer.Option(
            "auto",
            "--scores",
            help="Score written where the format has a place for one: "
            "auto (cross_encoder, else embedding, when every negative has it), a verifier "
            "name, or none.",
        ),
        columns: Optional[str] = ColumnsOpt,
        quiet: bool = QuietOpt,
        verbose: bool = VerboseOpt,
    ) -> None:
        """Write records in a trainer's format: kept negatives only; records left without one are skipped."""
        from negforge.trainer.export import export_records

        setup_logging(quiet, verbose)
        records, _ = load_inputs(input, columns=columns)
        report = export_records(
            records, fmt, output, num_negatives=num_negatives, allow_unverified=unverified, scores=scores
        )
        typer.echo(report.summary())
