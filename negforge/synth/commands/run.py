"""``negforge run [CONFIG]``: the whole pipeline on one dataset, then before/after metrics."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import QuietOpt, SetOpt, handle_errors, setup_logging


def _table(before: dict, after: dict) -> str:
    keys = [k for k in ("ndcg@10", "recall@10", "recall@100", "mrr@10") if k in before or k in after]
    rows = ["| metric | base model | fine-tuned | change |", "|---|---|---|---|"]
    for k in keys:
        b, a = before.get(k), after.get(k)
        delta = f"{a - b:+.4f}" if a is not None and b is not None else ""
        rows.append(f"| {k} | {b:.4f} | {a:.4f} | {delta} |" if a is not None and b is not None else f"| {k} | {b} | {a} | |")
    return "\n".join(rows)


def register(app: typer.Typer) -> None:
    @app.command("run")
    @handle_errors
    def run(
        config: Optional[Path] = typer.Argument(None, help="Run config YAML (see configs/default.yaml); defaults apply without one."),
        sets: Optional[list[str]] = SetOpt,
        data: Optional[str] = typer.Option(None, help="BEIR folder (default ../shared/data/scifact)."),
        out: Optional[str] = typer.Option(None, "--out", help="Output folder (default runs/default)."),
        llm_queries: Optional[int] = typer.Option(None, help="Train queries the LLM writes negatives for."),
        all_queries: bool = typer.Option(False, "--all-queries", help="Run the LLM stage on every train query."),
        fresh: bool = typer.Option(False, "--fresh", help="Redo every stage instead of reusing finished ones."),
        quiet: bool = QuietOpt,
    ) -> None:
        """Generate -> mine -> verify -> mix -> train -> evaluate, printing base and fine-tuned metrics."""
        from ..config import RunConfig, load_config
        from ..pipeline import run_pipeline

        setup_logging(quiet)
        cfg = load_config(RunConfig, config, sets, data=data, out_dir=out, llm_queries=llm_queries)
        if all_queries:
            cfg = cfg.model_copy(update={"llm_queries": None})
        result = run_pipeline(cfg, fresh=fresh, show_progress=not quiet)
        typer.echo("\nStage times (s): " + ", ".join(f"{k} {v}" for k, v in result.timings.items()))
        typer.echo(f"\nSciFact-style evaluation on split '{cfg.eval.split}':\n" + _table(result.metrics_before, result.metrics_after))
        typer.echo(f"\nModel: {result.model_path}\nRecords and metrics: {result.out_dir}/ (metrics.json)")
