"""The renderers `owf_magics.runtime.display` loads by name: results and plans as notebook displays."""

from __future__ import annotations

from typing import Any

from owf_magics.notebook.views.display import ResolutionView, RunView
from owf_magics.notebook.views.graphview import GraphView
from owf_magics.notebook.views.tables import register_frames
from owf_magics.plan.resolution import Plan
from owf_magics.runtime.results import RunResult

__all__ = ["mimebundle", "register_frames"]


def mimebundle(obj: Any) -> dict[str, str]:
    """A `RunResult` as its run view; a `Plan` as its graph above its resolution table."""
    if isinstance(obj, RunResult):
        bundle: dict[str, str] = RunView(obj)._repr_mimebundle_()
        return bundle
    if isinstance(obj, Plan):
        graph, table = GraphView(obj)._repr_mimebundle_(), ResolutionView(obj)._repr_mimebundle_()
        return {k: graph[k] + table[k] for k in ("text/plain", "text/html")}
    raise TypeError(f"no notebook display for {type(obj).__name__}")
