"""``negforge eval``: a model's retrieval metrics on a BEIR split."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..config import DEFAULT_DATA, EvalConfig
from .common import (
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


def _default_eval_path(model: str, split: str) -> Path:
    from negforge.trainer.evaluate import weights_fingerprint

    if weights_fingerprint(model):  # a local model folder: keep its metrics beside it
        return Path(model) / f"eval_{split}.json"
    slug = model.replace("bundled:", "bundled-").replace("/", "_").replace(":", "-")
    return Path("runs") / "eval" / f"{slug}_{split}.json"


def register(app: typer.Typer) -> None:
    @app.command(
        "eval",
        epilog=example(
            "negforge eval -m runs/default/model -d ../shared/data/scifact",
            "negforge eval -m bundled -d my-beir-folder --split dev -o base-dev.json",
        ),
    )
    @handle_errors
    def eval_(
        model: Optional[str] = typer.Option(
            None,
            "--model",
            "-m",
            help="Model folder, hub name, or 'bundled'."
            + config_default(EvalConfig, "encoder.model", "eval.encoder.model"),
        ),
        data: Path = typer.Option(Path(DEFAULT_DATA), "--data", "-d", help="BEIR folder."),
        split: Optional[str] = typer.Option(
            None, "--split", help="qrels split." + config_default(EvalConfig, "split", "eval.split")
        ),
        output: Optional[Path] = typer.Option(
            None,
            "--output",
            "-o",
            help="Metrics JSON. \\[default: <model>/eval_<split>.json for a model folder, else runs/eval/]",
        ),
        config: Optional[Path] = ConfigOpt,
        sets: Optional[list[str]] = SetOpt,
        quiet: bool = QuietOpt,
        verbose: bool = VerboseOpt,
    ) -> None:
        """nDCG@10, Recall@10, Recall@100 and MRR@10 of a model on a BEIR split."""
        from negforge.synth.data import load_beir
        from negforge.synth.io import write_json
        from negforge.trainer.evaluate import evaluate_model, metrics_table

        setup_logging(quiet, verbose)
        cfg = stage_config(EvalConfig, config, sets, "eval", **{"encoder.model": model}, split=split)
        beir = load_beir(data, cfg.split)
        name = cfg.encoder.model
        metrics = evaluate_model(name, beir, cfg, show_progress=not quiet)
        out = output or _default_eval_path(name, cfg.split)
        write_json(out, {"model": name, "data": str(data), "split": cfg.split, "metrics": metrics})
        typer.echo(metrics_table({name: metrics}))
        typer.echo(f"metrics: {out}")
