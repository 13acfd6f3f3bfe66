"""``negforge merge``: join the shard outputs of ``negforge generate``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import handle_errors, load_inputs


def register(app: typer.Typer) -> None:
    @app.command("merge")
    @handle_errors
    def merge(
        out: Path = typer.Argument(..., help="Merged records JSONL (written atomically)."),
        shards: list[Path] = typer.Argument(..., help="Shard outputs of `negforge generate --shard i`."),
        order: Optional[Path] = typer.Option(None, "--order", help="Put records in this input's order (records "
                                             "JSONL, FlagEmbedding JSONL or BEIR folder); default: shard file order."),
        split: str = typer.Option("train", "--split", help="qrels split when --order is a BEIR folder."),
    ) -> None:
        """Join shard outputs into one file; the same id with different content in two shards is an error."""
        from ..job import merge_outputs

        ids = [r.id for r in load_inputs(order, split)[0]] if order is not None else None
        n = merge_outputs(out, shards, order=ids)
        typer.echo(f"merged {n} records from {len(shards)} files -> {out}")
