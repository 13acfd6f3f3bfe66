"""Logging and progress-bar settings for the CLI: ``-q`` quiets us and the libraries, ``-v`` shows debug.

The library only logs (``logging.getLogger(__name__)``) and draws tqdm bars; the CLI calls
:func:`configure` once per command. Lines read as ``12:03:04 mined 20 records ...``; warnings say
``warning:``; ``-v`` adds the level and the logger name.
"""

from __future__ import annotations

import logging
import os
import sys

# Libraries whose INFO lines (one per HTTP request, model load or index build) drown the stage logs.
NOISY = (
    "httpx",
    "httpx2",
    "httpcore",
    "openai",
    "urllib3",
    "filelock",
    "fsspec",
    "faiss",
    "bm25s",
    "datasets",
    "sentence_transformers",
    "transformers",
    "huggingface_hub",
    "matplotlib",
    "PIL",
    "accelerate",
    "torch",
)
# Environment switches the Hugging Face libraries and tqdm read when they are imported.
QUIET_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "DATASETS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TQDM_DISABLE": "1",
}


_SET: dict[str, bool] = {}  # the QUIET_ENV keys we set (and may unset)


class _Formatter(logging.Formatter):
    def __init__(self, verbose: bool) -> None:
        super().__init__(datefmt="%H:%M:%S")
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info and self.verbose:
            msg += "\n" + self.formatException(record.exc_info)
        when = self.formatTime(record, self.datefmt)
        if self.verbose:
            return f"{when} {record.levelname} {record.name}: {msg}"
        if record.levelno >= logging.WARNING:
            return f"{when} {record.levelname.lower()}: {msg}"
        return f"{when} {msg}"


class _NoisyFilter(logging.Filter):
    """Drops other libraries' records below ``level`` (WARNING; ERROR with -q; INFO with -v): on the
    handler, so it holds for loggers we do not know by name and for those (bm25s) that set their own
    level to DEBUG when imported, after any level we could set."""

    def __init__(self) -> None:
        super().__init__()
        self.level = logging.WARNING

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level or record.name.split(".")[0] == "negforge"


class _StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (so a test runner's capture sees it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure(quiet: bool = False, verbose: bool = False) -> None:
    """Set our log level (WARNING with ``quiet``, DEBUG with ``verbose``, else INFO), keep the noisy
    libraries at WARNING, and with ``quiet`` also turn off the Hugging Face libraries' and tqdm's bars."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        root.addHandler(handler)
    handler.setFormatter(_Formatter(verbose))
    noisy = next((f for f in handler.filters if isinstance(f, _NoisyFilter)), None)
    if noisy is None:
        noisy = _NoisyFilter()
        handler.addFilter(noisy)
    noisy.level = logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    logging.getLogger("negforge").setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING)
    if quiet:
        silence_libraries()
    else:  # an earlier quiet command in this process must not keep the bars off
        for k, v in QUIET_ENV.items():
            if os.environ.get(k) == v and _SET.pop(k, False):
                del os.environ[k]


def silence_libraries() -> None:
    """No progress bars or advisory logs from transformers, datasets, huggingface_hub, tqdm users."""
    for k, v in QUIET_ENV.items():
        if k not in os.environ:
            os.environ[k] = v
            _SET[k] = True
    # Already imported (e.g. in a test process): their switches were read at import, so call them.
    if "transformers" in sys.modules:
        try:
            from transformers.utils import logging as tlog

            tlog.set_verbosity_error()
            tlog.disable_progress_bar()
        except Exception:  # noqa: BLE001 - an old transformers without these switches
            pass
    if "datasets" in sys.modules:
        try:
            import datasets

            datasets.disable_progress_bars()
            datasets.logging.set_verbosity_error()
        except Exception:  # noqa: BLE001
            pass
    if "huggingface_hub" in sys.modules:
        try:
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()
        except Exception:  # noqa: BLE001
            pass
