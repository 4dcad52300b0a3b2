"""The plan's graph as mermaid text, graphviz DOT (and SVG/PNG through ``dot``) and plain text.

Every renderer walks the same `Scene` (owf_magics.notebook.views.scene): nodes are coloured by the
backend that resolved for them (Okabe-Ito colours, see `palette`) and shaped by step type; the blocks
of branches, loops and try steps become groups, and so do sub-workflows opened by ``xray``. Node ids
in the output are positional (``n0``, ``n1``, ``n3_0``...), so step ids with spaces, quotes or
non-ASCII characters only ever appear inside escaped labels. Each step says why its backend was
chosen on hover (the SVG's ``<title>``, a mermaid tooltip) and, with ``show_reasons``, in its label.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from owf_magics.notebook.views.palette import BUILT_IN, backend_colours
from owf_magics.notebook.views.pattern_groups import dot_members, mermaid_members, text_members
from owf_magics.notebook.views.scene import ROOT, Scene, SceneNode, SubPlans, build_scene
from owf_magics.notebook.views.settings import SETTINGS
from owf_magics.runtime.results import plural

if TYPE_CHECKING:
    from owf_magics.plan.resolution import Plan
    from owf_magics.runtime.results import RunResult

__all__ = ["ROOT", "backend_colours"]

#: Fill and stroke colours of the built-in backends (other names: see `palette.backend_colours`).
BACKEND_COLOURS: dict[str, tuple[str, str]] = {name: backend_colours(name) for name in BUILT_IN}
#: Border colours of a step's status once a run has started.
STATUS_COLOURS = {
    "success": "#16a34a",
    "failed": "#dc2626",
    "running": "#2563eb",
    "waiting": "#d97706",
    "skipped": "#9ca3af",
    "canceled": "#6b7280",
}
# mermaid node shape (open, close) and graphviz shape per step type
_MERMAID_SHAPES = {
    "agent": ('(["', '"])'),
    "handoff": ('>"', '"]'),
    "action": ('["', '"]'),
    "workflow": ('[["', '"]]'),
    "if": ('{"', '"}'),
    "switch": ('{"', '"}'),
    "forEach": ('{{"', '"}}'),
    "parallel": ('[/"', '"/]'),
    "try": ('[/"', '"\\]'),
    "wait": ('(("', '"))'),
    "transform": ('("', '")'),
}
_DOT_SHAPES = {
    "agent": ("box", "rounded,filled"),
    "handoff": ("cds", "filled"),
    "action": ("box", "filled"),
    "workflow": ("component", "filled"),
    "if": ("diamond", "filled"),
    "switch": ("diamond", "filled"),
    "forEach": ("hexagon", "filled"),
    "parallel": ("parallelogram", "filled"),
    "try": ("trapezium", "filled"),
    "wait": ("ellipse", "filled"),
    "transform": ("note", "filled"),
}


@dataclass(frozen=True, slots=True)
class StepState:
    """What a run overlays on one node: status, duration and tokens (summed over iterations)."""

    status: str
    duration_ms: float | None = None
    tokens: int = 0
    attempts: int = 0

    def caption(self, deterministic: bool | None = None) -> str:
        """``success · 12 ms · 56 tokens`` (no duration in deterministic mode)."""
        det = SETTINGS.deterministic if deterministic is None else deterministic
        parts = [self.status]
        if self.duration_ms is not None and not det:
            parts.append(f"{self.duration_ms:.0f} ms")
        if self.tokens:
            parts.append(f"{self.tokens} tokens")
        if self.attempts > 1:  # retried: every attempt is a trace row
            parts.append(f"{self.attempts} attempts")
        return " · ".join(parts)


Overlay = Mapping[str, StepState]


def overlay_from_result(result: RunResult) -> dict[str, StepState]:
    """Per-step status, total duration and tokens of a finished run (iterations summed)."""
    durations: dict[str, float] = {}
    tokens: dict[str, int] = {}
    for row in result.trace_rows:
        sid = str(row.get("step_id"))
        if row.get("status") == "skipped":
            continue
        durations[sid] = durations.get(sid, 0.0) + float(row.get("duration_ms") or 0.0)
        tokens[sid] = tokens.get(sid, 0) + int(row.get("total_tokens") or 0)
    out = {
        sid: StepState(s.status, durations.get(sid), tokens.get(sid, 0), s.attempts) for sid, s in result.steps.items()
    }
    out.update(_inner_states(result, durations, tokens, out))
    return out


def _inner_states(
    result: RunResult, durations: dict[str, float], tokens: dict[str, int], known: Mapping[str, StepState]
) -> dict[str, StepState]:
    """States of the steps inside sub-workflows (``call/double``), which only the trace rows name."""
    status: dict[str, str] = {}
    attempts: dict[str, int] = {}
    for row in result.trace_rows:
        sid = str(row.get("step_id"))
        if sid in known or "/" not in sid:
            continue
        status[sid] = str(row.get("status"))
        attempts[sid] = attempts.get(sid, 0) + 1
    return {sid: StepState(st, durations.get(sid), tokens.get(sid, 0), attempts[sid]) for sid, st in status.items()}


def node_ids(plan: Plan) -> dict[str, str]:
    """Positional, syntax-safe ids (``n0``...) for every step, in graph order."""
    return {sid: f"n{i}" for i, sid in enumerate(plan.graph.topological())}


def _backend(node: SceneNode) -> str:
    entry = node.plan.entries.get(node.sid)
    return entry.backend if entry is not None else "native"


def _label_lines(node: SceneNode, overlay: Overlay | None, deterministic: bool | None, reasons: bool) -> list[str]:
    gnode = node.plan.graph.nodes[node.sid]
    entry = node.plan.entries.get(node.sid)
    lines = [gnode.label if gnode.label == node.sid else f"{gnode.label} ({node.sid})"]
    second = gnode.type
    if entry is not None:
        second += f" · {entry.backend}"
        if not entry.available:
            second += " (not installed)"
    lines.append(second)
    if reasons and entry is not None:
        lines.append(f"why: {entry.reason}")
    if node.child is not None and not node.opened:
        n = len(node.child)
        lines.append(f"▸ {node.child.workflow}: {n} step{'s' if n != 1 else ''}")
    if overlay is not None and node.full_id in overlay:
        lines.append(overlay[node.full_id].caption(deterministic))
    return lines


def tooltip(node: SceneNode, overlay: Overlay | None = None, deterministic: bool | None = None) -> str:
    """What hovering a step says: its id and type, its backend and why that backend, its state."""
    gnode = node.plan.graph.nodes[node.sid]
    entry = node.plan.entries.get(node.sid)
    lines = [f"{node.full_id} · {gnode.type}"]
    if entry is not None:
        # the reason in words where the plan has them (``explanation``), else its short form
        why = f"backend {entry.backend}: {getattr(entry, 'explanation', None) or entry.reason}"
        if not entry.available:
            why += f" (not installed; missing {', '.join(entry.missing) or entry.backend})"
        lines.append(why)
    if node.child is not None:
        state = "drawn closed (xray opens it)" if not node.opened else "drawn below"
        n = len(node.child)
        steps = f"{n} step{'s' if n != 1 else ''}"
        lines.append(f"sub-workflow {node.child.workflow} v{node.child.version}: {steps}, {state}")
    if overlay is not None and node.full_id in overlay:
        lines.append(overlay[node.full_id].caption(deterministic))
    return "\n".join(lines)


def _gnums(scene: Scene) -> dict[str, int]:
    """Positional numbers of the groups, in drawing order."""
    out: dict[str, int] = {}
    for kind, name, _ in scene.events:
        if kind == "open":
            out[name] = len(out)
    return out


# -- mermaid ------------------------------------------------------------------------------------


def mermaid_escape(text: str) -> str:
    """Escape text for a quoted mermaid label (quotes, ``#``, angle brackets and ampersands)."""
    table = {'"': "#quot;", "#": "#35;", "<": "#lt;", ">": "#gt;", "&": "#amp;", "\n": " "}
    return "".join(table.get(ch, ch) for ch in text)


def to_mermaid(
    plan: Plan,
    overlay: Overlay | None = None,
    *,
    direction: str = "auto",
    deterministic: bool | None = None,
    xray: bool | int = False,
    show_reasons: bool = False,
    subplans: SubPlans | None = None,
) -> str:
    """The plan's graph as a mermaid ``flowchart`` (JupyterLab draws it without the network).

    Args:
        plan: A workflow's plan.
        overlay: Step states from a run (status, duration, tokens), drawn on the nodes.
        direction: ``TD`` (top-down), ``LR``, or ``auto`` (LR when the graph is tall and narrow).
        deterministic: Hide durations (default: the display settings).
        xray: Open sub-workflows: False (closed), True (every level) or a number of levels.
        show_reasons: Add why each step's backend was chosen to its label (it is always in the tooltip).
        subplans: Finds a workflow step's child plan (default: the registry's cached plans).
    """
    scene = build_scene(plan, xray=xray, subplans=subplans)
    lines = [f"flowchart {scene.direction(direction)}"]
    depth = 1
    gnums = _gnums(scene)
    for kind, name, label in scene.events:
        pad = "    " * depth
        if kind == "node":
            node = scene.nodes[name]
            opener, closer = _MERMAID_SHAPES.get(node.plan.graph.nodes[node.sid].type, ('["', '"]'))
            text = "<br/>".join(mermaid_escape(t) for t in _label_lines(node, overlay, deterministic, show_reasons))
            lines.append(f"{pad}{node.did}{opener}{text}{closer}")
            lines += mermaid_members(node.plan.graph.nodes[node.sid], node.did, pad, mermaid_escape)  # agents
        elif kind == "open":
            lines.append(f'{pad}subgraph g{gnums[name]}["{mermaid_escape(label)}"]')
            depth += 1
        else:
            depth -= 1
            lines.append(f"{'    ' * depth}end")
    ids = {full: n.did for full, n in scene.nodes.items()}
    for source, target, kind in scene.edges:
        arrow = "-.->" if kind == "order" else "-->"
        lines.append(f"    {ids[source]} {arrow} {ids[target]}")
    for owner, first, label in scene.entries:
        lines.append(f'    {ids[owner]} -.->|"{mermaid_escape(label)}"| {ids[first]}')
    by_backend: dict[str, list[str]] = {}
    for node in scene.nodes.values():
        by_backend.setdefault(_backend(node), []).append(node.did)
    for b in sorted(by_backend):
        fill, stroke = backend_colours(b)
        lines.append(f"    classDef be_{_css_name(b)} fill:{fill},stroke:{stroke},color:#111827")
    for b in sorted(by_backend):
        lines.append(f"    class {','.join(by_backend[b])} be_{_css_name(b)}")
    for full, node in scene.nodes.items():
        entry = node.plan.entries.get(node.sid)
        styles = []
        if entry is not None and not entry.available:
            styles.append("stroke-dasharray:5 5")
        if overlay is not None and full in overlay and overlay[full].status in STATUS_COLOURS:
            styles.append(f"stroke:{STATUS_COLOURS[overlay[full].status]},stroke-width:3px")
        if styles:
            lines.append(f"    style {node.did} {','.join(styles)}")
    for node in scene.nodes.values():  # the tooltip (mermaid shows it on hover when clicks are allowed)
        tip = tooltip(node, overlay, deterministic).replace('"', "'").replace("\n", " · ")
        tip = tip.replace("<", "‹").replace(">", "›")  # mermaid reads a tooltip as HTML
        lines.append(f'    click {node.did} callback "{tip}"')
    return "\n".join(lines) + "\n"


def _css_name(name: str) -> str:
    return "".join(ch if ch.isascii() and ch.isalnum() else "_" for ch in name)


# -- graphviz -----------------------------------------------------------------------------------


def dot_escape(text: str) -> str:
    """Escape text for a double-quoted DOT string (backslashes, quotes, newlines)."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _dot_legend(title: str, backends: list[str]) -> str:
    """The graph's label: its title over a row of backend colour swatches (an HTML-like label, on top)."""
    cells = ""
    for b in backends:
        fill, stroke = backend_colours(b)
        cells += f'<td bgcolor="{fill}" color="{stroke}" border="1">&nbsp;{html.escape(b)}&nbsp;</td>'

    return (
        f'<<table border="0" cellspacing="4" cellpadding="2"><tr><td colspan="{len(backends) + 1}">'
        f"<b>{html.escape(title)}</b></td></tr><tr><td>backends:</td>{cells}</tr></table>>"
    )


def to_dot(
    plan: Plan,
    overlay: Overlay | None = None,
    *,
    rankdir: str = "auto",
    deterministic: bool | None = None,
    xray: bool | int = False,
    show_reasons: bool = False,
    subplans: SubPlans | None = None,
) -> str:
    """The plan's graph as graphviz DOT source (clusters for branches, loops, try blocks and opened
    sub-workflows; the title and a backend legend on top). Arguments as for `to_mermaid`."""
    scene = build_scene(plan, xray=xray, subplans=subplans)
    rank = "LR" if scene.direction(rankdir) == "LR" else "TB"
    backends = sorted({_backend(n) for n in scene.nodes.values()})
    title = f"{plan.workflow} v{plan.version}"
    out = [
        f'digraph "{dot_escape(title)}" {{',
        f'    graph [rankdir={rank}, fontname="Helvetica", fontsize=11, labelloc=t, tooltip="{dot_escape(title)}",',
        f"           label={_dot_legend(title, backends)}];",
        '    node [fontname="Helvetica", fontsize=10, penwidth=1.2];',
        '    edge [fontname="Helvetica", fontsize=9, color="#475569"];',
    ]
    depth = 1
    gnums = _gnums(scene)
    for kind, name, label in scene.events:
        pad = "    " * depth
        if kind == "node":
            node = scene.nodes[name]
            entry = node.plan.entries.get(node.sid)
            shape, style = _DOT_SHAPES.get(node.plan.graph.nodes[node.sid].type, ("box", "filled"))
            fill, stroke = backend_colours(_backend(node))
            text = chr(10).join(_label_lines(node, overlay, deterministic, show_reasons))
            attrs = [f'label="{dot_escape(text)}"', f"shape={shape}", f'fillcolor="{fill}"']
            if entry is not None and not entry.available:
                style += ",dashed"
            attrs.append(f'style="{style}"')
            if overlay is not None and name in overlay and overlay[name].status in STATUS_COLOURS:
                attrs += [f'color="{STATUS_COLOURS[overlay[name].status]}"', "penwidth=3"]
            else:
                attrs.append(f'color="{stroke}"')
            out.append(f"{pad}{node.did} [{', '.join(attrs)}];")
            out += dot_members(node.plan.graph.nodes[node.sid], node.did, pad, dot_escape)  # a pattern's agents
        elif kind == "open":
            style = "solid,rounded" if name.startswith("workflow:") else "dashed,rounded"
            out.append(f"{pad}subgraph cluster_{gnums[name]} {{")
            out.append(f'{pad}    label="{dot_escape(label)}"; style="{style}"; color="#94a3b8";')
            depth += 1
        else:
            depth -= 1
            out.append(f"{'    ' * depth}}}")
    ids = {full: n.did for full, n in scene.nodes.items()}
    for source, target, kind in scene.edges:
        style = ' [style="dashed"]' if kind == "order" else ""
        out.append(f"    {ids[source]} -> {ids[target]}{style};")
    for owner, first, label in scene.entries:
        out.append(f'    {ids[owner]} -> {ids[first]} [style="dotted", label="{dot_escape(label)}"];')
    out.append("}")
    return "\n".join(out) + "\n"


def dot_available() -> bool:
    """Whether graphviz's ``dot`` command is on PATH."""
    return shutil.which("dot") is not None


def run_dot(source: str, fmt: str) -> bytes | None:
    """``dot -T<fmt>`` of a DOT text, or None when graphviz is not installed or fails."""
    exe = shutil.which("dot")
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, f"-T{fmt}"], input=source.encode(), capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


@lru_cache(maxsize=64)
def _svg_of(source: str) -> str | None:
    out = run_dot(source, "svg")
    if out is None:
        return None
    text = out.decode("utf-8", errors="replace")
    start = text.find("<svg")  # drop the XML prologue and comments so the SVG embeds in HTML
    return text[start:] if start >= 0 else None


_TITLE = re.compile(r"<title>([^<]*)</title>")


def _with_titles(svg: str, scene: Scene, overlay: Overlay | None, deterministic: bool | None) -> str:
    """Replace graphviz's ``<title>`` of each node (its positional id), edge and cluster with words."""
    names = {n.did: n for n in scene.nodes.values()}
    labels = {f"cluster_{num}": label for (kind, _, label), num in _opened(scene) if kind == "open"}

    def words(match: re.Match[str]) -> str:
        raw = html.unescape(match.group(1))
        if raw in names:
            text = tooltip(names[raw], overlay, deterministic)
        elif "->" in raw and all(part in names for part in raw.split("->")):
            a, b = (names[part].full_id for part in raw.split("->"))
            text = f"{a} → {b}"
        else:
            text = labels.get(raw, raw)
        return f"<title>{html.escape(text, quote=False)}</title>"

    return _TITLE.sub(words, svg)


def _opened(scene: Scene) -> list[tuple[tuple[str, str, str], int]]:
    gnums = _gnums(scene)
    return [(e, gnums[e[1]]) for e in scene.events if e[0] == "open"]


def to_svg(
    plan: Plan,
    overlay: Overlay | None = None,
    *,
    rankdir: str = "auto",
    deterministic: bool | None = None,
    xray: bool | int = False,
    show_reasons: bool = False,
    subplans: SubPlans | None = None,
) -> str | None:
    """SVG drawn by graphviz's ``dot`` command (hovering a step says why its backend), or None when
    graphviz is not installed or fails. Arguments as for `to_mermaid`."""
    dot = to_dot(
        plan,
        overlay,
        rankdir=rankdir,
        deterministic=deterministic,
        xray=xray,
        show_reasons=show_reasons,
        subplans=subplans,
    )
    svg = _svg_of(dot)
    if svg is None:
        return None
    return _with_titles(svg, build_scene(plan, xray=xray, subplans=subplans), overlay, deterministic)


# -- plain text ---------------------------------------------------------------------------------


def to_text(
    plan: Plan,
    overlay: Overlay | None = None,
    *,
    deterministic: bool | None = None,
    xray: bool | int = False,
    show_reasons: bool = False,
    subplans: SubPlans | None = None,
) -> str:
    """An indented outline of the graph: each step, its type and backend, what it waits for."""
    scene = build_scene(plan, xray=xray, subplans=subplans)
    counts: dict[str, int] = {}
    for node in scene.nodes.values():
        counts[_backend(node)] = counts.get(_backend(node), 0) + 1
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    inner = len(scene.nodes) - len(plan)
    more = f", {inner} more in sub-workflows" if inner > 0 else ""
    lines = [f"{plan.workflow} v{plan.version}: {plural(len(plan), 'step')}{more} ({summary})"]
    depth = 0
    for kind, name, label in scene.events:
        pad = "  " * (depth + 1)
        if kind == "node":
            node = scene.nodes[name]
            gnode = node.plan.graph.nodes[node.sid]
            entry = node.plan.entries.get(node.sid)
            text = f"{pad}{gnode.label if gnode.label == node.sid else f'{gnode.label} ({node.sid})'}  [{gnode.type}"
            text += f" · {entry.backend}]" if entry else "]"
            if show_reasons and entry is not None:
                text += f" ({entry.reason})"
            deps = sorted(node.plan.graph.deps.get(node.sid, ()), key=node.plan.order.index)
            if deps:
                text += "  ← " + ", ".join(deps)
            if node.child is not None and not node.opened:
                text += f"  ▸ {node.child.workflow}: {len(node.child)} steps"
            if overlay is not None and name in overlay:
                text += "  = " + overlay[name].caption(deterministic)
            lines.append(text)
            lines += text_members(gnode, pad)
        elif kind == "open":
            lines.append(f"{pad}┆ {label}:")
            depth += 1
        else:
            depth -= 1
    return "\n".join(lines) + "\n"
