"""negforge: hard negatives for dense retrievers.

Everything ships under this one namespace: :mod:`negforge.synth` (LLM generation, verification,
the CLI), :mod:`negforge.mixers` (miners and the hybrid mixer), :mod:`negforge.trainer`
(training, evaluation, export) and :mod:`negforge.prompts` (the template sets). ``import negforge``
stays light: torch, faiss, vllm and sentence-transformers are imported only inside the functions
that need them.

The Python API (imported on first use, see :mod:`negforge.api`)::

    import negforge
    train = negforge.mine_hard_negatives(pairs, sources=("bm25", "dense"), num_negatives=4)  # datasets.Dataset
    records, dataset = negforge.read("pairs.csv")               # any input -> records
    records, report = negforge.mine(records, dataset, sources=["bm25"], num_negatives=8)
    records, report = negforge.verify(records, dataset, verifiers=["embedding"])
    negforge.export(records, "flagembedding", "train.jsonl")
"""

from .synth.errors import BackendError, ConfigError, InputError, MissingDependencyError, NegforgeError
from .synth.schema import SCHEMA_VERSION, Negative, Passage, Provenance, Record, Source, Status, Verdict

__version__ = "0.1.0"

# name -> "module:attribute", imported on first access (PEP 562) so that `import negforge` stays light
_LAZY = {
    **{
        name: "negforge.api:" + name
        for name in ("mine_hard_negatives", "read", "generate", "mine", "verify", "mix", "to_dataset", "export")
    },
    "read_input": "negforge.synth.inputs:read_input",
    "Dataset": "negforge.synth.data:Dataset",
    "Corpus": "negforge.synth.data:Corpus",
    "load_beir": "negforge.synth.data:load_beir",
    "GenerateConfig": "negforge.synth.config:GenerateConfig",
    "MineConfig": "negforge.synth.config:MineConfig",
    "VerifyConfig": "negforge.synth.config:VerifyConfig",
    "MixConfig": "negforge.synth.config:MixConfig",
    "ExportReport": "negforge.trainer.export:ExportReport",
}


def __getattr__(name: str):
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'negforge' has no attribute {name!r}")
    import importlib

    module, attr = target.split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    *_LAZY,
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
    "__version__",
]
