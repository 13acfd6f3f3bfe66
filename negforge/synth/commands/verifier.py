"""``negforge verifier train``: fine-tune the cross-encoder verifier."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..verifiers.train import VerifierTrainConfig
from .common import (
    AliasGroup,
    ConfigOpt,
    QuietOpt,
    SetOpt,
    VerboseOpt,
    config_default,
    example,
    handle_errors,
    setup_logging,
    stage_config,
)


def register(app: typer.Typer) -> None:
    verifier_app = typer.Typer(cls=AliasGroup, no_args_is_help=True, help="Train the cross-encoder verifier.")
    app.add_typer(verifier_app, name="verifier")

    @verifier_app.command(
        "train", epilog=example("negforge verifier train -d ../shared/data/scifact -o ce-verifier/ --limit 200")
    )
    @handle_errors
    def train(
        data: Path = typer.Option(..., "--data", "-d", help="BEIR folder; trains on its qrels/<split>.tsv."),
        output: Path = typer.Option(..., "--output", "-o", help="Directory for the CrossEncoder."),
        limit: Optional[int] = typer.Option(None, "--limit", help="First N queries only. \\[default: all]"),
        epochs: Optional[int] = typer.Option(
            None, "--epochs", help="Training epochs." + config_default(VerifierTrainConfig, "epochs", "verifier.epochs")
        ),
        max_length: Optional[int] = typer.Option(
            None,
            "--max-length",
            help="Tokens per (query, passage) pair."
            + config_default(VerifierTrainConfig, "max_length", "verifier.max_length"),
        ),
        config: Optional[Path] = ConfigOpt,
        sets: Optional[list[str]] = SetOpt,
        quiet: bool = QuietOpt,
        verbose: bool = VerboseOpt,
    ) -> None:
        """Fine-tune a CrossEncoder (bundled MiniLM + a new head) on positives vs mined negatives; report
        accuracy and ROC-AUC on held-out queries."""
        from ..verifiers.train import train_verifier

        setup_logging(quiet, verbose)
        cfg = stage_config(
            VerifierTrainConfig, config, sets, "verifier", max_queries=limit, epochs=epochs, max_length=max_length
        )
        result = train_verifier(data, output, cfg, show_progress=not quiet)
        typer.echo(result.table())
        typer.echo(f"use it: negforge verify ... --verifiers qrels,cross_encoder --cross-encoder {output}")
