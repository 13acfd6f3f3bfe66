"""``negforge shortcut``: can a simple classifier tell each source's negatives from real documents?"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import QuietOpt, VerboseOpt, emit_report, example, handle_errors, load_inputs, setup_logging


def register(app: typer.Typer) -> None:
    @app.command(
        "shortcut", epilog=example("negforge shortcut -i verified.jsonl -d ../shared/data/scifact -o shortcut.json")
    )
    @handle_errors
    def shortcut_cmd(
        input: Path = typer.Option(..., "--input", "-i", help="Records JSONL with negatives (e.g. verified)."),
        data: Path = typer.Option(..., "--data", "-d", help="BEIR folder: its corpus holds the real documents."),
        output: Optional[Path] = typer.Option(
            None, "--output", "-o", help="Write the report as JSON here. \\[default: printed only]"
        ),
        encoder: str = typer.Option(
            "bundled",
            "--encoder",
            help="Sentence-transformers model for the embedding "
            "features, or 'none' (length and punctuation features only).",
        ),
        max_per_source: int = typer.Option(300, "--max-per-source", help="Negatives per source (seeded sample)."),
        all_negatives: bool = typer.Option(False, "--all", help="Every negative, not only the kept ones."),
        seed: int = typer.Option(0, "--seed"),
        quiet: bool = QuietOpt,
        verbose: bool = VerboseOpt,
    ) -> None:
        """Per negative source: ROC-AUC (with a 95% interval) of a cross-validated logistic regression telling
        its negatives from as many real corpus documents. ~0.5: they read like the corpus; near 1: a retriever
        can learn to spot them by their style (a warning says so)."""
        from ..shortcut import shortcut_records

        setup_logging(quiet, verbose)
        records, dataset = load_inputs(input, "train", data=data)
        _, report = shortcut_records(
            records,
            dataset,
            None if encoder == "none" else encoder,
            only_kept=not all_negatives,
            max_per_source=max_per_source,
            seed=seed,
        )
        emit_report(report, output)
        for w in report.warnings:
            typer.secho(f"warning: {w}", fg=typer.colors.YELLOW, err=True)
