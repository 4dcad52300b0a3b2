"""owf-magics: build, inspect and run OpenWorkflow manifests from Python, the CLI and Jupyter.

Importing the package is cheap: names load on first use, and nothing here imports IPython,
ipywidgets, pandas, graphviz or LangGraph.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .backends.base import Backend, BackendInfo, ExecutionContext
    from .backends.native import inline
    from .errors import (
        BackendError,
        CanceledError,
        Diagnostic,
        ManifestError,
        OWFError,
        StepTimeoutError,
        UnavailableError,
    )
    from .registry import OpenWorkflow, Workflow, Workflows
    from .resolution import Plan, PlanEntry

_EXPORTS = {
    "OpenWorkflow": "registry",
    "Workflow": "registry",
    "Workflows": "registry",
    "Plan": "resolution",
    "PlanEntry": "resolution",
    "Backend": "backends.base",
    "BackendInfo": "backends.base",
    "ExecutionContext": "backends.base",
    "OWFError": "errors",
    "ManifestError": "errors",
    "UnavailableError": "errors",
    "BackendError": "errors",
    "StepTimeoutError": "errors",
    "CanceledError": "errors",
    "Diagnostic": "errors",
    "inline": "backends.native",
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
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'owf_magics' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
