"""What a graph view draws: a plan's steps, groups and edges, with sub-workflows opened to a depth.

A `Scene` is the one tree every renderer (mermaid, DOT/SVG, text, HTML) walks. The steps of a
``type: workflow`` step's child workflow are drawn inside a group under that step when the view's
``xray`` allows it (LangGraph's idea: ``xray=False`` draws sub-workflows closed, ``True`` opens
every level, an integer opens that many); a closed one is one node that says how many steps it
hides, and the HTML view adds a collapsible drawing of it. Inside an opened sub-workflow a step's
id is ``parent/child`` — the id its trace rows and step results carry — so a run's overlay lands on
the right node. Display ids stay positional (``n3``, ``n3_0``...), never the user's text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from owf_magics.errors import OWFError

if TYPE_CHECKING:
    from owf_magics.plan.graph import BlockKey, Group
    from owf_magics.plan.resolution import Plan

ROOT: tuple[None, str] = (None, "steps")  # the workflow's own block (as in owf_magics.plan.graph, not imported: cheap)

#: A graph this many ranks tall or more, and over twice as tall as it is wide, is drawn left-to-right.
AUTO_LR_RANKS = 10
MAX_XRAY = 16  # ``xray=True`` opens this many levels (recursive workflows stop where they repeat)

#: ``(plan, step id of a workflow step)`` → the child workflow's plan, or None when it is not known.
SubPlans = Callable[["Plan", str], "Plan | None"]


@dataclass(slots=True)
class SceneNode:
    """One drawn step: where it comes from and its display id."""

    full_id: str  # the id run results use (``call/double`` inside an opened sub-workflow)
    plan: Plan
    sid: str  # the id in `plan`
    did: str  # the display id
    child: Plan | None = None  # a workflow step's child plan, when known
    opened: bool = False  # whether the child's steps are drawn in a group under this node


@dataclass(slots=True)
class Scene:
    """Nodes in drawing order, the nesting of groups, and the edges (all by full step id)."""

    plan: Plan
    nodes: dict[str, SceneNode] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (node|open|close, id, group label)
    edges: list[tuple[str, str, str]] = field(default_factory=list)  # (source, target, kind)
    entries: list[tuple[str, str, str]] = field(default_factory=list)  # (container, first step inside, label)

    def closed(self) -> list[SceneNode]:
        """Workflow steps drawn closed whose child plan is known (the HTML view draws them apart)."""
        return [n for n in self.nodes.values() if n.child is not None and not n.opened]

    def direction(self, requested: str = "auto") -> str:
        """``TD`` or ``LR``: as requested, or for ``auto`` LR when the graph is tall and narrow."""
        if requested.upper() in ("LR", "RL"):
            return "LR"
        if requested.upper() in ("TD", "TB"):
            return "TD"
        height, width = self._extent(self.plan, "", ROOT)
        return "LR" if height >= AUTO_LR_RANKS and height > 2 * width else "TD"

    def _extent(self, plan: Plan, prefix: str, key: BlockKey) -> tuple[int, int]:
        """(ranks, widest rank) of one block, nested blocks and opened sub-workflows counted in."""
        graph = plan.graph
        order = graph.order.get(key, ())
        inside = set(order)
        end: dict[str, int] = {}
        starts: dict[int, int] = {}
        width = 1
        for sid in order:
            own, wide = 1, 1
            for block in graph.child_blocks.get(sid, ()):
                h, w = self._extent(plan, prefix, block)
                own, wide = max(own, 1 + h), max(wide, w)
            node = self.nodes.get(prefix + sid)
            if node is not None and node.opened and node.child is not None:
                h, w = self._extent(node.child, prefix + sid + "/", ROOT)
                own, wide = max(own, 1 + h), max(wide, w)
            start = max((end[d] for d in graph.deps.get(sid, ()) if d in inside and d in end), default=0)
            end[sid] = start + own
            starts[start] = starts.get(start, 0) + 1
            width = max(width, wide)
        return max(end.values(), default=0), max(width, *starts.values()) if starts else width


def xray_depth(xray: bool | int) -> int:
    """How many levels of sub-workflows to open: False → 0, True → all, an int → that many."""
    if xray is True:
        return MAX_XRAY
    if xray is False or xray is None:
        return 0
    return max(0, int(xray))


def cached_subplan(plan: Plan, sid: str) -> Plan | None:
    """The child plan of a workflow step as its registry last resolved it (None before that).

    The registry caches every plan it makes on the loaded workflow (the engine plans a child when
    the step runs; the magics plan them when a cell shows its graph), so the views need no registry.
    """
    target = plan.targets.get(sid)
    plans: dict[Any, Any] = getattr(target, "plans", None) or {}
    found = [value[1] for key, value in plans.items() if isinstance(key, tuple) and key[0] == plan.prefer_backend]
    return found[-1] if found else None


def subplans_from(host: Any) -> SubPlans:
    """A `SubPlans` that asks a registry (an `OpenWorkflow`) to plan each child workflow."""

    def find(plan: Plan, sid: str) -> Plan | None:
        target = plan.targets.get(sid)
        if target is None or getattr(target, "kind", None) != "workflow":
            return None
        child: Plan = host.plan_loaded(target, plan.prefer_backend)
        return child

    return find


def warm_subplans(host: Any, plan: Plan, depth: int = MAX_XRAY) -> None:
    """Plan every sub-workflow of `plan` through `host` (each is cached on its loaded workflow, where
    `cached_subplan` finds it), so views drawn without a registry still know the child workflows."""
    find = subplans_from(host)
    seen = {plan.workflow}
    todo = [(plan, 0)]
    while todo:
        current, level = todo.pop()
        for sid, entry in current.entries.items():
            if entry.type != "workflow" or level >= depth:
                continue
            try:
                child = find(current, sid)
            except OWFError:  # a child that no longer resolves is drawn as a plain step
                continue
            if child is not None and child.workflow not in seen:
                seen.add(child.workflow)
                todo.append((child, level + 1))


def build_scene(plan: Plan, *, xray: bool | int = False, subplans: SubPlans | None = None) -> Scene:
    """The scene of a plan; `subplans` finds child plans (default: `cached_subplan`)."""
    scene = Scene(plan)
    _add(scene, plan, "", "n", 0, xray_depth(xray), subplans or cached_subplan, (plan.workflow,))
    return scene


def _add(
    scene: Scene, plan: Plan, prefix: str, idp: str, depth: int, limit: int, find: SubPlans, stack: tuple[str, ...]
) -> None:
    dids = {sid: f"{idp}{i}" for i, sid in enumerate(plan.graph.topological())}
    for kind, name, key in walk(plan):
        if kind == "open":
            scene.events.append(("open", prefix + name, group_label(plan, key)))
            continue
        if kind == "close":
            scene.events.append(("close", prefix + name, ""))
            continue
        full = prefix + name
        node = scene.nodes[full] = SceneNode(full, plan, name, dids[name])
        scene.events.append(("node", full, ""))
        if plan.graph.nodes[name].type != "workflow":
            continue
        child = find(plan, name)
        if child is None:
            continue
        node.child = child
        if depth >= limit or child.workflow in stack:
            continue
        node.opened = True
        gid = f"workflow:{full}"
        scene.events.append(("open", gid, f"{name} → {child.workflow} v{child.version}"))
        _add(scene, child, full + "/", dids[name] + "_", depth + 1, limit, find, (*stack, child.workflow))
        scene.events.append(("close", gid, ""))
        for root in child.graph.roots():
            scene.entries.append((full, f"{full}/{root}", "calls"))
    for e in plan.graph.edges:
        scene.edges.append((prefix + e.source, prefix + e.target, e.kind))
    for owner, first, label in entry_edges(plan):
        scene.entries.append((prefix + owner, prefix + first, label))


# -- the plan's own blocks ----------------------------------------------------------------------


def groups_by_block(plan: Plan) -> dict[BlockKey, Group]:
    """The plan's groups by block (kept in the plan's memo: a plan never changes)."""
    cached: dict[BlockKey, Group] | None = plan.memo.get("view_groups")
    if cached is not None:
        return cached
    out: dict[BlockKey, Group] = {}
    plan.memo["view_groups"] = out
    for g in plan.graph.groups:
        block = g.id.split("/", 1)[1] if "/" in g.id else g.kind
        out[(g.owner, block)] = g
    return out


def walk(plan: Plan, key: BlockKey = ROOT) -> Iterator[tuple[str, str, Any]]:
    """Yield ("node", sid, None), ("open", group, block_key) and ("close", group, None) in nesting order."""
    graph = plan.graph
    groups = groups_by_block(plan)
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
            yield from walk(plan, child)
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
                group = groups_by_block(plan).get(child)
                gid = group.id if group else f"{sid}/{child[1]}"
                yield ("open", gid, child)
                yield from walk(plan, child)
                yield ("close", gid, None)
    for part, members in parts.items():
        yield ("open", f"part:{part}", (None, f"part {part}"))
        yield from _walk_parts(plan, members, part + "/")
        yield ("close", f"part:{part}", None)


def group_label(plan: Plan, key: BlockKey) -> str:
    group = groups_by_block(plan).get(key)
    if group is None:
        return key[1]
    return group.label


def entry_edges(plan: Plan) -> list[tuple[str, str, str]]:
    """(owner, first step of a block, block label): how a container step leads into its groups."""
    graph = plan.graph
    out = []
    for sid in graph.topological():
        for key in graph.child_blocks.get(sid, ()):
            members = graph.order.get(key, ())
            label = group_label(plan, key)
            for m in members:
                if not graph.deps.get(m):
                    out.append((sid, m, label))
    return out
