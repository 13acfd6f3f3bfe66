"""``negforge verify``: check every negative against the qrels and the model rules."""

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
    VerifyDataOpt,
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
        "verify",
        epilog=example(
            "negforge verify -i mined.jsonl -d ../shared/data/scifact -o verified.jsonl",
            "negforge verify -i mined.jsonl -d my-beir-folder -o verified.jsonl --verifiers qrels,cross_encoder --cross-encoder ce/",
        ),
    )
    @handle_errors
    def verify(
        input: Path = VerifyInputOpt,
        output: Path = typer.Option(..., "--output", "-o", help="Verified records JSONL (report: OUTPUT.report.json)."),
        data: Optional[Path] = VerifyDataOpt,
        split: str = VerifySplitOpt,
        verifiers: Optional[str] = VerifiersOpt,
        cross_encoder: Optional[str] = typer.Option(None, "--cross-encoder", help="CrossEncoder directory."),
        config: Optional[Path] = ConfigOpt,
        sets: Optional[list[str]] = SetOpt,
        quiet: bool = QuietOpt,
        verbose: bool = VerboseOpt,
    ) -> None:
        """Check every negative (all sources) against the qrels and positive-aware model rules."""
        from ..config import VerifyConfig
        from ..io import write_records
        from ..verifiers import verify_records

        setup_logging(quiet, verbose)
        cfg = stage_config(
            VerifyConfig, config, sets, "verify", verifiers=verifier_names(verifiers), cross_encoder=cross_encoder
        )
        records, dataset = load_inputs(input, split, data=data)
        if not any(r.negatives for r in records):
            typer.secho(
                f"warning: {input} has no negatives to verify (mine or generate some first)",
                err=True,
                fg=typer.colors.YELLOW,
            )
        from ..outputs import OutputLock

        with OutputLock(output):  # a second job on this output fails at once instead of doing the work twice
            out, report = verify_records(records, dataset, cfg, show_progress=not quiet)
            write_records(output, out)
        report_path = Path(f"{output}.report.json")
        emit_report(report, report_path)
        typer.echo(f"\n{len(out)} records -> {output}\nreport -> {report_path}")
