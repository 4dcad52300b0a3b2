"""A pattern step (``groupChat``, ``magentic``, ``sequential``, ``concurrent``) drawn with its agents
as a group beside it: the graph views call these for a node with `members` (docs/patterns.md)."""

from __future__ import annotations

from typing import Any


def mermaid_members(node: Any, nid: str, pad: str, escape: Any) -> list[str]:
    """A subgraph of the step's agents, each joined to the step by a dotted link."""
    if not node.members:
        return []
    lines = [f'{pad}subgraph {nid}_agents["{escape(f"{node.type} {node.label}: agents")}"]']
    lines += [f'{pad}    {nid}_m{j}(["{escape(m)}"])' for j, m in enumerate(node.members)]
    lines.append(f"{pad}end")
    lines += [f"{pad}{nid} -.- {nid}_m{j}" for j in range(len(node.members))]
    return lines


def dot_members(node: Any, nid: str, pad: str, escape: Any) -> list[str]:
    """A cluster of the step's agents, each joined to the step by a dotted, arrowless edge."""
    if not node.members:
        return []
    lines = [
        f"{pad}subgraph cluster_{nid}_agents {{",
        f'{pad}    label="{escape(f"{node.type} {node.label}: agents")}"; style="dotted,rounded"; color="#64748b";',
    ]
    lines += [
        f'{pad}    {nid}_m{j} [label="{escape(m)}", shape=box, style="rounded", color="#64748b"];'
        for j, m in enumerate(node.members)
    ]
    lines.append(f"{pad}}}")
    lines += [f'{pad}{nid} -> {nid}_m{j} [style="dotted", arrowhead=none];' for j in range(len(node.members))]
    return lines


def text_members(node: Any, pad: str) -> list[str]:
    return [f"{pad}  ┆ agents: {', '.join(node.members)}"] if node.members else []
