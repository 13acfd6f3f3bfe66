"""The CLI surface: every stage command is there with --help, and importing negforge stays light."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from negforge.synth.cli import app

STAGES = ["generate", "verify", "mine", "mix", "train", "eval", "run"]
OTHERS = ["merge", "export", "clicklog", "report", "fn-report", "prompt", "verifier"]


def test_every_stage_command_is_registered():
    out = CliRunner().invoke(app, ["--help"]).output
    for name in STAGES + OTHERS:
        assert f" {name} " in out, f"negforge {name} is missing from --help"


@pytest.mark.parametrize("name", STAGES + ["merge", "export", "fn-report"])
def test_stage_help_mentions_config_or_inputs(name):
    res = CliRunner().invoke(app, [name, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage" in res.output and "--help" in res.output


def test_import_does_not_load_heavy_libraries():
    code = (
        "import sys, negforge, negforge.synth, negforge.synth.cli, negforge.mixers, negforge.trainer; "
        "print(sorted({'torch', 'vllm', 'faiss', 'sentence_transformers', 'bm25s', 'transformers'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"heavy modules imported at import time: {out}"


def test_unknown_dataset_is_one_clear_line(tmp_path):
    res = CliRunner().invoke(app, ["run", "--data", str(tmp_path / "nope"), "--output", str(tmp_path / "o"), "--quiet"])
    assert res.exit_code == 2
    assert "dataset folder not found" in res.output and "Traceback" not in res.output
