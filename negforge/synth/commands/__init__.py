"""CLI command modules; each exposes ``register(app)``. Listed here in help order."""
MODULES = ["run", "generate", "prompt", "verify", "mine", "train"]
