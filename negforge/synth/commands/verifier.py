"""``negforge verifier train``: fine-tune the cross-encoder verifier."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import ConfigOpt, QuietOpt, SetOpt, handle_errors, setup_logging, stage_config


def register(app: typer.Typer) -> None:
    verifier_app = typer.Typer(no_args_is_help=True, help="Train the cross-encoder verifier.")
    app.add_typer(verifier_app, name="verifier")

    @verifier_app.command("train")
    @handle_errors
    def train(
        data: Path = typer.Option(..., "--data", help="BEIR folder; trains on its qrels/<split>.tsv."),
        output: Path = typer.Option(..., "--output", "-o", help="Directory for the CrossEncoder."),
        max_queries: Optional[int] = typer.Option(None, "--max-queries", help="Use only the first N queries."),
        epochs: Optional[int] = typer.Option(None, "--epochs"),
        max_length: Optional[int] = typer.Option(None, "--max-length", help="Tokens per (query, passage) pair."),
        config: Optional[Path] = ConfigOpt,
        sets: Optional[list[str]] = SetOpt,
        quiet: bool = QuietOpt,
    ) -> None:
        """Fine-tune a CrossEncoder (bundled MiniLM + a new head) on positives vs mined negatives; report
        accuracy and ROC-AUC on held-out queries."""
        from ..verifiers.train import VerifierTrainConfig, train_verifier

        setup_logging(quiet)
        cfg = stage_config(VerifierTrainConfig, config, sets, "verifier", max_queries=max_queries, epochs=epochs,
                           max_length=max_length)
        result = train_verifier(data, output, cfg, show_progress=not quiet)
        typer.echo(result.table())
        typer.echo(f"use it: negforge verify ... --verifiers qrels,cross_encoder --cross-encoder {output}")
