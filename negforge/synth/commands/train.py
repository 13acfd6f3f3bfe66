"""``negforge train``, ``negforge eval`` and ``negforge report``: fine-tune, measure, explain."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from .common import ConfigOpt, QuietOpt, SetOpt, handle_errors, load_inputs, setup_logging, stage_config


def _main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _default_eval_path(model: str, split: str) -> Path:
    from negforge.trainer.evaluate import weights_fingerprint

    if weights_fingerprint(model):  # a local model folder: keep its metrics beside it
        return Path(model) / f"eval_{split}.json"
    slug = model.replace("bundled:", "bundled-").replace("/", "_").replace(":", "-")
    return Path("runs") / "eval" / f"{slug}_{split}.json"


def _load_metrics(files: list[Path], model_dir: Path) -> dict[str, dict]:
    from ..errors import InputError

    out = {}
    for f in files:
        try:
            obj = json.loads(f.read_text())
            name = "fine-tuned" if f.parent.resolve() == model_dir.resolve() else obj["model"]
            out[f"{name} ({obj['split']})"] = obj["metrics"]
        except (OSError, ValueError, KeyError) as e:
            raise InputError(f"{f}: not an eval JSON written by `negforge eval` ({e})") from None
    return out


def register(app: typer.Typer) -> None:
    @app.command("train")
    @handle_errors
    def train(
        input: Path = typer.Option(..., "--input", "-i", help="Records JSONL (the mixer's output), a FlagEmbedding "
                                   "JSONL, or a BEIR folder (in-batch negatives only: --set num_hard_negatives=0)."),
        output: Optional[str] = typer.Option(None, "--output", "-o", help="Model folder (default: train.output_dir)."),
        config: Optional[Path] = ConfigOpt,
        sets: Optional[list[str]] = SetOpt,
        loss: Optional[str] = typer.Option(None, "--loss", help="mnrl, cached_mnrl, jointlh, summarglh, lsepair, rand1lh."),
        eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="BEIR folder: validate before training "
                                                 "and after every epoch (sampled corpus)."),
        eval_split: str = typer.Option("test", "--eval-split", help="qrels split of --eval-data."),
        quiet: bool = QuietOpt,
    ) -> None:
        """Fine-tune the encoder on records (several processes: run under torchrun, see trainer/train.py)."""
        from negforge.synth.config import TrainConfig
        from negforge.synth.data import load_beir
        from negforge.trainer.train import train_model

        setup_logging(quiet or not _main_process())
        cfg = stage_config(TrainConfig, config, sets, "train", output_dir=output, loss=loss)
        records, _, _ = load_inputs(input)
        val = load_beir(eval_data, eval_split) if eval_data is not None else None
        res = train_model(records, cfg, show_progress=not quiet and _main_process(), eval_data=val)
        if not _main_process():
            return
        first, last = (res.losses[0]["loss"], res.losses[-1]["loss"]) if res.losses else (float("nan"),) * 2
        typer.echo(f"trained {cfg.encoder} with {cfg.loss}: {res.steps} steps on {res.examples} examples, "
                   f"loss {first:.4f} -> {last:.4f}, {res.samples_per_s} samples/s ({res.device} x{res.world_size})")
        for v in res.validation:
            typer.echo(f"  epoch {v['epoch']}: ndcg@10 {v.get('ndcg@10', float('nan')):.4f}  "
                       f"recall@100 {v.get('recall@100', float('nan')):.4f}  mrr@10 {v.get('mrr@10', float('nan')):.4f}")
        typer.echo(f"model: {res.model_path}")

    @app.command("eval")
    @handle_errors
    def eval_(
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Model folder, hub name, or 'bundled' "
                                            "(default: eval.encoder)."),
        data: Path = typer.Option(Path("../shared/data/scifact"), "--data", "-d", help="BEIR folder."),
        split: Optional[str] = typer.Option(None, "--split", help="qrels split (default: eval.split = test)."),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Metrics JSON (default: "
                                              "<model>/eval_<split>.json for a model folder, else runs/eval/)."),
        config: Optional[Path] = ConfigOpt,
        sets: Optional[list[str]] = SetOpt,
        quiet: bool = QuietOpt,
    ) -> None:
        """nDCG@10, Recall@10, Recall@100 and MRR@10 of a model on a BEIR split."""
        from negforge.synth.config import EvalConfig
        from negforge.synth.data import load_beir
        from negforge.synth.io import write_json
        from negforge.trainer.evaluate import evaluate_model, metrics_table

        setup_logging(quiet)
        cfg = stage_config(EvalConfig, config, sets, "eval", encoder=model, split=split)
        beir = load_beir(data, cfg.split)
        metrics = evaluate_model(cfg.encoder, beir, cfg, show_progress=not quiet)
        out = output or _default_eval_path(cfg.encoder, cfg.split)
        write_json(out, {"model": cfg.encoder, "data": str(data), "split": cfg.split, "metrics": metrics})
        typer.echo(metrics_table({cfg.encoder: metrics}))
        typer.echo(f"metrics: {out}")

    @app.command("report")
    @handle_errors
    def report(
        model: Path = typer.Option(..., "--model", "-m", help="A model folder written by `negforge train`."),
        records: Optional[Path] = typer.Option(None, "--records", "-r", help="Records JSONL for the cosine "
                                               "histograms per negative source (e.g. runs/default/verified.jsonl)."),
        data: Optional[Path] = typer.Option(None, "--data", "-d", help="BEIR folder: reuse its cached corpus embeddings."),
        base: Optional[str] = typer.Option(None, "--base", help="Encoder for 'before' (default: the one training "
                                           "started from)."),
        metrics: Optional[list[Path]] = typer.Option(None, "--metrics", help="Eval JSON files to tabulate "
                                                     "(default: <model>/eval_*.json)."),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Report folder (default: <model>/report)."),
        limit: int = typer.Option(200, "--limit", help="Records sampled for the histograms."),
        config: Optional[Path] = ConfigOpt,
        sets: Optional[list[str]] = SetOpt,
        quiet: bool = QuietOpt,
    ) -> None:
        """Loss curve, validation per epoch, and query-document cosine histograms before/after training.
        Encoding follows the eval section (cache_dir, max_seq_length, batch_size), so the embeddings
        `negforge eval` cached are reused."""
        from negforge.synth.config import EvalConfig
        from negforge.synth.data import load_corpus
        from negforge.synth.io import read_records
        from negforge.trainer.report import ReportInputs, build_report
        from negforge.trainer.train import load_result

        setup_logging(quiet)
        ecfg = stage_config(EvalConfig, config, sets, "eval")
        res = load_result(model)
        files = metrics if metrics else sorted(model.glob("eval_*.json"))
        inp = ReportInputs(
            train_result=res, records=read_records(records) if records else [],
            base_encoder=base or res.get("encoder"), corpus=load_corpus(data / "corpus.jsonl") if data else None,
            metrics=_load_metrics(files, model), max_records=limit, cache_dir=ecfg.cache_dir,
            max_seq_length=ecfg.max_seq_length, batch_size=ecfg.batch_size)
        md = build_report(output or model / "report", inp, show_progress=not quiet)
        typer.echo(f"report: {md}")
