"""``negforge fn-report``: false-negative rates per source before and after verification."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import (
    ConfigOpt,
    QuietOpt,
    SetOpt,
    VerboseOpt,
    VerifiersOpt,
    VerifyInputOpt,
    VerifySplitOpt,
    emit_report,
    example,
    handle_errors,
    load_inputs,
    setup_logging,
    stage_config,
    verifier_names,
)


def register(app: typer.Typer) -> None:
    @app.command(
        "fn-report", epilog=example("negforge fn-report -i mined.jsonl -d ../shared/data/scifact -o fn-report/")
    )
    @handle_errors
    def fn_report_cmd(
        input: Path = VerifyInputOpt,
        data: Path = typer.Option(
            ..., "--data", "-d", help="BEIR folder with the qrels that define certain false negatives."
        ),
        output: Path = typer.Option(..., "--output", "-o", help="Directory for fn_report.{json,md} and PNG plots."),
        split: str = VerifySplitOpt,
        verifiers: Optional[str] = VerifiersOpt,
        cross_encoder: Optional[str] = typer.Option(None, "--cross-encoder", help="CrossEncoder directory."),
        curves: bool = typer.Option(
            True,
            "--curves/--no-curves",
            help="Also the false-negative curves: one "
            "relevant doc of every query with >= 2 planted among its negatives, each model "
            "rule run on every negative; recall vs share dropped (fn_report_curves.png).",
        ),
        config: Optional[Path] = ConfigOpt,
        sets: Optional[list[str]] = SetOpt,
        quiet: bool = QuietOpt,
        verbose: bool = VerboseOpt,
    ) -> None:
        """Per source: false-negative rate before and after verification (model rules alone, and all rules),
        share kept, LLM-judge flags, a threshold sweep, score plots and false-negative curves."""
        from ..config import VerifyConfig
        from ..fn_report import fn_report

        setup_logging(quiet, verbose)
        cfg = stage_config(
            VerifyConfig, config, sets, "verify", verifiers=verifier_names(verifiers), cross_encoder=cross_encoder
        )
        records, dataset = load_inputs(input, split, data=data)
        _, report = fn_report(records, dataset, cfg, out_dir=output, show_progress=not quiet, curves=curves)
        emit_report(report)
        typer.echo(f"\nreport -> {output}/fn_report.json, fn_report.md; plots: {', '.join(report.plots)}")
