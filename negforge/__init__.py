"""negforge: hard negatives for dense retrievers.

Everything ships under this one namespace: :mod:`negforge.synth` (LLM generation, verification,
the CLI), :mod:`negforge.mixers` (miners and the hybrid mixer), :mod:`negforge.trainer`
(training, evaluation, export) and :mod:`negforge.prompts` (the template sets). ``import negforge``
stays light: torch, faiss, vllm and sentence-transformers are imported only inside the functions
that need them.
"""
from .synth.errors import BackendError, ConfigError, InputError, MissingDependencyError, NegforgeError
from .synth.schema import SCHEMA_VERSION, Negative, Passage, Provenance, Record, Source, Status, Verdict

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION", "Negative", "Passage", "Provenance", "Record", "Source", "Status", "Verdict",
    "NegforgeError", "InputError", "ConfigError", "BackendError", "MissingDependencyError",
    "__version__",
]
