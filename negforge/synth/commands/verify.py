"""``negforge verify``, ``negforge verifier train`` and ``negforge fn-report``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import ConfigOpt, QuietOpt, SetOpt, handle_errors, load_inputs, setup_logging, stage_config

InputOpt = typer.Option(..., "--input", "-i", help="Records JSONL, FlagEmbedding JSONL, or a BEIR folder.")
DataOpt = typer.Option(None, "--data", help="BEIR folder whose corpus and qrels the verifiers use "
                       "(e.g. ../shared/data/scifact).")
SplitOpt = typer.Option("train", "--split", help="qrels split of --data (or of a BEIR --input).")
VerifiersOpt = typer.Option(None, "--verifiers", help="Comma-separated, in order: qrels, embedding, "
                            "cross_encoder, llm_judge (default from the config: qrels,embedding).")


def _inputs(input: Path, data: Optional[Path], split: str):
    records, corpus, qrels = load_inputs(input, split)
    if data is not None:
        from ..data import load_beir

        beir = load_beir(data, split)
        corpus, qrels = beir.corpus, beir.qrels
    return records, corpus, qrels


def _verifiers(value: Optional[str]) -> Optional[list[str]]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def register(app: typer.Typer) -> None:
    @app.command("verify")
    @handle_errors
    def verify(
        input: Path = InputOpt,
        output: Path = typer.Option(..., "--output", "-o", help="Verified records JSONL (report: OUTPUT.report.json)."),
        data: Optional[Path] = DataOpt,
        split: str = SplitOpt,
        verifiers: Optional[str] = VerifiersOpt,
        cross_encoder: Optional[str] = typer.Option(None, "--cross-encoder", help="CrossEncoder directory."),
        config: Optional[Path] = ConfigOpt,
        sets: Optional[list[str]] = SetOpt,
        quiet: bool = QuietOpt,
    ) -> None:
        """Check every negative (all sources) against the qrels and positive-aware model rules."""
        from ..config import VerifyConfig
        from ..io import write_json, write_records
        from ..verifiers import verify_records

        setup_logging(quiet)
        cfg = stage_config(VerifyConfig, config, sets, "verify", verifiers=_verifiers(verifiers),
                           cross_encoder=cross_encoder)
        records, corpus, qrels = _inputs(input, data, split)
        if not any(r.negatives for r in records):
            typer.secho(f"warning: {input} has no negatives to verify (mine or generate some first)", err=True,
                        fg=typer.colors.YELLOW)
        out, report = verify_records(records, cfg, qrels, corpus, show_progress=not quiet)
        write_records(output, out)
        report_path = Path(f"{output}.report.json")
        write_json(report_path, report.to_dict())
        typer.echo(report.table())
        typer.echo(f"\n{len(out)} records -> {output}\nreport -> {report_path}")

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

    @app.command("fn-report")
    @handle_errors
    def fn_report_cmd(
        input: Path = InputOpt,
        data: Path = typer.Option(..., "--data", help="BEIR folder with the qrels that define certain false negatives."),
        output: Path = typer.Option(..., "--output", "-o", help="Directory for fn_report.{json,md} and PNG plots."),
        split: str = SplitOpt,
        verifiers: Optional[str] = VerifiersOpt,
        cross_encoder: Optional[str] = typer.Option(None, "--cross-encoder", help="CrossEncoder directory."),
        config: Optional[Path] = ConfigOpt,
        sets: Optional[list[str]] = SetOpt,
        quiet: bool = QuietOpt,
    ) -> None:
        """Per source: false-negative rate before and after verification (model rules alone, and all rules),
        share kept, LLM-judge flags, a threshold sweep and score plots."""
        from ..config import VerifyConfig
        from ..fn_report import fn_report, markdown

        setup_logging(quiet)
        cfg = stage_config(VerifyConfig, config, sets, "verify", verifiers=_verifiers(verifiers),
                           cross_encoder=cross_encoder)
        records, corpus, qrels = _inputs(input, data, split)
        report = fn_report(records, qrels, cfg, corpus, output, show_progress=not quiet)
        typer.echo(markdown(report))
        typer.echo(f"\nreport -> {output}/fn_report.json, fn_report.md; plots: {', '.join(report.get('plots', []))}")
