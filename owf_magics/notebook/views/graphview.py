"""`GraphView`: a plan's graph in every form a front end may draw, and in files.

The HTML form puts the backend legend on top, the drawing in a scroll container with zoom buttons
(wide or tall graphs scroll instead of shrinking to nothing), and each sub-workflow drawn closed in
a collapsible ``<details>`` below it — the same HTML the live run view shows. `GraphView.save`
writes ``.svg``, ``.png`` (both through graphviz's ``dot``), ``.mmd``, ``.dot`` or ``.html``.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from owf_magics.errors import OWFError, UnavailableError, did_you_mean
from owf_magics.notebook.views.graph import (
    Overlay,
    backend_colours,
    run_dot,
    to_dot,
    to_mermaid,
    to_svg,
    to_text,
)
from owf_magics.notebook.views.scene import build_scene
from owf_magics.notebook.views.settings import SETTINGS

if TYPE_CHECKING:
    import os

    from owf_magics.notebook.views.scene import SubPlans
    from owf_magics.plan.resolution import Plan

MERMAID_MIME = "text/vnd.mermaid"
#: What `GraphView.save` writes, by file suffix.
SAVE_FORMATS = {".svg": "svg", ".png": "png", ".mmd": "mermaid", ".mermaid": "mermaid", ".dot": "dot"}
SAVE_FORMATS |= {".gv": "dot", ".html": "html", ".txt": "text"}
GRAPHVIZ_HINT = (
    "graphviz's dot is not installed: install it (apt-get install graphviz, brew install graphviz, "
    "conda install graphviz), or save the graph as .mmd or .dot, which need nothing"
)

#: What a `GraphView` made without ``xray``/``show_reasons`` uses (the magics set them per cell).
GRAPH_OPTIONS: dict[str, Any] = {"xray": False, "show_reasons": False}


@contextmanager
def graph_options(xray: bool | int | None = None, show_reasons: bool | None = None) -> Iterator[None]:
    """Within the block, graph views made without options open sub-workflows / show reasons so."""
    saved = dict(GRAPH_OPTIONS)
    if xray is not None:
        GRAPH_OPTIONS["xray"] = xray
    if show_reasons is not None:
        GRAPH_OPTIONS["show_reasons"] = show_reasons
    try:
        yield
    finally:
        GRAPH_OPTIONS.update(saved)


# zoom buttons: scale the drawing inside its scroll container (CSS zoom keeps scrolling right)
_ZOOM_JS = (
    "var c=this.closest('.owf-graph').querySelector('.owf-graph-canvas');"
    "var z=parseFloat(c.dataset.zoom||'1');z={};c.dataset.zoom=z;c.style.zoom=z;"
)
_BUTTON = (
    '<button type="button" title="{title}" onclick="{js}" '
    'style="font-size:11px;padding:0 6px;margin-left:2px;cursor:pointer">{text}</button>'
)


class GraphView:
    """The plan's graph (with a run's overlay when given) in every form a front end may draw.

    Args:
        plan: The workflow's plan.
        overlay: Per-step states from a run (see `overlay_from_result`).
        svg: Include graphviz SVG when ``dot`` exists (default: the display settings, on).
        direction: ``TD``, ``LR`` or ``auto`` (left-to-right when the graph is tall and narrow).
        xray: Open sub-workflows in place: False (closed: the HTML view lists them, collapsible,
            below the graph), True (every level) or a number of levels (default: `GRAPH_OPTIONS`).
        show_reasons: Write why each step's backend was chosen in its label (always on hover).
        subplans: Finds a workflow step's child plan (default: the plans the registry cached).
    """

    def __init__(
        self,
        plan: Plan,
        overlay: Overlay | None = None,
        *,
        svg: bool | None = None,
        direction: str = "auto",
        xray: bool | int | None = None,
        show_reasons: bool | None = None,
        subplans: SubPlans | None = None,
    ) -> None:
        self.plan = plan
        self.overlay = overlay
        self.svg = SETTINGS.svg if svg is None else svg
        self.direction = direction
        self.xray: bool | int = GRAPH_OPTIONS["xray"] if xray is None else xray
        self.show_reasons: bool = GRAPH_OPTIONS["show_reasons"] if show_reasons is None else show_reasons
        self.subplans = subplans

    def _kw(self) -> dict[str, Any]:
        return {"xray": self.xray, "show_reasons": self.show_reasons, "subplans": self.subplans}

    def mermaid(self) -> str:
        return to_mermaid(self.plan, self.overlay, direction=self.direction, **self._kw())

    def dot(self) -> str:
        return to_dot(self.plan, self.overlay, rankdir=self.direction, **self._kw())

    def svg_text(self) -> str | None:
        if not self.svg:
            return None
        return to_svg(self.plan, self.overlay, rankdir=self.direction, **self._kw())

    def text(self) -> str:
        return to_text(self.plan, self.overlay, **self._kw())

    def png(self) -> bytes:
        """The graph as PNG through ``dot -Tpng``.

        Raises:
            UnavailableError: graphviz's ``dot`` is not installed (or failed).
        """
        data = run_dot(self.dot(), "png")
        if data is None:
            raise UnavailableError(GRAPHVIZ_HINT, details={"missing": "graphviz", "format": "png"})
        return data

    def html(self) -> str:
        svg = self.svg_text()
        if svg is not None:  # at its own size (front ends shrink images to the page): the container scrolls
            body = svg.replace("<svg ", '<svg style="max-width:none" ', 1)
            note = ""
        else:
            body = f'<pre class="owf-mermaid">{html.escape(self.mermaid())}</pre>'
            note = (
                "<p><small>graphviz's <code>dot</code> is not installed, so this is the graph's mermaid text; "
                "JupyterLab draws the text/vnd.mermaid output of the same value.</small></p>"
            )
        return (
            f'<div class="owf-graph">{_legend(self.plan, self.overlay is not None)}'
            '<div class="owf-graph-scroll" style="overflow:auto;contain:inline-size;max-width:100%;max-height:560px;'
            'border:1px solid #e5e7eb;border-radius:4px;resize:vertical">'
            f'<div class="owf-graph-canvas">{body}</div></div>{note}{self._closed_html()}</div>'
        )

    def _closed_html(self) -> str:
        """A collapsible drawing of each sub-workflow drawn closed in this graph."""
        parts = []
        for node in build_scene(self.plan, xray=self.xray, subplans=self.subplans).closed():
            child = node.child
            assert child is not None  # closed() returns only nodes with a child plan
            prefix = node.full_id + "/"
            overlay = None
            if self.overlay is not None:
                overlay = {k[len(prefix) :]: v for k, v in self.overlay.items() if k.startswith(prefix)}
            view = GraphView(
                child,
                overlay,
                svg=self.svg,
                direction=self.direction,
                show_reasons=self.show_reasons,
                subplans=self.subplans,
            )
            n = len(child)
            parts.append(
                f'<details class="owf-subworkflow"><summary>▸ sub-workflow <b>{html.escape(node.full_id)}</b> '
                f"→ {html.escape(child.workflow)} v{html.escape(child.version)} ({n} step{'s' if n != 1 else ''})"
                f"</summary>{view.html()}</details>"
            )
        return "".join(parts)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the graph to a file; its suffix picks the form (.svg, .png, .mmd, .dot, .html, .txt).

        ``.svg`` and ``.png`` are drawn by graphviz's ``dot``.

        Returns:
            The path written.

        Raises:
            UnavailableError: ``.svg``/``.png`` without graphviz (the message says what to install).
            OWFError: An unknown suffix (code VALIDATION; the message lists the known ones).
        """
        target = Path(path)
        fmt = SAVE_FORMATS.get(target.suffix.lower())
        if fmt is None:
            known = sorted(SAVE_FORMATS)
            best = did_you_mean(target.suffix.lower(), known)
            hint = f" Did you mean '{best}'?" if best else ""
            raise OWFError(
                f"cannot save a graph as {target.suffix or 'a file without a suffix'!r}: "
                f"use one of {', '.join(known)}.{hint}",
                code="VALIDATION",
                details={"path": str(target), "formats": known},
            )
        data = self.render(fmt)
        if isinstance(data, bytes):
            target.write_bytes(data)
        else:
            target.write_text(data, encoding="utf-8")
        return target

    def render(self, fmt: str) -> str | bytes:
        """The graph as ``svg``, ``png``, ``mermaid``, ``dot``, ``html`` or ``text``.

        Raises:
            UnavailableError: ``svg``/``png`` without graphviz.
        """
        if fmt == "png":
            return self.png()
        if fmt == "svg":
            svg = to_svg(self.plan, self.overlay, rankdir=self.direction, **self._kw())
            if svg is None:
                raise UnavailableError(GRAPHVIZ_HINT, details={"missing": "graphviz", "format": "svg"})
            return '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n' + svg
        if fmt == "html":
            return f"<!doctype html>\n<meta charset='utf-8'>\n{self.html()}\n"
        renderers = {"mermaid": self.mermaid, "dot": self.dot, "text": self.text}
        if fmt not in renderers:
            raise OWFError(f"unknown graph format {fmt!r}", code="VALIDATION")
        return renderers[fmt]()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        bundle = {"text/plain": self.text(), MERMAID_MIME: self.mermaid(), "text/html": self.html()}
        svg = self.svg_text()
        if svg is not None:
            bundle["image/svg+xml"] = svg
        return bundle

    def __repr__(self) -> str:
        return self.text()


def _legend(plan: Plan, run: bool = False) -> str:
    """The legend above the graph: backend colours, what a border means, and the zoom buttons."""
    items = []
    for name in plan.backends_used():
        fill, stroke = backend_colours(name)
        items.append(
            f'<span style="background:{fill};border:1px solid {stroke};padding:0 6px;margin-right:6px">'
            f"{html.escape(name)}</span>"
        )
    zoom = "".join(
        _BUTTON.format(title=title, text=text, js=_ZOOM_JS.format(expr))
        for title, text, expr in (("zoom out", "−", "z/1.25"), ("actual size", "1:1", "1"), ("zoom in", "+", "z*1.25"))
    )
    border = " · border: the step's status" if run else ""
    return (
        f'<div class="owf-legend"><small>backends: {"".join(items)}{border} · '
        f"hover a step for why its backend</small>{zoom}</div>"
    )
