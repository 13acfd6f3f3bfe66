"""``negforge train``: fine-tune the encoder on records."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from ..config import TrainConfig
from .common import (
    ConfigOpt,
    QuietOpt,
    SetOpt,
    VerboseOpt,
    config_default,
    example,
    handle_errors,
    load_inputs,
    setup_logging,
    stage_config,
)


def _main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def register(app: typer.Typer) -> None:
    @app.command(
        "train",
        epilog=example(
            "negforge train -i mixed.jsonl -o model/ --loss cached_mnrl",
            "negforge train -i mixed.jsonl -o model/ --eval-data ../shared/data/scifact --set train.epochs=2",
            "torchrun --nproc_per_node 4 -m negforge train -i mixed.jsonl -o model/",
        ),
    )
    @handle_errors
    def train(
        input: Path = typer.Option(
            ...,
            "--input",
            "-i",
            help="Records JSONL (the mixer's output), a FlagEmbedding "
            "JSONL, or a BEIR folder (in-batch negatives only: --set num_hard_negatives=0).",
        ),
        output: Optional[str] = typer.Option(
            None, "--output", "-o", help="Model folder." + config_default(TrainConfig, "output_dir", "train.output_dir")
        ),
        config: Optional[Path] = ConfigOpt,
        sets: Optional[list[str]] = SetOpt,
        loss: Optional[str] = typer.Option(
            None,
            "--loss",
            help="mnrl, cached_mnrl, mnrl_xbm, jointlh, summarglh, lsepair, rand1lh."
            + config_default(TrainConfig, "loss", "train.loss"),
        ),
        eval_data: Optional[Path] = typer.Option(
            None, "--eval-data", help="BEIR folder: validate before training and after every epoch (sampled corpus)."
        ),
        eval_split: str = typer.Option("test", "--eval-split", help="qrels split of --eval-data."),
        quiet: bool = QuietOpt,
        verbose: bool = VerboseOpt,
    ) -> None:
        """Fine-tune the encoder on records (several processes: run under torchrun, see trainer/train.py)."""
        from negforge.synth.data import load_beir
        from negforge.trainer.train import train_model

        setup_logging(quiet or not _main_process(), verbose)
        cfg = stage_config(TrainConfig, config, sets, "train", output_dir=output, loss=loss)
        records, _ = load_inputs(input)
        val = load_beir(eval_data, eval_split) if eval_data is not None else None
        res = train_model(records, cfg, show_progress=not quiet and _main_process(), eval_data=val)
        if not _main_process():
            return
        first, last = (res.losses[0]["loss"], res.losses[-1]["loss"]) if res.losses else (float("nan"),) * 2
        typer.echo(
            f"trained {cfg.encoder} with {cfg.loss}: {res.steps} steps on {res.examples} examples, "
            f"loss {first:.4f} -> {last:.4f}, {res.samples_per_s} samples/s ({res.device} x{res.world_size})"
        )
        if res.memory_bank:
            mb = res.memory_bank
            typer.echo(
                f"  memory bank: {mb['filled']} of {mb['queue_size']} entries filled, "
                f"{mb['excluded_false_negatives']} entries left out as a positive of the query"
            )
        for v in res.validation:
            typer.echo(
                f"  epoch {v['epoch']}: ndcg@10 {v.get('ndcg@10', float('nan')):.4f}  "
                f"recall@100 {v.get('recall@100', float('nan')):.4f}  mrr@10 {v.get('mrr@10', float('nan')):.4f}"
            )
        typer.echo(f"model: {res.model_path}")
