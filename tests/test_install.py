"""Install paths: scripts/setup.sh keeps an installed torch (and pins it for every later step), installs
torch itself only on a machine without one; `pip install negforge[local]` resolves without touching torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FAKE_PYTHON = r"""#!/usr/bin/env bash
# Stands in for python3: records every pip call (and the constraint file's content), never installs.
log="$FAKE_LOG"
if [ "$1" = "-c" ]; then
  case "$2" in
    *"import torch"*) if [ -f "$FAKE_STATE" ]; then cat "$FAKE_STATE"; exit 0; else exit 1; fi ;;
    *) exit 0 ;;
  esac
fi
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
  echo "pip ${*:3}" >> "$log"
  prev=""
  for a in "$@"; do
    if [ "$prev" = "-c" ]; then echo "constraint: $(cat "$a")" >> "$log"; fi
    case "$a" in torch==*) echo "${a#torch==}+fresh" > "$FAKE_STATE" ;; esac
    prev="$a"
  done
  exit 0
fi
exit 0
"""


def _setup(tmp_path: Path, torch_version: str | None) -> list[str]:
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    state, log = tmp_path / "torch-version", tmp_path / "pip.log"
    if torch_version:
        state.write_text(torch_version + "\n")
    env = {**os.environ, "PYTHON": str(fake), "FAKE_LOG": str(log), "FAKE_STATE": str(state)}
    env.pop("NEGFORGE_TORCH", None)
    res = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    return log.read_text().splitlines()


def test_setup_keeps_an_installed_cuda_torch(tmp_path):
    calls = _setup(tmp_path, "2.5.1+cu121")
    assert not any("torch==" in c and c.startswith("pip install") for c in calls), calls
    editable = [i for i, c in enumerate(calls) if c.startswith("pip install") and "-e" in c.split()]
    assert editable and calls[editable[0] + 1] == "constraint: torch==2.5.1+cu121"


def test_setup_installs_torch_first_on_a_fresh_machine(tmp_path):
    calls = _setup(tmp_path, None)
    assert calls[0] == "pip install -q torch==2.13.0"
    assert "constraint: torch==2.13.0+fresh" in calls  # and pinned for the rest


@pytest.mark.slow
def test_pip_install_local_extra_keeps_the_installed_torch(tmp_path):
    """pip's own resolver, in this environment (torch already installed): installing negforge with the
    [local] extra leaves torch as it is."""
    report = tmp_path / "report.json"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--quiet",
            "--no-build-isolation",
            "--report",
            str(report),
            "-e",
            f"{ROOT}[local]",
        ],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        pytest.fail(f"pip could not resolve negforge[local]: {res.stderr[-2000:]}")
    names = [i["metadata"]["name"].lower() for i in json.loads(report.read_text())["install"]]
    assert "negforge" in names and not {"torch", "torchvision", "torchaudio"} & set(names), names
