"""owf-magics: build, inspect and run OpenWorkflow manifests from Python, the CLI and Jupyter.

Importing the package is cheap: names load on first use, and nothing here imports IPython,
ipywidgets, pandas, graphviz or LangGraph.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from owf_magics._version import __version__

if TYPE_CHECKING:
    from owf_magics.api import OpenWorkflow, Workflow, Workflows
    from owf_magics.connectors.function import inline
    from owf_magics.errors import (
        BackendError,
        CanceledError,
        Diagnostic,
        ManifestError,
        OWFError,
        StepTimeoutError,
        UnavailableError,
    )
    from owf_magics.plan.resolution import Plan, PlanEntry
    from owf_magics.runtime.backend import Backend, BackendInfo, ExecutionContext

_EXPORTS = {
    "OpenWorkflow": "api",
    "Workflow": "api",
    "Workflows": "api",
    "Plan": "plan.resolution",
    "PlanEntry": "plan.resolution",
    "Backend": "runtime.backend",
    "BackendInfo": "runtime.backend",
    "ExecutionContext": "runtime.backend",
    "OWFError": "errors",
    "ManifestError": "errors",
    "UnavailableError": "errors",
    "BackendError": "errors",
    "StepTimeoutError": "errors",
    "CanceledError": "errors",
    "Diagnostic": "errors",
    "inline": "connectors.function",
}

__all__ = [
    "Backend",
    "BackendError",
    "BackendInfo",
    "CanceledError",
    "Diagnostic",
    "ExecutionContext",
    "ManifestError",
    "OWFError",
    "OpenWorkflow",
    "Plan",
    "PlanEntry",
    "StepTimeoutError",
    "UnavailableError",
    "Workflow",
    "Workflows",
    "__version__",
    "inline",
    "load_ipython_extension",
    "unload_ipython_extension",
]


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext owf_magics``: register ``%%workflow`` and ``%workflow`` (IPython loads only here)."""
    from owf_magics.notebook.magics import load_ipython_extension as load

    load(ip)


def unload_ipython_extension(ip: Any) -> None:
    """``%unload_ext owf_magics``: remove the magics, the ``OWF`` settings and the completer."""
    from owf_magics.notebook.magics import unload_ipython_extension as unload

    unload(ip)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'owf_magics' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
