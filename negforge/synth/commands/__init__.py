"""CLI command modules, one per command (named like it); each exposes ``register(app)``.
Listed here in help order."""

MODULES = [
    "run",
    "generate",
    "merge",
    "prompt",
    "verify",
    "verifier",
    "fn_report",
    "shortcut",
    "mine",
    "mix",
    "export",
    "clicklog",
    "train",
    "eval",
    "report",
]
