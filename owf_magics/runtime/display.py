"""Rich displays for results and plans, without the layers below the notebook importing it.

`RunResult` and `Plan` display through `mimebundle`; trace and usage frames are plain DataFrames,
and `frames_shown` asks a running IPython to display them (and only them) truncated. The
renderers live in the notebook layer (`owf_magics.notebook.views.hooks`) and are imported by name
on first use, the way built-in backends are: the engine and `import owf_magics` never load
IPython, ipywidgets or the views, and a result still displays richly in Jupyter.
"""

from __future__ import annotations

import importlib
from typing import Any

#: The module that renders (``mimebundle(obj)``, ``register_frames(shell)``).
RENDERERS = "owf_magics.notebook.views.hooks"


def _renderers() -> Any:
    return importlib.import_module(RENDERERS)


def mimebundle(obj: Any) -> dict[str, str]:
    """The notebook display of a `RunResult` or a `Plan` (text/plain, text/html...)."""
    bundle: dict[str, str] = _renderers().mimebundle(obj)
    return bundle


def frames_shown() -> None:
    """In an IPython shell, display the project's DataFrames (``attrs["owf"]``) through the views:
    head and tail, the run id once, a footer naming the variable. Other frames are untouched.

    A no-op outside IPython (nothing is imported), and after the first call in a shell.
    """
    import sys

    if "IPython" not in sys.modules:
        return
    shell = sys.modules["IPython"].get_ipython()
    if shell is None or getattr(shell, "_owf_frames", False):
        return
    _renderers().register_frames(shell)
