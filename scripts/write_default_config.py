"""Write configs/default.yaml from the RunConfig defaults (run after adding a config field).

    python3 scripts/write_default_config.py          # rewrites configs/default.yaml
tests/test_config.py fails when the file and the defaults drift apart.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from negforge.synth.config import RunConfig
from negforge.synth.paths import cache_root

HEADER = """\
# negforge run config: the bundled default (SciFact + SmolLM2-135M served locally + MiniLM).
# Every field is optional; `negforge run configs/default.yaml --set mix.k=8` overrides one.
# A stage command (negforge generate / verify / mine / mix / train / eval -c this-file) reads its
# own section. Point generate.llm at any OpenAI-compatible server with base_url + model (API key
# from the env var named by api_key_env), or set backend: vllm and model: <HF model dir>.
# The cache folders (generate.cache_dir, verify.judge_cache_dir, *.cache_dir) are left out: they default
# to $NEGFORGE_CACHE_DIR, else ~/.cache/negforge (llm/, embeddings/); set them here to pin another place.
# Regenerate with: python3 scripts/write_default_config.py
"""


def _drop_cache_dirs(tree: dict) -> dict:
    """The tree without the values that are this machine's cache folder (they differ per user)."""
    root = str(cache_root())
    return {
        k: _drop_cache_dirs(v) if isinstance(v, dict) else v
        for k, v in tree.items()
        if not (isinstance(v, str) and v.startswith(root))
    }


def render() -> str:
    return HEADER + yaml.safe_dump(_drop_cache_dirs(RunConfig().model_dump(mode="json")), sort_keys=False)


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "configs" / "default.yaml"
    out.write_text(render())
    print(f"wrote {out}")
