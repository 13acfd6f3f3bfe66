"""``negforge report``: loss curve, validation and cosine histograms of a trained model."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .common import ConfigOpt, QuietOpt, SetOpt, VerboseOpt, example, handle_errors, setup_logging, stage_config


def _load_metrics(files: list[Path], model_dir: Path) -> dict[str, dict]:
    from ..errors import InputError

    out = {}
    for f in files:
        try:
            obj = json.loads(f.read_text())
            name = "fine-tuned" if f.parent.resolve() == model_dir.resolve() else obj["model"]
            out[f"{name} ({obj['split']})"] = obj["metrics"]
        except (OSError, ValueError, KeyError) as e:
            raise InputError(f"{f}: not an eval JSON written by `negforge eval` ({e})") from None
    return out


def register(app: typer.Typer) -> None:
    @app.command("report", epilog=example(
        "negforge report -m runs/default/model -r runs/default/verified.jsonl -d ../shared/data/scifact"))
    @handle_errors
    def report(
        model: Path = typer.Option(..., "--model", "-m", help="A model folder written by `negforge train`."),
        records: Optional[Path] = typer.Option(None, "--records", "-r", help="Records JSONL for the cosine "
                                               "histograms per negative source (e.g. runs/default/verified.jsonl)."),
        data: Optional[Path] = typer.Option(None, "--data", "-d", help="BEIR folder: reuse its cached corpus embeddings."),
        base: Optional[str] = typer.Option(None, "--base", help="Encoder for 'before'. \\[default: the one "
                                           "training started from]"),
        metrics: Optional[list[Path]] = typer.Option(None, "--metrics", help="Eval JSON files to tabulate "
                                                     "\\[default: <model>/eval_*.json]"),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Report folder. \\[default: <model>/report]"),
        sample: int = typer.Option(200, "--sample", help="Records sampled for the histograms."),
        config: Optional[Path] = ConfigOpt,
        sets: Optional[list[str]] = SetOpt,
        quiet: bool = QuietOpt,
        verbose: bool = VerboseOpt,
    ) -> None:
        """Loss curve, validation per epoch, and query-document cosine histograms before/after training.
        Encoding follows the eval section (cache_dir, max_seq_length, batch_size), so the embeddings
        `negforge eval` cached are reused."""
        from negforge.synth.config import EvalConfig
        from negforge.synth.data import load_corpus
        from negforge.synth.io import read_records
        from negforge.trainer.report import ReportInputs, build_report
        from negforge.trainer.train import load_result

        setup_logging(quiet, verbose)
        ecfg = stage_config(EvalConfig, config, sets, "eval")
        res = load_result(model)
        files = metrics if metrics else sorted(model.glob("eval_*.json"))
        inp = ReportInputs(
            train_result=res, records=read_records(records) if records else [],
            base_encoder=base or res.get("encoder"), corpus=load_corpus(data / "corpus.jsonl") if data else None,
            metrics=_load_metrics(files, model), max_records=sample, cache_dir=ecfg.encoder.cache_dir,
            max_seq_length=ecfg.encoder.max_seq_length, batch_size=ecfg.encoder.batch_size)
        md = build_report(output or model / "report", inp, show_progress=not quiet)
        typer.echo(f"report: {md}")
