"""Generation flows by name. A flow turns a batch of records into records with LLM negatives, calling
the backend once per step over every row that needs it; it declares the steps its template set needs
(``STEPS``, one ``<step>.jinja2`` each) and the ``space.yaml`` keys it reads (``REQUIRED_SPACE``).

* ``mar``: multi-attribute self-reflection (analyse -> generate -> reflect), :class:`~negforge.synth.mar.MarFlow`;
* ``counterfactual``: break one information requirement of the positive at a time (requirements ->
  rewrite -> reflect), :class:`~negforge.synth.counterfactual.CounterfactualFlow`.

Both share the backends, reply parsing, re-asks, the LLM cache, resume and the prompt tools. A set's
``space.yaml`` says which flow it drives (``flow:``); register your own with :func:`register_flow`.
"""

from __future__ import annotations

from typing import Any, Optional

from .registry import Registry

FLOWS: Registry = Registry("flow")
FLOWS.register("mar", "negforge.synth.mar:MarFlow")
FLOWS.register("counterfactual", "negforge.synth.counterfactual:CounterfactualFlow")


def register_flow(name: str, target: Any) -> None:
    """``target``: a flow class (or "module:Class") with ``STEPS``, ``REQUIRED_SPACE`` and the MarFlow constructor."""
    FLOWS.register(name, target)


def flow_class(name: str) -> Any:
    return FLOWS.get(name)


def make_flow(backend: Any, cfg: Any, summary: Any, profile: Optional[Any] = None) -> Any:
    """The flow that ``cfg.template``'s set names, built over ``backend``."""
    from .templates import TemplateSet

    ts = TemplateSet(cfg.template, cfg.template_dir)
    return flow_class(ts.flow)(backend, cfg, summary, templates=ts, profile=profile)
