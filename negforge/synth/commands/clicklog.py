"""``negforge clicklog``: a simulated click log over a BEIR folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..paths import cache_path
from .common import QuietOpt, VerboseOpt, example, handle_errors, setup_logging


def register(app: typer.Typer) -> None:
    @app.command("clicklog", epilog=example("negforge clicklog -d ../shared/data/scifact -o clicks.jsonl --limit 100"))
    @handle_errors
    def clicklog(
        data: Path = typer.Option(..., "--data", "-d", help="BEIR folder: users see BM25 rankings of its corpus."),
        output: Path = typer.Option(..., "--output", "-o", help="Impressions JSONL to write."),
        split: str = typer.Option("train", "--split", help="qrels split whose queries the users ask."),
        sessions: int = typer.Option(20, "--sessions", help="Impressions per query."),
        limit: Optional[int] = typer.Option(None, "--limit", help="First N queries only. \\[default: all]"),
        eta: float = typer.Option(1.0, "--eta", help="Position bias: examination probability 1 / position^eta."),
        seed: int = typer.Option(0, "--seed", help="Random seed."),
        cache_dir: str = typer.Option(cache_path("embeddings"), "--cache-dir", help="Where the BM25 index is cached."),
        quiet: bool = QuietOpt,
        verbose: bool = VerboseOpt,
    ) -> None:
        """Simulate a small click log (seeded) over a BEIR folder, for the click miner's demo and tests."""
        from negforge.mixers.clicklog_gen import ClickSim, generate_click_log

        from ..data import load_beir

        setup_logging(quiet, verbose)
        sim = ClickSim(sessions_per_query=sessions, limit=limit, eta=eta, seed=seed)
        stats = generate_click_log(load_beir(data, split), output, sim, cache_dir=cache_dir, show_progress=not quiet)
        typer.echo(
            f"wrote {stats.impressions} impressions ({stats.clicks} clicks, {stats.relevant_clicks} on "
            f"relevant documents) for {stats.queries} queries to {output}"
        )
