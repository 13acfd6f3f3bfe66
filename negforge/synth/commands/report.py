"""``negforge report``: loss per logged step, validation, metrics, the verifier's summary and cosine
histograms per negative source, for a `negforge run` folder or any trained model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from .common import ConfigOpt, QuietOpt, SetOpt, VerboseOpt, example, handle_errors, setup_logging, stage_config


def register(app: typer.Typer) -> None:
    @app.command(
        "report",
        epilog=example(
            "negforge report runs/default",
            "negforge report -m runs/default/model -r runs/default/verified.jsonl -d ../shared/data/scifact "
            "--metrics runs/default/metrics.json",
        ),
    )
    @handle_errors
    def report(
        run: Optional[Path] = typer.Argument(
            None,
            metavar="[RUN]",
            help="A `negforge run` output folder: its model, verified records, metrics.json and verifier summary.",
        ),
        model: Optional[Path] = typer.Option(
            None, "--model", "-m", help="A model folder written by `negforge train`. \\[default: RUN/model]"
        ),
        records: Optional[Path] = typer.Option(
            None,
            "--records",
            "-r",
            help="Records JSONL for the cosine histograms per negative source. \\[default: RUN/verified.jsonl]",
        ),
        data: Optional[Path] = typer.Option(
            None,
            "--data",
            "-d",
            help="BEIR folder: reuse its cached corpus embeddings (documents with a corpus id are not encoded again).",
        ),
        base: Optional[str] = typer.Option(
            None, "--base", help="Encoder for 'before'. \\[default: the one training started from]"
        ),
        metrics: Optional[list[Path]] = typer.Option(
            None,
            "--metrics",
            help="`negforge eval` JSON or `negforge "
            "run` metrics.json files to tabulate (repeatable). "
            "\\[default: RUN/metrics.json, else <model>/eval_*.json]",
        ),
        output: Optional[Path] = typer.Option(
            None, "--output", "-o", help="Report folder. \\[default: RUN/report, else <model>/report]"
        ),
        sample: int = typer.Option(
            200, "--sample", help="Records sampled for the histograms (every negative source is in the sample)."
        ),
        config: Optional[Path] = ConfigOpt,
        sets: Optional[list[str]] = SetOpt,
        quiet: bool = QuietOpt,
        verbose: bool = VerboseOpt,
    ) -> None:
        """Loss per logged step, validation per epoch, metrics before/after, the verifier's summary and
        query-document cosine histograms per negative source before/after training. Encoding follows the
        eval section (cache_dir, max_seq_length, batch_size), so the embeddings `negforge eval` cached are reused."""
        from negforge.synth.config import EvalConfig, RunConfig, load_config
        from negforge.synth.data import load_corpus
        from negforge.synth.errors import ConfigError
        from negforge.synth.io import read_records
        from negforge.trainer.report import ReportInputs, build_report, load_metrics, run_inputs
        from negforge.trainer.train import load_result

        setup_logging(quiet, verbose)
        if run is None and model is None:
            raise ConfigError("give a `negforge run` folder (negforge report runs/default) or a model with -m/--model")
        if config is None and run is not None and (run / "config.json").is_file():  # the run's own eval settings
            run_sets = [s if s.startswith("eval.") else f"eval.{s}" for s in sets or []]
            ecfg = load_config(RunConfig, run / "config.json", run_sets).eval
        else:
            ecfg = stage_config(EvalConfig, config, sets, "eval")
        recs = read_records(records) if records else None
        corpus = load_corpus(data / "corpus.jsonl") if data else None
        common: dict[str, Any] = dict(
            corpus=corpus,
            max_records=sample,
            cache_dir=ecfg.encoder.cache_dir,
            max_seq_length=ecfg.encoder.max_seq_length,
            batch_size=ecfg.encoder.batch_size,
            backend=ecfg.encoder.backend,
            precision=ecfg.encoder.precision,
        )
        if run is not None:
            inp = run_inputs(
                run,
                recs,
                model=str(model) if model else None,
                base_encoder=base,
                metrics=load_metrics(metrics, model) if metrics else None,
                **common,
            )
            if corpus is None and (run / "config.json").is_file():
                inp.corpus = _run_corpus(run)
        else:
            assert model is not None
            res = load_result(model)
            files = metrics if metrics else sorted(model.glob("eval_*.json"))
            inp = ReportInputs(
                train_result=res,
                records=recs or [],
                base_encoder=base or res.get("encoder"),
                model=str(model),
                metrics=load_metrics(files, model),
                **common,
            )
        if output is None:
            where = run if run is not None else model
            assert where is not None
            output = where / "report"
        md = build_report(output, inp, show_progress=not quiet)
        typer.echo(f"report: {md}")


def _run_corpus(run: Path):
    """The corpus of the run's dataset (for the cached embeddings), or None when it is not there."""
    import json

    from negforge.synth.data import load_corpus

    try:
        data = Path(json.loads((run / "config.json").read_text())["data"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return load_corpus(data / "corpus.jsonl") if (data / "corpus.jsonl").is_file() else None
