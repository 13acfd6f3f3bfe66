"""One root exception for negforge; user errors are also ValueErrors and say what to change."""


class NegforgeError(Exception):
    """Root of every error negforge raises on purpose."""


class InputError(NegforgeError, ValueError):
    """Bad input data: a malformed record, a missing file, an empty corpus.

    The message names the file and, where there is one, the line number.
    """


class ConfigError(NegforgeError, ValueError):
    """A bad configuration value; the message lists the valid choices."""


class BackendError(NegforgeError):
    """An LLM backend cannot be used at all (connection, missing package, bad model).

    Per-row failures (junk output, a refused request) never raise: the row comes back failed.
    """


class MissingDependencyError(NegforgeError, ImportError):
    """An optional package is not installed; the message says how to install it."""
