"""``negforge mix``: the hybrid mix of verified negatives, one seeded draw per epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..config import MixConfig
from ..models import DEFAULT_ENCODER
from .common import (
    ConfigOpt,
    QuietOpt,
    SetOpt,
    VerboseOpt,
    config_help,
    emit_report,
    example,
    handle_errors,
    setup_logging,
    stage_config,
)


def _epoch_path(out: Path, epoch: int) -> Path:
    return out.with_name(f"{out.stem}.epoch{epoch}{out.suffix or '.jsonl'}")


def register(app: typer.Typer) -> None:
    @app.command("mix", epilog=example("negforge mix -i verified.jsonl -o mixed.jsonl -k 4 --epochs 2"))
    @handle_errors
    def mix(
        input: Path = typer.Option(..., "--input", "-i", help="Verified records JSONL (`negforge verify` output)."),
        output: Path = typer.Option(
            ...,
            "--output",
            "-o",
            help="Mixed records JSONL; with --epochs E > 1, OUTPUT.epoch0.jsonl ... OUTPUT.epoch{E-1}.jsonl.",
        ),
        k: Optional[int] = typer.Option(None, "--k", "-k", help=config_help(MixConfig, "k", "mix.k")),
        epochs: Optional[int] = typer.Option(None, "--epochs", help=config_help(MixConfig, "epochs", "mix.epochs")),
        seed: Optional[int] = typer.Option(None, "--seed", help=config_help(MixConfig, "seed", "mix.seed")),
        curriculum: Optional[bool] = typer.Option(
            None, "--curriculum/--no-curriculum", help=config_help(MixConfig, "curriculum", "mix.curriculum")
        ),
        encoder: Optional[str] = typer.Option(
            None, "--encoder", help=f"Encoder for mix.dedup_cosine. \\[default: {DEFAULT_ENCODER}]"
        ),
        config: Optional[Path] = ConfigOpt,
        sets: Optional[list[str]] = SetOpt,
        quiet: bool = QuietOpt,
        verbose: bool = VerboseOpt,
    ) -> None:
        """Pick k verified negatives per query by source ratio, deduplicated, one seeded draw per epoch."""
        from negforge.mixers.hybrid import embed_for_dedup, mix_records

        from ..io import read_records, write_record_sets, write_records

        setup_logging(quiet, verbose)
        cfg = stage_config(MixConfig, config, sets, "mix", k=k, epochs=epochs, seed=seed, curriculum=curriculum)
        records = read_records(input)
        from ..outputs import OutputLock

        with OutputLock(output):  # one job per output: a second fails at once
            vectors = embed_for_dedup(records, encoder or DEFAULT_ENCODER) if cfg.dedup_cosine else None
            summary, sets_ = None, {}
            for epoch in range(cfg.epochs):
                mixed, s = mix_records(
                    records, None, cfg, epoch=epoch, encoder=encoder or DEFAULT_ENCODER, vectors=vectors
                )
                summary = s if summary is None else summary.merge(s)
                sets_[output if cfg.epochs == 1 else _epoch_path(output, epoch)] = mixed
            if cfg.epochs == 1:
                write_records(output, sets_[output])
            else:  # all epochs as one unit, with a manifest (OUT.epochs.json) of each file's sha256
                write_record_sets(sets_, output.with_name(f"{output.stem}.epochs.json"))
        for path, mixed in sets_.items():
            typer.echo(f"wrote {len(mixed)} records to {path}")
        emit_report(summary)
