"""Rich displays for results and plans, without the layers below the notebook importing it.

`RunResult`, its trace and usage frames, and `Plan` display through the two functions here. The
renderers live in the notebook layer (`owf_magics.notebook.views.hooks`) and are imported by name
on first use, the way built-in backends are: the engine and `import owf_magics` never load
IPython, ipywidgets or the views, and a result still displays richly in Jupyter.
"""

from __future__ import annotations

import importlib
from typing import Any

#: The module that renders (``mimebundle(obj)``, ``shown_frame(frame, name)``).
RENDERERS = "owf_magics.notebook.views.hooks"


def _renderers() -> Any:
    return importlib.import_module(RENDERERS)


def mimebundle(obj: Any) -> dict[str, str]:
    """The notebook display of a `RunResult` or a `Plan` (text/plain, text/html...)."""
    bundle: dict[str, str] = _renderers().mimebundle(obj)
    return bundle


def shown_frame(frame: Any, name: str) -> Any:
    """A trace or usage DataFrame that displays truncated, with a footer saying how to see it all."""
    return _renderers().shown_frame(frame, name)
