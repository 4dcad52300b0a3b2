"""The plan's graph as mermaid text, graphviz DOT (and SVG through ``dot``) and plain text.

Every renderer reads the same neutral `Graph` and `Plan`: nodes are coloured by the backend that
resolved for them and shaped by step type; the blocks of branches, loops and try steps become
groups. Node ids in the output are positional (``n0``, ``n1``...), so step ids with spaces, quotes
or non-ASCII characters only ever appear inside escaped labels.
"""

from __future__ import annotations

import shutil
import subprocess
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from owf_magics.notebook.views.settings import SETTINGS
from owf_magics.runtime.results import plural

if TYPE_CHECKING:
    from owf_magics.plan.graph import BlockKey, Group
    from owf_magics.plan.resolution import Plan
    from owf_magics.runtime.results import RunResult

ROOT: tuple[None, str] = (None, "steps")  # the workflow's own block (as in owf_magics.plan.graph, not imported: cheap)

#: Fill and stroke colours of the built-in backends; other names draw from `_PALETTE`.
BACKEND_COLOURS: dict[str, tuple[str, str]] = {
    "native": ("#dbeafe", "#1e40af"),
    "langchain": ("#dcfce7", "#166534"),
    "assistants": ("#fef3c7", "#92400e"),
}
_PALETTE = (
    ("#fce7f3", "#9d174d"),
    ("#ede9fe", "#5b21b6"),
    ("#ffedd5", "#9a3412"),
    ("#e0f2fe", "#075985"),
    ("#f1f5f9", "#334155"),
)
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
    return {
        sid: StepState(s.status, durations.get(sid), tokens.get(sid, 0), s.attempts) for sid, s in result.steps.items()
    }


def backend_colours(name: str) -> tuple[str, str]:
    """(fill, stroke) for a backend; unknown names get a stable colour from a small palette."""
    if name in BACKEND_COLOURS:
        return BACKEND_COLOURS[name]
    return _PALETTE[zlib.crc32(name.encode()) % len(_PALETTE)]


def node_ids(plan: Plan) -> dict[str, str]:
    """Positional, syntax-safe ids (``n0``...) for every step, in graph order."""
    return {sid: f"n{i}" for i, sid in enumerate(plan.graph.topological())}


def _label_lines(plan: Plan, sid: str, overlay: Overlay | None, deterministic: bool | None) -> list[str]:
    node = plan.graph.nodes[sid]
    entry = plan.entries.get(sid)
    lines = [node.label if node.label == sid else f"{node.label} ({sid})"]
    second = node.type
    if entry is not None:
        second += f" · {entry.backend}"
        if not entry.available:
            second += " (not installed)"
    lines.append(second)
    if overlay is not None and sid in overlay:
        lines.append(overlay[sid].caption(deterministic))
    return lines


def _groups_by_block(plan: Plan) -> dict[BlockKey, Group]:
    out: dict[BlockKey, Group] = {}
    for g in plan.graph.groups:
        block = g.id.split("/", 1)[1] if "/" in g.id else g.kind
        out[(g.owner, block)] = g
    return out


def _walk(plan: Plan, key: BlockKey = ROOT) -> Iterator[tuple[str, str, Any]]:
    """Yield ("node", sid, None), ("open", group, block_key) and ("close", group, None) in nesting order."""
    graph = plan.graph
    groups = _groups_by_block(plan)
    if key == ROOT and any("/" in sid for sid in graph.order.get(key, ())):
        yield from _walk_parts(plan, list(graph.order.get(key, ())), "")
        return
    for sid in graph.order.get(key, ()):
        yield ("node", sid, None)
        for child in graph.child_blocks.get(sid, ()):
            if not graph.order.get(child):
                continue
            group = groups.get(child)
            gid = group.id if group else f"{sid}/{child[1]}"
            yield ("open", gid, child)
            yield from _walk(plan, child)
            yield ("close", gid, None)


def _walk_parts(plan: Plan, sids: list[str], prefix: str) -> Iterator[tuple[str, str, Any]]:
    """The top-level steps with an inlined workflow part's steps (``part/step``) in one group per part."""
    parts: dict[str, list[str]] = {}
    for sid in sids:
        head, sep, _ = sid[len(prefix) :].partition("/")
        parts.setdefault(prefix + head if sep else "", []).append(sid)
    for sid in parts.pop("", []):
        yield ("node", sid, None)
        for child in plan.graph.child_blocks.get(sid, ()):
            if plan.graph.order.get(child):
                group = _groups_by_block(plan).get(child)
                gid = group.id if group else f"{sid}/{child[1]}"
                yield ("open", gid, child)
                yield from _walk(plan, child)
                yield ("close", gid, None)
    for part, members in parts.items():
        yield ("open", f"part:{part}", (None, f"part {part}"))
        yield from _walk_parts(plan, members, part + "/")
        yield ("close", f"part:{part}", None)


def _group_label(plan: Plan, key: BlockKey) -> str:
    group = _groups_by_block(plan).get(key)
    if group is None:
        return key[1]
    return group.label


def _entry_edges(plan: Plan) -> list[tuple[str, str, str]]:
    """(owner, first step of a block, block label): how a container step leads into its groups."""
    graph = plan.graph
    out = []
    for sid in graph.topological():
        for key in graph.child_blocks.get(sid, ()):
            members = graph.order.get(key, ())
            label = _group_label(plan, key)
            for m in members:
                if not graph.deps.get(m):
                    out.append((sid, m, label))
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
    direction: str = "TD",
    deterministic: bool | None = None,
) -> str:
    """The plan's graph as a mermaid ``flowchart`` (JupyterLab draws it without the network).

    Args:
        plan: A workflow's plan.
        overlay: Step states from a run (status, duration, tokens), drawn on the nodes.
        direction: ``TD`` (top-down) or ``LR``.
        deterministic: Hide durations (default: the display settings).
    """
    ids = node_ids(plan)
    lines = [f"flowchart {direction}"]
    depth = 1
    gnum = 0
    for kind, name, key in _walk(plan):
        pad = "    " * depth
        if kind == "node":
            node = plan.graph.nodes[name]
            opener, closer = _MERMAID_SHAPES.get(node.type, ('["', '"]'))
            label = "<br/>".join(mermaid_escape(t) for t in _label_lines(plan, name, overlay, deterministic))
            lines.append(f"{pad}{ids[name]}{opener}{label}{closer}")
        elif kind == "open":
            lines.append(f'{pad}subgraph g{gnum}["{mermaid_escape(_group_label(plan, key))}"]')
            gnum += 1
            depth += 1
        else:
            depth -= 1
            lines.append(f"{'    ' * depth}end")
    for e in plan.graph.edges:
        arrow = "-.->" if e.kind == "order" else "-->"
        lines.append(f"    {ids[e.source]} {arrow} {ids[e.target]}")
    for owner, first, label in _entry_edges(plan):
        lines.append(f'    {ids[owner]} -.->|"{mermaid_escape(label)}"| {ids[first]}')
    backends = sorted({e.backend for e in plan.entries.values()})
    for b in backends:
        fill, stroke = backend_colours(b)
        lines.append(f"    classDef be_{_css_name(b)} fill:{fill},stroke:{stroke},color:#111827")
    for b in backends:
        members = [ids[s] for s in ids if s in plan.entries and plan.entries[s].backend == b]
        if members:
            lines.append(f"    class {','.join(members)} be_{_css_name(b)}")
    for sid, nid in ids.items():
        entry = plan.entries.get(sid)
        styles = []
        if entry is not None and not entry.available:
            styles.append("stroke-dasharray:5 5")
        if overlay is not None and sid in overlay and overlay[sid].status in STATUS_COLOURS:
            styles.append(f"stroke:{STATUS_COLOURS[overlay[sid].status]},stroke-width:3px")
        if styles:
            lines.append(f"    style {nid} {','.join(styles)}")
    return "\n".join(lines) + "\n"


def _css_name(name: str) -> str:
    return "".join(ch if ch.isascii() and ch.isalnum() else "_" for ch in name)


# -- graphviz -----------------------------------------------------------------------------------


def dot_escape(text: str) -> str:
    """Escape text for a double-quoted DOT string (backslashes, quotes, newlines)."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def to_dot(
    plan: Plan,
    overlay: Overlay | None = None,
    *,
    rankdir: str = "TB",
    deterministic: bool | None = None,
) -> str:
    """The plan's graph as graphviz DOT source (clusters for branches, loops and try blocks)."""
    ids = node_ids(plan)
    title = f"{plan.workflow} v{plan.version}"
    out = [
        f'digraph "{dot_escape(title)}" {{',
        f'    graph [rankdir={rankdir}, fontname="Helvetica", fontsize=11, label="{dot_escape(title)}", labelloc=t];',
        '    node [fontname="Helvetica", fontsize=10, penwidth=1.2];',
        '    edge [fontname="Helvetica", fontsize=9, color="#475569"];',
    ]
    depth = 1
    gnum = 0
    for kind, name, key in _walk(plan):
        pad = "    " * depth
        if kind == "node":
            node = plan.graph.nodes[name]
            entry = plan.entries.get(name)
            shape, style = _DOT_SHAPES.get(node.type, ("box", "filled"))
            fill, stroke = backend_colours(entry.backend if entry else "native")
            attrs = [
                f'label="{dot_escape(chr(10).join(_label_lines(plan, name, overlay, deterministic)))}"',
                f"shape={shape}",
                f'fillcolor="{fill}"',
            ]
            if entry is not None and not entry.available:
                style += ",dashed"
            attrs.append(f'style="{style}"')
            if overlay is not None and name in overlay and overlay[name].status in STATUS_COLOURS:
                attrs += [f'color="{STATUS_COLOURS[overlay[name].status]}"', "penwidth=3"]
            else:
                attrs.append(f'color="{stroke}"')
            out.append(f"{pad}{ids[name]} [{', '.join(attrs)}];")
        elif kind == "open":
            out.append(f"{pad}subgraph cluster_{gnum} {{")
            out.append(
                f'{pad}    label="{dot_escape(_group_label(plan, key))}"; style="dashed,rounded"; color="#94a3b8";'
            )
            gnum += 1
            depth += 1
        else:
            depth -= 1
            out.append(f"{'    ' * depth}}}")
    for e in plan.graph.edges:
        style = ' [style="dashed"]' if e.kind == "order" else ""
        out.append(f"    {ids[e.source]} -> {ids[e.target]}{style};")
    for owner, first, label in _entry_edges(plan):
        out.append(f'    {ids[owner]} -> {ids[first]} [style="dotted", label="{dot_escape(label)}"];')
    out.append("}")
    return "\n".join(out) + "\n"


def dot_available() -> bool:
    """Whether graphviz's ``dot`` command is on PATH."""
    return shutil.which("dot") is not None


@lru_cache(maxsize=64)
def _svg_of(source: str) -> str | None:
    exe = shutil.which("dot")
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, "-Tsvg"], input=source.encode(), capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    text = done.stdout.decode("utf-8", errors="replace")
    start = text.find("<svg")  # drop the XML prologue and comments so the SVG embeds in HTML
    return text[start:] if start >= 0 else None


def to_svg(
    plan: Plan, overlay: Overlay | None = None, *, rankdir: str = "TB", deterministic: bool | None = None
) -> str | None:
    """SVG drawn by graphviz's ``dot`` command, or None when it is not installed or fails."""
    return _svg_of(to_dot(plan, overlay, rankdir=rankdir, deterministic=deterministic))


# -- plain text ---------------------------------------------------------------------------------


def to_text(plan: Plan, overlay: Overlay | None = None, *, deterministic: bool | None = None) -> str:
    """An indented outline of the graph: each step, its type and backend, what it waits for."""
    counts: dict[str, int] = {}
    for e in plan.entries.values():
        counts[e.backend] = counts.get(e.backend, 0) + 1
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    lines = [f"{plan.workflow} v{plan.version}: {plural(len(plan), 'step')} ({summary})"]
    depth = 0
    for kind, name, key in _walk(plan):
        pad = "  " * (depth + 1)
        if kind == "node":
            node = plan.graph.nodes[name]
            entry = plan.entries.get(name)
            text = f"{pad}{node.label if node.label == name else f'{node.label} ({name})'}  [{node.type}"
            text += f" · {entry.backend}]" if entry else "]"
            deps = sorted(plan.graph.deps.get(name, ()), key=plan.order.index)
            if deps:
                text += "  ← " + ", ".join(deps)
            if overlay is not None and name in overlay:
                text += "  = " + overlay[name].caption(deterministic)
            lines.append(text)
        elif kind == "open":
            lines.append(f"{pad}┆ {_group_label(plan, key)}:")
            depth += 1
        else:
            depth -= 1
    return "\n".join(lines) + "\n"
