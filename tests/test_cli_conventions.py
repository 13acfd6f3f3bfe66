"""CLI conventions, checked on every command: one spelling per flag, defaults and an example in
--help, --version, -q/-v, the old spellings still accepted; through the real entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from negforge.synth.cli import app
from negforge.synth.commands.common import _rewrite
from negforge.synth.io import read_records, write_records
from negforge.synth.schema import Passage, Record


def _leaves(cmd, path: tuple[str, ...] = ()):
    if hasattr(cmd, "commands"):  # a group (typer ships its own click)
        for name, sub in cmd.commands.items():
            yield from _leaves(sub, path + (name,))
    else:
        yield path, cmd


# Options whose absence means "not used" (no value stands behind None).
OPTIONAL_INPUTS = {
    (): (
        "config",
        "sets",
        "data",
        "input",
        "records",
        "order",
        "click_log",
        "cross_encoder",
        "template_dir",
        "eval_data",
        "metrics",
        "corpus",
    ),
    ("merge",): ("output",),
}  # the old form: negforge merge OUT SHARD...
LEAVES = list(_leaves(typer.main.get_command(app)))


def _cli(*args, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "negforge", *map(str, args)], capture_output=True, text=True, env=full_env, cwd=cwd
    )


def test_the_tree_has_every_command():
    names = {" ".join(p) for p, _ in LEAVES}
    assert {
        "run",
        "generate",
        "merge",
        "verify",
        "verifier train",
        "fn-report",
        "mine",
        "mix",
        "export",
        "clicklog",
        "train",
        "eval",
        "report",
        "prompt render",
        "prompt try",
        "prompt compare",
    } <= names


@pytest.mark.parametrize("path,cmd", LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_every_command_follows_the_flag_conventions(path, cmd):
    opts = {o.name: o for o in cmd.params if o.param_type_name == "option"}
    decls = {d for o in opts.values() for d in o.opts + o.secondary_opts}
    assert "--out" not in decls, "the output flag is spelled --output (-o)"
    for long, short in (
        ("--output", "-o"),
        ("--data", "-d"),
        ("--input", "-i"),
        ("--config", "-c"),
        ("--quiet", "-q"),
        ("--verbose", "-v"),
    ):
        if long in decls:
            assert short in decls, f"{long} has no {short}"
    assert {"--quiet", "--verbose"} <= decls
    for bad in ("--max-queries", "--out-dir", "--num-queries"):
        assert bad not in decls, f"'first N' is spelled --limit, not {bad}"
    assert cmd.epilog and "Example:" in cmd.epilog and f"negforge {' '.join(path)}" in cmd.epilog
    for o in opts.values():
        text = o.help or ""
        assert "(default" not in text and "default from" not in text, f"{o.name}: default not in [default: ...] form"
        if (
            o.default is None
            and not o.required
            and not o.is_flag
            and o.name not in OPTIONAL_INPUTS.get(path, ())
            and o.name not in OPTIONAL_INPUTS[()]
        ):
            # a None default that stands for a value (the config's, "all", ...): the help says which
            assert "[default:" in text, f"{' '.join(path)} {o.opts[0]}: a None default must say what it means"


def test_config_defaults_are_shown_from_the_config_classes():
    from negforge.synth.config import EvalConfig, MixConfig

    mix = CliRunner().invoke(app, ["mix", "--help"], env={"COLUMNS": "200"}).output
    assert f"[default: {MixConfig().k} (config mix.k)]" in mix
    ev = CliRunner().invoke(app, ["eval", "--help"], env={"COLUMNS": "200"}).output
    assert f"[default: {EvalConfig().split} (config eval.split)]" in ev and "Example:" in ev


def test_version_and_short_help_through_the_entry_point():
    import negforge

    res = _cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"negforge {negforge.__version__}"
    assert _cli("-V").stdout == res.stdout
    res = _cli("mine", "-h")
    assert res.returncode == 0 and "--output" in res.stdout and "Example" in res.stdout


def test_rewrite_maps_old_spellings_only_as_whole_flags():
    table = {"--out": "--output"}
    assert _rewrite(["--out", "x", "--out=y", "--output", "z", "--outer", "-o"], table) == [
        "--output",
        "x",
        "--output=y",
        "--output",
        "z",
        "--outer",
        "-o",
    ]
    assert _rewrite(["--set", "a=1", "--", "--out"], table) == ["--set", "a=1", "--", "--out"]


def test_old_spellings_are_still_accepted(tmp_path):
    # each fails on the missing folder, not on the flag: the flag was understood
    res = _cli("run", "--data", tmp_path / "nope", "--out", tmp_path / "o", "-q")
    assert res.returncode == 2 and "dataset folder not found" in res.stderr and "No such option" not in res.stderr
    res = _cli("verifier", "train", "-d", tmp_path / "nope", "-o", tmp_path / "ce", "--max-queries", "5", "-q")
    assert res.returncode == 2 and "No such option" not in res.stderr and "not found" in res.stderr
    res = _cli("report", "-m", tmp_path / "nope", "--limit", "5", "-q")
    assert res.returncode == 2 and "No such option" not in res.stderr


def _rec(i: int) -> Record:
    return Record(id=f"q{i}", query=f"query {i}", positives=[Passage(text=f"positive {i}")])


def test_merge_takes_output_and_keeps_the_old_positional_form(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_records(a, [_rec(0), _rec(1)])
    write_records(b, [_rec(2)])
    res = _cli("merge", "-o", tmp_path / "new.jsonl", a, b)
    assert res.returncode == 0, res.stderr
    assert [r.id for r in read_records(tmp_path / "new.jsonl")] == ["q0", "q1", "q2"]
    res = _cli("merge", tmp_path / "old.jsonl", a, b)  # negforge merge OUT SHARD...
    assert res.returncode == 0, res.stderr
    assert [r.id for r in read_records(tmp_path / "old.jsonl")] == ["q0", "q1", "q2"]
    res = _cli("merge", a, b)  # no -o and the first file exists: never overwrite a shard
    assert res.returncode == 2 and "-o/--output" in res.stderr
    assert [r.id for r in read_records(a)] == ["q0", "q1"]


def test_quiet_silences_library_bars_and_verbose_adds_levels(tiny_beir, tmp_path):
    """bm25s draws its own bars and logs (its logger is set to DEBUG on import): -q shows neither;
    the default shows our INFO sentences; -v adds the level and the logger name."""
    env = {"NEGFORGE_CACHE_DIR": str(tmp_path / "cache")}
    args = ["mine", "-i", tiny_beir, "-d", tiny_beir, "--sources", "bm25"]
    quiet = _cli(*args, "-o", tmp_path / "q.jsonl", "-q", env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr.strip() == "", quiet.stderr
    plain = _cli(*args, "-o", tmp_path / "p.jsonl", env={"NEGFORGE_CACHE_DIR": str(tmp_path / "cache2")})
    lines = [ln for ln in plain.stderr.replace("\r", "\n").splitlines() if ln.strip()]
    info = [ln for ln in lines if "negatives for 20 queries" in ln]
    assert info and "INFO" not in info[0] and "{" not in info[0], lines
    assert not any("Building index" in ln for ln in lines), "bm25s INFO lines must not reach the user"
    verbose = _cli(*args, "-o", tmp_path / "v.jsonl", "-v", env=env)
    assert any("INFO negforge.mixers.mine:" in ln for ln in verbose.stderr.splitlines()), verbose.stderr
    assert read_records(tmp_path / "q.jsonl") == read_records(tmp_path / "v.jsonl")


def test_other_libraries_info_lines_only_with_verbose(capsys):
    """Any library's INFO line (the HTTP client's one per request, a model loader's) stays out by default,
    shows with -v; ours show as plain sentences; warnings show unless -q."""
    import logging

    from negforge.synth.logs import configure

    def emit():
        logging.getLogger("httpx2").info("HTTP Request: POST http://x/v1/chat/completions")
        logging.getLogger("some_library.sub").warning("library warning")
        logging.getLogger("negforge.synth.job").info("generated 3 records")
        logging.getLogger("negforge.synth.job").debug("a debug detail")
        return capsys.readouterr().err

    try:
        configure()
        err = emit()
        assert "HTTP Request" not in err and "library warning" in err and "generated 3 records" in err
        assert "a debug detail" not in err and "INFO" not in err
        configure(verbose=True)
        err = emit()
        assert "HTTP Request" in err and "DEBUG negforge.synth.job: a debug detail" in err
        configure(quiet=True)
        err = emit()
        assert err == ""
    finally:
        configure()
