"""Views of a plan and a run: mermaid, graphviz DOT/SVG, HTML and text; tables; display objects.

Pure functions over the plan's neutral graph. Nothing here imports IPython; pandas is imported
only when a DataFrame is shown.
"""

from __future__ import annotations

from owf_magics.notebook.views.display import ResolutionView, RunView, summary_text
from owf_magics.notebook.views.graph import (
    StepState,
    dot_available,
    overlay_from_result,
    to_dot,
    to_mermaid,
    to_svg,
    to_text,
)
from owf_magics.notebook.views.graphview import GraphView
from owf_magics.notebook.views.settings import SETTINGS, DisplaySettings, deterministic_from_env
from owf_magics.notebook.views.tables import resolution_html, resolution_rows, resolution_text, shown_frame

__all__ = [
    "SETTINGS",
    "DisplaySettings",
    "GraphView",
    "ResolutionView",
    "RunView",
    "StepState",
    "deterministic_from_env",
    "dot_available",
    "overlay_from_result",
    "resolution_html",
    "resolution_rows",
    "resolution_text",
    "shown_frame",
    "summary_text",
    "to_dot",
    "to_mermaid",
    "to_svg",
    "to_text",
]
