"""Prompt templates are Jinja files, rendered in a sandboxed environment with ``StrictUndefined``: a
missing variable is an error, never an empty string.

A **template set** is a folder: one ``<step>.jinja2`` per step of its flow (``mar``: analyse, generate,
reflect; ``counterfactual``: requirements, rewrite, reflect) and a ``space.yaml`` (see
:mod:`negforge.synth.space`) naming the flow and declaring the attribute space and draft checks. The
built-in sets live under ``prompts/sets/``; ``generate.template`` names one of them or a folder of your
own (``template_dir``: a folder holding set folders, searched before the built-in ones). A set's identity
is its name plus the content hash of every file in it (templates and space together), which goes into
each negative's provenance and, through the rendered text, into the LLM cache key.

A set may also hold ``prefix.jinja2`` (:data:`PREFIX`), the **shared prefix**: rendered with the record's
``query``, ``positive`` and the ``profile`` only, it begins the prompt of every step of one record, and the step's
own template (its instruction and output format) follows after a blank line. Every step of a record then starts
with the same text, so a server's prompt cache (llama.cpp's, vLLM's prefix caching, OpenAI's) computes it once
per record. A set without it renders each step's template alone, as before.

Single templates outside sets (the LLM judge's ``judge.jinja2``) are rendered with :func:`render`.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from jinja2 import (
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
)
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from .errors import ConfigError
from .space import SPACE_FILE, SetSpace, load_space

SUFFIX = ".jinja2"
PREFIX = "prefix"  # the optional shared-prefix template of a set (prefix.jinja2)
PREFIX_VARS = ("query", "positive", "profile")  # all it is given: the same for every step of one record


def builtin_dir() -> Path:
    return Path(str(importlib.resources.files("negforge.prompts")))


def builtin_sets_dir() -> Path:
    return builtin_dir() / "sets"


def sets_in(folder: Path) -> list[str]:
    """Names of the set folders (holding a space.yaml) directly under ``folder``."""
    return sorted(p.name for p in folder.iterdir() if (p / SPACE_FILE).is_file()) if folder.is_dir() else []


def builtin_sets() -> list[str]:
    return sets_in(builtin_sets_dir())


@lru_cache(maxsize=32)
def _env(folder: str) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=FileSystemLoader(folder),
        undefined=StrictUndefined,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["tojson_compact"] = lambda v: json.dumps(v, ensure_ascii=False)
    return env


def _render_file(folder: Path, file: str, label: str, variables: dict[str, Any]) -> str:
    path = folder / file
    try:
        return _env(str(folder)).get_template(file).render(**variables).strip()
    except UndefinedError as e:
        raise ConfigError(f"{_where(e, path)}: template {label!r}: {e.message}; pass it when rendering") from None
    except TemplateNotFound as e:
        raise ConfigError(f"{path}: template {label!r} includes missing template {e.name!r}") from None
    except TemplateSyntaxError as e:
        raise ConfigError(f"{folder / (e.name or file)}:{e.lineno}: template syntax error: {e.message}") from None
    except SecurityError as e:
        raise ConfigError(
            f"{_where(e, path)}: template {label!r} does what the sandbox forbids ({e}); "
            "templates may only read the variables they are given"
        ) from None
    except TemplateError as e:
        raise ConfigError(f"{_where(e, path)}: template {label!r} failed: {e}") from None


def _where(e: BaseException, path: Path) -> str:
    """``file:line`` of the template frame an error was raised in (Jinja maps frames to template lines)."""
    tb, where = e.__traceback__, str(path)
    while tb is not None:
        fname = tb.tb_frame.f_code.co_filename
        if fname.endswith(SUFFIX):
            where = f"{fname}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


def render(name: str, template_dir: Optional[str | Path] = None, **variables: Any) -> str:
    """Render the single template ``<name>.jinja2`` (built-in ``prompts/`` or ``template_dir``)."""
    folder = Path(template_dir) if template_dir else builtin_dir()
    if not (folder / f"{name}{SUFFIX}").is_file():
        have = sorted(p.name[: -len(SUFFIX)] for p in folder.glob(f"*{SUFFIX}"))
        raise ConfigError(f"no template {name!r} in {folder}; available: {', '.join(have) or 'none'}")
    return _render_file(folder, f"{name}{SUFFIX}", name, variables)


def set_folder(spec: str, template_dir: Optional[str | Path] = None) -> Path:
    """The folder of set ``spec``: ``template_dir/spec``, a folder path, or a built-in set name."""
    if template_dir and (Path(template_dir) / spec / SPACE_FILE).is_file():
        return Path(template_dir) / spec
    path = Path(spec)
    if path.is_dir():
        return path
    if (builtin_sets_dir() / spec / SPACE_FILE).is_file() and "/" not in spec:
        return builtin_sets_dir() / spec
    where = f"in {template_dir} ({', '.join(sets_in(Path(template_dir))) or 'no sets'}) or " if template_dir else ""
    raise ConfigError(
        f"no template set {spec!r}: give a folder holding <step>.jinja2 files and a {SPACE_FILE}, "
        f"or a set {where}built in: {', '.join(builtin_sets())}"
    )


def folder_hash(folder: Path) -> str:
    """Content hash (12 hex) of a set: every template and the space file, by name, in name order."""
    h = hashlib.sha256()
    for p in sorted([*folder.glob(f"*{SUFFIX}"), folder / SPACE_FILE]):
        if p.is_file():
            h.update(p.name.encode() + b"\x00" + p.read_bytes() + b"\x01")
    return h.hexdigest()[:12]


class TemplateSet:
    """A template set folder, validated on load: its space, its flow's step templates (parsed), its hash."""

    def __init__(self, spec: str = "mar", template_dir: Optional[str] = None):
        from .flows import flow_class

        self.spec, self.template_dir = spec, template_dir
        self.folder = set_folder(spec, template_dir)
        self.name = self.folder.resolve().name
        space_path = self.folder / SPACE_FILE
        flow = load_space(space_path).flow  # validates; the flow's needs are checked below
        try:
            cls = flow_class(flow)
        except ConfigError as e:
            raise ConfigError(f"{space_path}: key 'flow': {e}") from None
        self.space: SetSpace = load_space(space_path, cls.REQUIRED_SPACE)
        self.flow, self.steps = flow, tuple(cls.STEPS)
        missing = [s for s in self.steps if not (self.folder / f"{s}{SUFFIX}").is_file()]
        if missing:
            raise ConfigError(
                f"{self.folder}: the {flow!r} flow needs {', '.join(s + SUFFIX for s in missing)} "
                f"(steps: {', '.join(self.steps)})"
            )
        self.has_prefix = (self.folder / f"{PREFIX}{SUFFIX}").is_file()
        for s in self.steps + (
            (PREFIX,) if self.has_prefix else ()
        ):  # syntax errors now, with the file and line, not at the first render
            try:
                _env(str(self.folder)).get_template(f"{s}{SUFFIX}")
            except TemplateSyntaxError as e:
                raise ConfigError(
                    f"{self.folder / (e.name or s + SUFFIX)}:{e.lineno}: template syntax error: {e.message}"
                ) from None
        self.hash = folder_hash(self.folder)

    @property
    def builtin(self) -> bool:
        return self.folder.resolve().parent == builtin_sets_dir().resolve()

    def files(self) -> list[str]:
        prefix = [f"{PREFIX}{SUFFIX}"] if self.has_prefix else []
        return prefix + [f"{s}{SUFFIX}" for s in self.steps] + [SPACE_FILE]

    def render(self, step: str, **variables: Any) -> str:
        if step not in self.steps:
            raise ConfigError(f"set {self.name!r} has no step {step!r}; steps: {', '.join(self.steps)}")
        return _render_file(self.folder, f"{step}{SUFFIX}", f"{self.name}/{step}", variables)

    def render_prefix(self, **variables: Any) -> str:
        """The shared prefix for one record (``query``, ``positive``, ``profile``; the rest is not passed)."""
        shared = {k: variables[k] for k in PREFIX_VARS if k in variables}
        return _render_file(self.folder, f"{PREFIX}{SUFFIX}", f"{self.name}/{PREFIX}", shared)

    def render_prompt(self, step: str, **variables: Any) -> str:
        """The whole prompt of ``step``: the shared prefix (when the set has one), a blank line, the step's part."""
        body = self.render(step, **variables)
        if not self.has_prefix:
            return body
        prefix = self.render_prefix(**variables)
        return f"{prefix}\n\n{body}" if body else prefix

    def __repr__(self) -> str:
        return f"TemplateSet({self.name!r}, flow={self.flow!r}, folder={str(self.folder)!r}, hash={self.hash!r})"
