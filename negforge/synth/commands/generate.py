"""``negforge generate``: LLM hard negatives, resumable, shardable."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import (
    ConfigOpt,
    QuietOpt,
    SetOpt,
    VerboseOpt,
    emit_report,
    example,
    handle_errors,
    load_inputs,
    setup_logging,
    stage_config,
)


def _records(
    data: Optional[Path], input: Optional[Path], split: str, dropped: Optional[dict] = None, allow_empty: bool = False
):
    from ..errors import ConfigError

    if (data is None) == (input is None):
        raise ConfigError(
            "give exactly one of --data BEIR_DIR (records from its qrels split) or --input FILE "
            "(records JSONL, FlagEmbedding JSONL, or a BEIR folder)"
        )
    source = data if data is not None else input
    assert source is not None
    return load_inputs(source, split, dropped=dropped, allow_empty=allow_empty)[0]


def register(app: typer.Typer) -> None:
    @app.command(
        "generate",
        epilog=example(
            "negforge generate -d ../shared/data/scifact -o generated.jsonl --limit 8",
            "OPENAI_BASE_URL=http://localhost:8000/v1 negforge generate -i pairs.jsonl -o generated.jsonl",
            "negforge generate configs/default.yaml -d ../shared/data/scifact -o part0.jsonl --shard 0 --num-shards 4",
        ),
    )
    @handle_errors
    def generate(
        config_file: Optional[Path] = typer.Argument(None, metavar="[CONFIG]", help="YAML config (same as --config)."),
        data: Optional[Path] = typer.Option(None, "--data", "-d", help="BEIR folder: one record per query of --split."),
        input: Optional[Path] = typer.Option(
            None, "--input", "-i", help="Records JSONL, FlagEmbedding JSONL or a BEIR folder."
        ),
        out: Path = typer.Option(
            ...,
            "--output",
            "-o",
            help="Output records JSONL. Records already in it are skipped "
            "(a killed job resumes); failed records: OUTPUT.failures.jsonl (retried by a rerun); "
            "summary over all runs: OUTPUT.summary.json; lock while running: OUTPUT.lock.",
        ),
        split: str = typer.Option("train", "--split", help="qrels split of a BEIR folder."),
        limit: Optional[int] = typer.Option(
            None, "--limit", help="First N records only (before sharding). \\[default: all]"
        ),
        shard: Optional[int] = typer.Option(
            None, "--shard", help="This job's shard, 0 <= shard < --num-shards. \\[default: 0]"
        ),
        num_shards: Optional[int] = typer.Option(
            None,
            "--num-shards",
            help="Split the records into this many "
            "shards by a stable hash of their id; join with `negforge merge`. \\[default: 1]",
        ),
        no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the on-disk LLM cache."),
        fresh: bool = typer.Option(
            False,
            "--fresh",
            help="Start over: remove OUT, its failures and summary first "
            "(needed when the config changed since OUT was started).",
        ),
        allow_empty: bool = typer.Option(False, "--allow-empty", help="An input with no records is not an error."),
        ray: bool = typer.Option(
            False,
            "--ray",
            help="Run on Ray: the records in a pool of actors, one backend each "
            "(generate.ray.*; cluster from ray.address or RAY_ADDRESS, else a local one). "
            "Needs negforge[ray].",
        ),
        config: Optional[Path] = ConfigOpt,
        sets: Optional[list[str]] = SetOpt,
        quiet: bool = QuietOpt,
        verbose: bool = VerboseOpt,
    ) -> None:
        """Write hard negatives with the LLM (analyse -> generate -> reflect), batched, resumable, shardable.
        Exit 0: done (a few failed records, under generate.max_failed_fraction, are listed and retried by a
        rerun); 2: a user error (one line); 3: too many records failed (summary printed; rerun to retry them)."""
        from ..config import GenerateConfig
        from ..errors import ConfigError
        from ..job import TooManyFailures, run_generate_job

        setup_logging(quiet, verbose)
        if config_file is not None and config is not None:
            raise ConfigError("give the config once: as the CONFIG argument or with --config, not both")
        cfg = stage_config(
            GenerateConfig, config_file or config, sets, "generate", limit=limit, shard=shard, num_shards=num_shards
        )
        if no_cache:
            cfg = cfg.model_copy(update={"cache_dir": None})
        if ray:
            cfg = cfg.model_copy(update={"ray": cfg.ray.model_copy(update={"enabled": True})})
        from ..profile import with_corpus

        cfg = with_corpus(cfg, data if data is not None else input)  # profile the corpus the records come from
        dropped: dict[str, int] = {}
        records = _records(data, input, split, dropped, allow_empty)
        try:
            report = run_generate_job(
                records,
                cfg,
                out,
                show_progress=not quiet,
                fresh=fresh,
                input_path=data if data is not None else input,
                input_dropped=dropped,
            )
        except TooManyFailures as e:
            emit_report(e.report)
            raise
        emit_report(report)
        if report.records_failed:
            typer.secho(
                f"warning: {report.records_failed} records failed (listed in {out}.failures.jsonl); "
                "rerun the same command to retry them",
                err=True,
                fg=typer.colors.YELLOW,
            )
