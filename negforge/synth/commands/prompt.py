"""``negforge prompt render | try | compare``: iterate on the generation prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..config import DEFAULT_DATA, GenerateConfig
from .common import (
    AliasGroup,
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

DataOpt = typer.Option(None, "--data", "-d", help=f"BEIR folder. \\[default: {DEFAULT_DATA}]")
InputOpt = typer.Option(
    None,
    "--input",
    "-i",
    help="Records JSONL (e.g. a `negforge generate` output: its analyses "
    "and drafts fill the generate/reflect prompts), FlagEmbedding JSONL or BEIR folder.",
)
SplitOpt = typer.Option("train", "--split", help="qrels split of a BEIR folder.")
TemplateDirOpt = typer.Option(
    None,
    "--template-dir",
    help="Folder holding your own template set folders "
    "(each: <step>.jinja2 files + space.yaml; start from a copy of a built-in set).",
)


def _source(data: Optional[Path], input: Optional[Path]) -> Path:
    from ..errors import ConfigError

    if data is not None and input is not None:
        raise ConfigError("give --data or --input, not both")
    return input or data or Path(DEFAULT_DATA)


def _records(data: Optional[Path], input: Optional[Path], split: str):
    return load_inputs(_source(data, input), split)[0]


def _profiled(cfg, data: Optional[Path], input: Optional[Path]):
    """The config with the corpus profile read from the BEIR folder the records come from."""
    from ..profile import with_corpus

    return with_corpus(cfg, _source(data, input))


def _open(cfg):
    from ..backends.factory import open_backend

    return open_backend(cfg.llm, cache_dir=cfg.cache_dir)


def register(app: typer.Typer) -> None:
    prompt_app = typer.Typer(
        cls=AliasGroup, no_args_is_help=True, help="Render, try and compare generation prompt templates."
    )
    app.add_typer(prompt_app, name="prompt")

    @prompt_app.command(
        "render",
        epilog=example(
            "negforge prompt render mar -n 3", "negforge prompt render generate -i generated.jsonl --draft 1"
        ),
    )
    @handle_errors
    def render(
        template: str = typer.Argument(
            ...,
            help="SET_STEP (mar_analyse, counterfactual_rewrite ...), a step of the "
            "configured set (analyse ...), or a set name or folder (all its steps).",
        ),
        example: int = typer.Option(0, "--example", "-n", help="Render for the Nth record (0-based)."),
        draft: int = typer.Option(0, "--draft", help="Draft index (its sampled setting) for generate/reflect."),
        data: Optional[Path] = DataOpt,
        input: Optional[Path] = InputOpt,
        split: str = SplitOpt,
        template_dir: Optional[str] = TemplateDirOpt,
        config: Optional[Path] = ConfigOpt,
        sets: Optional[list[str]] = SetOpt,
        quiet: bool = QuietOpt,
        verbose: bool = VerboseOpt,
    ) -> None:
        """Print the exact messages a step sends for one example record."""
        from ..errors import ConfigError
        from ..prompt_lab import parse_template, render_step
        from ..templates import TemplateSet

        setup_logging(quiet, verbose)
        cfg = stage_config(GenerateConfig, config, sets, "generate", template_dir=template_dir)
        name, steps = parse_template(template, cfg.template)
        cfg = _profiled(cfg.model_copy(update={"template": name}), data, input)
        ts = TemplateSet(name, cfg.template_dir)
        steps = steps or list(ts.steps)
        records = _records(data, input, split)
        if not 0 <= example < len(records):
            raise ConfigError(f"--example {example} is out of range: the input has {len(records)} records (0-based)")
        rec = records[example]
        typer.echo(
            f"# record {rec.id} (example {example}); template set {ts.name!r} (flow {ts.flow}, "
            f"{ts.folder}), hash {ts.hash}"
        )
        for step in steps:
            messages, info = render_step(rec, cfg, step, draft, records)
            typer.echo(f"\n===== {ts.name}/{step} =====")
            for k, v in info.items():
                typer.echo(f"# {k}: {v}")
            for m in messages:
                typer.echo(f"--- [{m['role']}] ---\n{m['content']}")

    @prompt_app.command(
        "try",
        epilog=example(
            "negforge prompt try -o trial/ --sample 5",
            "negforge prompt try -o trial/ --template-dir my-prompts/ -d my-beir-folder",
        ),
    )
    @handle_errors
    def try_(
        out: Path = typer.Option(
            ..., "--output", "-o", help="Folder for report.md, report.html, report.json and the records."
        ),
        sample: int = typer.Option(5, "--sample", help="Records to try (a seeded sample of the input)."),
        template: Optional[str] = typer.Option(
            None,
            "--template",
            help="Template set name." + config_default(GenerateConfig, "template", "generate.template"),
        ),
        template_dir: Optional[str] = TemplateDirOpt,
        data: Optional[Path] = DataOpt,
        input: Optional[Path] = InputOpt,
        split: str = SplitOpt,
        config: Optional[Path] = ConfigOpt,
        sets: Optional[list[str]] = SetOpt,
        quiet: bool = QuietOpt,
        verbose: bool = VerboseOpt,
    ) -> None:
        """Run the flow on a few records; write query, positive, each negative, its attributes, the
        reflection's verdicts and the verifier's score to report.md and report.html."""
        from ..prompt_lab import run_trial, sample_records, write_report

        setup_logging(quiet, verbose)
        cfg = stage_config(GenerateConfig, config, sets, "generate", template=template, template_dir=template_dir)
        cfg = _profiled(cfg, data, input)
        records = sample_records(_records(data, input, split), sample, cfg.seed)
        with _open(cfg) as backend:
            trial = run_trial(records, cfg, out, backend, "trial", show_progress=not quiet)
        md, page = write_report([trial], out)
        _print_stats([trial])
        typer.echo(f"\nreport: {md} and {page}")

    @prompt_app.command("compare", epilog=example("negforge prompt compare mar my-prompts/ -o compare/ --sample 10"))
    @handle_errors
    def compare(
        a: str = typer.Argument(..., help="Template set A: a set name (mar, counterfactual ...) or a set folder."),
        b: str = typer.Argument(..., help="Template set B: a set name or a set folder (another flow is fine)."),
        out: Path = typer.Option(..., "--output", "-o", help="Folder for compare.md, compare.html and compare.json."),
        sample: int = typer.Option(5, "--sample", help="Records to try (the same seeded sample for A and B)."),
        template_dir: Optional[str] = TemplateDirOpt,
        data: Optional[Path] = DataOpt,
        input: Optional[Path] = InputOpt,
        split: str = SplitOpt,
        config: Optional[Path] = ConfigOpt,
        sets: Optional[list[str]] = SetOpt,
        quiet: bool = QuietOpt,
        verbose: bool = VerboseOpt,
    ) -> None:
        """Run two template sets on the same sample; side-by-side report with parse failures, verifier
        kept-rate and mean score gap to the positive."""
        from ..prompt_lab import resolve_set, run_trial, sample_records, write_report

        setup_logging(quiet, verbose)
        cfg = _profiled(stage_config(GenerateConfig, config, sets, "generate"), data, input)
        specs = [resolve_set(s, template_dir) for s in (a, b)]
        records = sample_records(_records(data, input, split), sample, cfg.seed)
        trials = []
        with _open(cfg) as backend:
            for label, (name, folder) in zip(("A", "B"), specs):
                c = cfg.model_copy(update={"template": name, "template_dir": folder})
                trials.append(run_trial(records, c, out, backend, label, show_progress=not quiet))
        md, page = write_report(trials, out, stem="compare")
        _print_stats(trials)
        typer.echo(f"\nreport: {md} and {page}")


def _print_stats(trials) -> None:
    from ..prompt_lab import _STAT_NAMES

    stats = [t.stats() for t in trials]
    width = max(len(d) for _, d in _STAT_NAMES)
    typer.echo(
        f"{'':<{width}}  " + "  ".join(f"{t.label} ({Path(t.template).name}, {t.template_hash})" for t in trials)
    )
    for k, desc in _STAT_NAMES:
        typer.echo(f"{desc:<{width}}  " + "  ".join(f"{str(s[k]):>12}" for s in stats))
    for t in trials:
        for w in t.shortcut.warnings if t.shortcut else []:
            typer.echo(f"warning ({t.label}): {w}")
