"""``negforge mine``: add BM25 / dense / click-log negatives to records."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..config import MineConfig
from .common import (
    ColumnsOpt,
    ConfigOpt,
    QuietOpt,
    SetOpt,
    VerboseOpt,
    config_default,
    emit_report,
    example,
    handle_errors,
    load_inputs,
    setup_logging,
    stage_config,
)


def register(app: typer.Typer) -> None:
    @app.command(
        "mine",
        epilog=example(
            "negforge mine -i ../shared/data/scifact -d ../shared/data/scifact -o mined.jsonl --sources bm25,dense",
            "negforge mine -i records.jsonl -d my-beir-folder -o mined.jsonl --limit 100 --set mine.num_negatives=4",
        ),
    )
    @handle_errors
    def mine(
        input: Path = typer.Option(
            ...,
            "--input",
            "-i",
            help="Records, FlagEmbedding or Tevatron JSONL, a BEIR "
            "folder, a datasets folder or Hub name, Parquet, or a CSV/TSV of query-positive pairs.",
        ),
        output: Path = typer.Option(..., "--output", "-o", help="Records JSONL with the mined negatives added."),
        data: Optional[Path] = typer.Option(
            None,
            "--data",
            "-d",
            help="BEIR folder to mine from (its corpus and qrels). "
            "Without it: the input's corpus, else one built from the input's passages.",
        ),
        sources: Optional[str] = typer.Option(
            None,
            "--sources",
            help="Comma-separated miners: bm25, dense, click." + config_default(MineConfig, "sources", "mine.sources"),
        ),
        click_log: Optional[str] = typer.Option(None, "--click-log", help="Impressions JSONL for the click miner."),
        split: str = typer.Option("train", "--split", help="qrels split of a BEIR input / --data."),
        limit: Optional[int] = typer.Option(None, "--limit", help="First N records only. \\[default: all]"),
        columns: Optional[str] = ColumnsOpt,
        corpus: Optional[Path] = typer.Option(
            None,
            "--corpus",
            help="Corpus to mine from: a BEIR corpus.jsonl (_id, title, text) or a Tevatron corpus (docid, text).",
        ),
        config: Optional[Path] = ConfigOpt,
        sets: Optional[list[str]] = SetOpt,
        quiet: bool = QuietOpt,
        verbose: bool = VerboseOpt,
    ) -> None:
        """Add BM25 / dense / click-log negatives to every record (never a labelled positive)."""
        from negforge.mixers.mine import mine_records

        from ..data import corpus_from_records
        from ..io import write_records

        setup_logging(quiet, verbose)
        cfg = stage_config(
            MineConfig,
            config,
            sets,
            "mine",
            **{"click.log": click_log},
            sources=[s.strip() for s in sources.split(",") if s.strip()] if sources else None,
        )
        records, dataset = load_inputs(input, split, limit, data=data, columns=columns)
        if corpus is not None:
            from ..inputs import read_corpus

            dataset.corpus = read_corpus(corpus)
        if dataset.corpus is None:
            dataset.corpus = corpus_from_records(records)
            typer.echo(
                f"no corpus given: mining from the input's own {len(dataset.corpus)} passages (pass --data "
                "BEIR to mine a real corpus)",
                err=True,
            )
        from ..outputs import OutputLock

        with OutputLock(output):  # a second job on this output fails at once instead of doing the work twice
            out, report = mine_records(records, dataset, cfg, show_progress=not quiet)
            write_records(output, out)
        emit_report(report)
        typer.echo(f"wrote {len(out)} records to {output}")
