"""negforge: hard negatives for dense retrievers.

``import negforge.synth`` stays light: torch, faiss, vllm and sentence-transformers are imported only
inside the functions that need them.
"""

from .errors import BackendError, ConfigError, InputError, MissingDependencyError, NegforgeError
from .schema import SCHEMA_VERSION, Negative, Passage, Provenance, Record, Source, Status, Verdict

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION",
    "Negative",
    "Passage",
    "Provenance",
    "Record",
    "Source",
    "Status",
    "Verdict",
    "NegforgeError",
    "InputError",
    "ConfigError",
    "BackendError",
    "MissingDependencyError",
]
