"""``negforge generate``: LLM hard negatives, resumable, shardable."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import (ConfigOpt, QuietOpt, SetOpt, VerboseOpt, example, handle_errors, load_inputs, setup_logging,
                     stage_config)


def _records(data: Optional[Path], input: Optional[Path], split: str):
    from ..errors import ConfigError

    if (data is None) == (input is None):
        raise ConfigError("give exactly one of --data BEIR_DIR (records from its qrels split) or --input FILE "
                          "(records JSONL, FlagEmbedding JSONL, or a BEIR folder)")
    return load_inputs(data if data is not None else input, split)[0]  # type: ignore[arg-type]


def register(app: typer.Typer) -> None:
    @app.command("generate", epilog=example(
        "negforge generate -d ../shared/data/scifact -o generated.jsonl --limit 8",
        "OPENAI_BASE_URL=http://localhost:8000/v1 negforge generate -i pairs.jsonl -o generated.jsonl",
        "negforge generate configs/default.yaml -d ../shared/data/scifact -o part0.jsonl --shard 0 --num-shards 4"))
    @handle_errors
    def generate(
        config_file: Optional[Path] = typer.Argument(None, metavar="[CONFIG]", help="YAML config (same as --config)."),
        data: Optional[Path] = typer.Option(None, "--data", "-d", help="BEIR folder: one record per query of --split."),
        input: Optional[Path] = typer.Option(None, "--input", "-i", help="Records JSONL, FlagEmbedding JSONL or a "
                                             "BEIR folder."),
        out: Path = typer.Option(..., "--output", "-o", help="Output records JSONL. Records already in it are skipped "
                                 "(a killed job resumes); summary: OUTPUT.summary.json."),
        split: str = typer.Option("train", "--split", help="qrels split of a BEIR folder."),
        limit: Optional[int] = typer.Option(None, "--limit", help="First N records only (before sharding). \\[default: all]"),
        shard: Optional[int] = typer.Option(None, "--shard", help="This job's shard, 0 <= shard < --num-shards. \\[default: 0]"),
        num_shards: Optional[int] = typer.Option(None, "--num-shards", help="Split the records into this many "
                                                 "shards by a stable hash of their id; join with `negforge merge`. \\[default: 1]"),
        no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the on-disk LLM cache."),
        config: Optional[Path] = ConfigOpt,
        sets: Optional[list[str]] = SetOpt,
        quiet: bool = QuietOpt,
        verbose: bool = VerboseOpt,
    ) -> None:
        """Write hard negatives with the LLM (analyse -> generate -> reflect), batched, resumable, shardable."""
        from ..config import GenerateConfig
        from ..errors import ConfigError
        from ..generate import generate_records
        from ..io import write_json

        setup_logging(quiet, verbose)
        if config_file is not None and config is not None:
            raise ConfigError("give the config once: as the CONFIG argument or with --config, not both")
        cfg = stage_config(GenerateConfig, config_file or config, sets, "generate", limit=limit, shard=shard,
                           num_shards=num_shards)
        if no_cache:
            cfg = cfg.model_copy(update={"cache_dir": None})
        from ..profile import with_corpus

        cfg = with_corpus(cfg, data if data is not None else input)  # profile the corpus the records come from
        records = _records(data, input, split)
        summary = generate_records(records, cfg, out, show_progress=not quiet)
        write_json(Path(f"{out}.summary.json"), summary.to_dict())
        typer.echo(summary.table())
