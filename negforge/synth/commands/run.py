"""``negforge run [CONFIG]``: the whole pipeline on one dataset, then before/after metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..config import DEFAULT_DATA, RunConfig
from .common import ConfigOpt, QuietOpt, SetOpt, VerboseOpt, config_default, example, handle_errors, setup_logging


def _table(before: dict, after: dict) -> str:
    keys = [k for k in ("ndcg@10", "recall@10", "recall@100", "mrr@10") if k in before or k in after]
    rows = ["| metric | base model | fine-tuned | change |", "|---|---|---|---|"]
    for k in keys:
        b, a = before.get(k), after.get(k)
        delta = f"{a - b:+.4f}" if a is not None and b is not None else ""
        rows.append(
            f"| {k} | {b:.4f} | {a:.4f} | {delta} |" if a is not None and b is not None else f"| {k} | {b} | {a} | |"
        )
    return "\n".join(rows)


def register(app: typer.Typer) -> None:
    @app.command(
        "run",
        epilog=example(
            "negforge run",
            "negforge run configs/default.yaml -d ../shared/data/nfcorpus -o runs/nfcorpus --llm-queries 16",
            "OPENAI_BASE_URL=http://localhost:8000/v1 negforge run --all-queries --set mix.k=8",
        ),
    )
    @handle_errors
    def run(
        config_file: Optional[Path] = typer.Argument(
            None, metavar="[CONFIG]", help="Run config YAML (see configs/default.yaml); defaults apply without one."
        ),
        config: Optional[Path] = ConfigOpt,
        sets: Optional[list[str]] = SetOpt,
        data: Optional[str] = typer.Option(None, "--data", "-d", help=f"BEIR folder. \\[default: {DEFAULT_DATA}]"),
        out: Optional[str] = typer.Option(
            None, "--output", "-o", help="Output folder." + config_default(RunConfig, "out_dir", "out_dir")
        ),
        llm_queries: Optional[int] = typer.Option(
            None,
            "--llm-queries",
            help="The LLM stage runs on the first N train "
            "queries." + config_default(RunConfig, "llm_queries", "llm_queries"),
        ),
        all_queries: bool = typer.Option(False, "--all-queries", help="Run the LLM stage on every train query."),
        fresh: bool = typer.Option(False, "--fresh", help="Redo every stage instead of reusing finished ones."),
        quiet: bool = QuietOpt,
        verbose: bool = VerboseOpt,
    ) -> None:
        """Generate -> mine -> verify -> mix -> train -> evaluate, printing base and fine-tuned metrics."""
        from ..config import load_config
        from ..errors import ConfigError
        from ..pipeline import run_pipeline

        setup_logging(quiet, verbose)
        if config_file is not None and config is not None:
            raise ConfigError("give the config once: as the CONFIG argument or with --config, not both")
        cfg = load_config(RunConfig, config_file or config, sets, data=data, out_dir=out, llm_queries=llm_queries)
        if all_queries:
            cfg = cfg.model_copy(update={"llm_queries": None})
        result = run_pipeline(cfg, fresh=fresh, show_progress=not quiet)
        typer.echo("\nStage times (s): " + ", ".join(f"{k} {v}" for k, v in result.timings.items()))
        typer.echo(
            f"\nBEIR-style evaluation of {cfg.data} on split '{cfg.eval.split}':\n"
            + _table(result.metrics_before, result.metrics_after)
        )
        typer.echo(f"\nModel: {result.model_path}\nRecords and metrics: {result.out_dir}/ (metrics.json)")
        if "shortcut" in result.summaries:
            from ..shortcut import ShortcutReport

            sc = ShortcutReport.model_validate(result.summaries["shortcut"])
            typer.echo(
                f"\nShortcut check (kept negatives vs real documents; {result.out_dir}/shortcut.json):\n" + sc.table()
            )
            for w in sc.warnings:
                typer.secho(f"warning: {w}", fg=typer.colors.YELLOW, err=True)
