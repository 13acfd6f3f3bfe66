"""``negforge mine | mix | export | clicklog``: mined negatives, the hybrid mix, trainer files."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import ConfigOpt, QuietOpt, SetOpt, handle_errors, load_inputs, setup_logging, stage_config


def _epoch_path(out: Path, epoch: int) -> Path:
    return out.with_name(f"{out.stem}.epoch{epoch}{out.suffix or '.jsonl'}")


def register(app: typer.Typer) -> None:
    @app.command("mine")
    @handle_errors
    def mine(
        input: Path = typer.Option(..., "--input", "-i", help="Records JSONL, FlagEmbedding JSONL or a BEIR folder."),
        output: Path = typer.Option(..., "--output", "-o", help="Records JSONL with the mined negatives added."),
        data: Optional[Path] = typer.Option(None, "--data", help="BEIR folder to mine from (its corpus and qrels). "
                                            "Without it: the input's corpus, else one built from the input's passages."),
        sources: Optional[str] = typer.Option(None, "--sources", help="Comma-separated miners: bm25, dense, click."),
        click_log: Optional[str] = typer.Option(None, "--click-log", help="Impressions JSONL for the click miner."),
        split: str = typer.Option("train", "--split", help="qrels split of a BEIR input / --data."),
        limit: Optional[int] = typer.Option(None, "--limit", help="First N records only."),
        config: Optional[Path] = ConfigOpt,
        sets: Optional[list[str]] = SetOpt,
        quiet: bool = QuietOpt,
    ) -> None:
        """Add BM25 / dense / click-log negatives to every record (never a labelled positive)."""
        from negforge.mixers.mine import mine_records

        from ..config import MineConfig
        from ..data import corpus_from_records, load_beir
        from ..io import write_records

        setup_logging(quiet)
        cfg = stage_config(MineConfig, config, sets, "mine", click_log=click_log,
                           sources=[s.strip() for s in sources.split(",") if s.strip()] if sources else None)
        records, corpus, qrels = load_inputs(input, split, limit)
        if data is not None:
            beir = load_beir(data, split)
            corpus, qrels = beir.corpus, beir.qrels
        if corpus is None:
            corpus = corpus_from_records(records)
            typer.echo(f"no corpus given: mining from the input's own {len(corpus)} passages (pass --data BEIR "
                       "to mine a real corpus)", err=True)
        out, report = mine_records(records, corpus, cfg, qrels, show_progress=not quiet)
        write_records(output, out)
        typer.echo(report.table())
        typer.echo(f"wrote {len(out)} records to {output}")

    @app.command("mix")
    @handle_errors
    def mix(
        input: Path = typer.Option(..., "--input", "-i", help="Verified records JSONL (`negforge verify` output)."),
        output: Path = typer.Option(..., "--output", "-o", help="Mixed records JSONL; with --epochs E > 1, "
                                    "OUT.epoch0.jsonl ... OUT.epoch{E-1}.jsonl."),
        k: Optional[int] = typer.Option(None, "--k", help="Negatives per query."),
        epochs: Optional[int] = typer.Option(None, "--epochs", help="Fresh draws, one file per epoch."),
        seed: Optional[int] = typer.Option(None, "--seed"),
        curriculum: Optional[bool] = typer.Option(None, "--curriculum/--no-curriculum",
                                                  help="Grow the share of the hardest negatives each epoch."),
        encoder: Optional[str] = typer.Option(None, "--encoder", help="Encoder for mix.dedup_cosine "
                                              "(default: the bundled MiniLM)."),
        config: Optional[Path] = ConfigOpt,
        sets: Optional[list[str]] = SetOpt,
        quiet: bool = QuietOpt,
    ) -> None:
        """Pick k verified negatives per query by source ratio, deduplicated, one seeded draw per epoch."""
        from negforge.mixers.hybrid import embed_for_dedup, mix_records

        from ..config import MixConfig
        from ..io import read_records, write_records
        from ..models import DEFAULT_ENCODER

        setup_logging(quiet)
        cfg = stage_config(MixConfig, config, sets, "mix", k=k, epochs=epochs, seed=seed, curriculum=curriculum)
        records = read_records(input)
        vectors = embed_for_dedup(records, encoder or DEFAULT_ENCODER) if cfg.dedup_cosine else None
        summary = None
        for epoch in range(cfg.epochs):
            mixed, s = mix_records(records, cfg, epoch=epoch, encoder=encoder or DEFAULT_ENCODER, vectors=vectors)
            summary = s if summary is None else summary.merge(s)
            path = output if cfg.epochs == 1 else _epoch_path(output, epoch)
            write_records(path, mixed)
            typer.echo(f"wrote {len(mixed)} records to {path}")
        typer.echo(summary.table())

    @app.command("export")
    @handle_errors
    def export(
        input: Path = typer.Option(..., "--input", "-i", help="Mixed records JSONL."),
        fmt: str = typer.Option(..., "--format", "-f", help="sentence-transformers | sentence-transformers-triplet "
                                "| flag | tevatron | parquet"),
        output: Path = typer.Option(..., "--output", "-o", help="A folder for sentence-transformers, else a file."),
        num_negatives: Optional[int] = typer.Option(None, "--num-negatives",
                                                    help="sentence-transformers: negative columns (default: the most any record has)."),
        quiet: bool = QuietOpt,
    ) -> None:
        """Write records in a trainer's format (sentence-transformers, FlagEmbedding, Tevatron, Parquet)."""
        from negforge.trainer.export import export_records

        from ..io import read_records

        setup_logging(quiet)
        path = export_records(read_records(input), fmt, output, num_negatives=num_negatives)
        typer.echo(f"wrote {fmt} to {path}")

    @app.command("clicklog")
    @handle_errors
    def clicklog(
        data: Path = typer.Option(..., "--data", help="BEIR folder: users see BM25 rankings of its corpus."),
        output: Path = typer.Option(..., "--output", "-o", help="Impressions JSONL to write."),
        split: str = typer.Option("train", "--split", help="qrels split whose queries the users ask."),
        sessions: int = typer.Option(20, "--sessions", help="Impressions per query."),
        limit: Optional[int] = typer.Option(None, "--limit", help="First N queries only."),
        eta: float = typer.Option(1.0, "--eta", help="Position bias: examination probability 1 / position^eta."),
        seed: int = typer.Option(0, "--seed"),
        cache_dir: str = typer.Option(".cache/negforge/embeddings", "--cache-dir", help="Where the BM25 index is cached."),
        quiet: bool = QuietOpt,
    ) -> None:
        """Simulate a small click log (seeded) over a BEIR folder, for the click miner's demo and tests."""
        from negforge.mixers.clicklog_gen import ClickSim, generate_click_log

        from ..data import load_beir

        setup_logging(quiet)
        sim = ClickSim(sessions_per_query=sessions, limit=limit, eta=eta, seed=seed)
        stats = generate_click_log(load_beir(data, split), output, sim, cache_dir=cache_dir, show_progress=not quiet)
        typer.echo(f"wrote {stats.impressions} impressions ({stats.clicks} clicks, {stats.relevant_clicks} on "
                   f"relevant documents) for {stats.queries} queries to {output}")
