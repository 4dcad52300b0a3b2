"""The neutral step graph: nodes, dependency edges and groups, read by renderers and executors.

Each step is a node. Nested steps live in *blocks* (``then``, ``cases:high``, ``branches:weather``,
a loop body, ``catch``...), drawn as groups. A reference from step A to step B becomes an edge
between their ancestors in the innermost block that holds both, so every edge joins two siblings
and each block is a small DAG the executor can schedule on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from owf_magics.manifest.loader import LMap, LSeq
from owf_magics.manifest.templates import analyse, iter_strings
from owf_magics.plan.patterns import members_of

EdgeKind = Literal["data", "needs", "order"]
BlockKey = tuple[str | None, str]  # (owning step id or None for the workflow, block name)
ROOT: BlockKey = (None, "steps")

#: Step fields that hold nested steps; never scanned as templates of the owning step.
BLOCK_FIELDS = ("then", "else", "cases", "default", "steps", "branches", "catch", "finally")


@dataclass(frozen=True, slots=True)
class Node:
    """One step.

    Attributes:
        id: The step id (unique in the workflow).
        type: The canonical step type.
        parent: The id of the step whose block holds this one (None at the top level).
        block: The block's name: ``steps``, ``then``, ``else``, ``cases:<k>``, ``default``,
            ``branches:<name>``, ``catch``, ``finally``.
        index: Position in the block.
        depth: Nesting depth (0 at the top level).
        path: Where the step sits in the manifest, e.g. ``("steps", 3, "then", 0)``.
        label: A display label (``displayName`` or the id).
    """

    id: str
    type: str
    parent: str | None
    block: str
    index: int
    depth: int
    path: tuple[str | int, ...]
    label: str
    members: tuple[str, ...] = ()  # a pattern step's agents (manager first), drawn as its group

    @property
    def block_key(self) -> BlockKey:
        return (self.parent, self.block)


@dataclass(frozen=True, slots=True)
class Edge:
    """``source`` must finish before ``target`` starts (both in the same block)."""

    source: str
    target: str
    kind: EdgeKind
    via: str | None = None  # the referenced step, when lifted from a nested one


@dataclass(frozen=True, slots=True)
class Group:
    """A block drawn as a group: the branches of an if/switch/parallel, a loop body, a try block."""

    id: str
    owner: str
    kind: str  # then | else | case | default | branch | loop | try | catch | finally
    label: str
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Schedule:
    """What the executor needs to run one block: members in order, how many in-block steps each
    waits for, and which in-block steps wait for each."""

    members: tuple[str, ...]
    waits: Mapping[str, int]
    after: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class Graph:
    """The dependency graph of one workflow (immutable)."""

    nodes: Mapping[str, Node]
    edges: tuple[Edge, ...]
    groups: tuple[Group, ...]
    blocks: Mapping[BlockKey, tuple[str, ...]]
    deps: Mapping[str, frozenset[str]]
    dependents: Mapping[str, tuple[str, ...]]
    order: Mapping[BlockKey, tuple[str, ...]]
    references: Mapping[str, frozenset[str]] = field(default_factory=dict)
    child_blocks: Mapping[str, tuple[BlockKey, ...]] = field(default_factory=dict)
    _schedules: dict[BlockKey, Schedule] = field(default_factory=dict, compare=False, repr=False)

    def schedule(self, key: BlockKey) -> Schedule:
        """A block's members with their in-block dependency counts and dependents (cached)."""
        sched = self._schedules.get(key)
        if sched is None:
            members = self.order.get(key, ())
            inside = frozenset(members)
            waits = {sid: sum(1 for d in self.deps.get(sid, ()) if d in inside) for sid in members}
            after = {sid: tuple(d for d in self.dependents.get(sid, ()) if d in inside) for sid in members}
            sched = self._schedules[key] = Schedule(members, MappingProxyType(waits), MappingProxyType(after))
        return sched

    def children(self, step_id: str | None, block: str = "steps") -> tuple[str, ...]:
        return self.blocks.get((step_id, block), ())

    def roots(self) -> tuple[str, ...]:
        """Top-level steps with nothing to wait for."""
        return tuple(s for s in self.order.get(ROOT, ()) if not self.deps.get(s))

    def topological(self) -> list[str]:
        """Every step, parents before their blocks, each block in dependency order."""
        out: list[str] = []

        def walk(key: BlockKey) -> None:
            for sid in self.order.get(key, ()):
                out.append(sid)
                for bkey in self._blocks_of(sid):
                    walk(bkey)

        walk(ROOT)
        return out

    def _blocks_of(self, sid: str) -> tuple[BlockKey, ...]:
        return self.child_blocks.get(sid, ())


@dataclass(slots=True)
class _Info:
    node: Node
    refs: set[str]
    needs: list[tuple[str, tuple[str | int, ...]]]
    raw: LMap


class GraphBuilder:
    """Builds a `Graph` from a workflow's normalised ``steps`` list (positions kept for errors).

    Problems are reported through `problems` as ``(code, message, step_id, path, extra)``.
    """

    def __init__(self, steps: Any) -> None:
        self.steps = steps
        self.infos: dict[str, _Info] = {}
        self.blocks: dict[BlockKey, list[str]] = {}
        self.groups: list[Group] = []
        self.problems: list[tuple[str, str, str | None, tuple[str | int, ...], dict[str, Any]]] = []
        self.duplicates: list[tuple[str, tuple[str | int, ...], tuple[str | int, ...]]] = []

    # -- collection -------------------------------------------------------------------------

    def collect(self) -> None:
        if isinstance(self.steps, list):
            self._collect_block(self.steps, None, "steps", 0, ("steps",))

    def _collect_block(
        self, steps: list[Any], parent: str | None, block: str, depth: int, path: tuple[str | int, ...]
    ) -> None:
        ids = self.blocks.setdefault((parent, block), [])
        for i, raw in enumerate(steps):
            if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
                continue
            sid = raw["id"]
            spath = path + (i,)
            if sid in self.infos:
                self.duplicates.append((sid, self.infos[sid].node.path, spath))
                continue
            label = raw.get("displayName") if isinstance(raw.get("displayName"), str) else sid
            node = Node(sid, str(raw.get("type")), parent, block, len(ids), depth, spath, str(label), members_of(raw))
            info = _Info(node, set(), [], raw if isinstance(raw, LMap) else LMap(raw))
            self.infos[sid] = info
            ids.append(sid)
            needs = raw.get("needs")
            if isinstance(needs, list):
                for j, n in enumerate(needs):
                    if isinstance(n, str):
                        info.needs.append((n, spath + ("needs", j)))
            for fname in BLOCK_FIELDS:
                value = raw.get(fname)
                if fname in ("cases", "branches") and isinstance(value, dict):
                    for key, sub in value.items():
                        if isinstance(sub, list):
                            bname = f"{fname}:{key}"
                            kind = "case" if fname == "cases" else "branch"
                            self._group(sid, bname, kind, str(key), sub)
                            self._collect_block(sub, sid, bname, depth + 1, spath + (fname, key))
                elif isinstance(value, list) and not (fname == "steps" and node.type not in ("forEach", "try")):
                    kind = {"steps": "loop" if node.type == "forEach" else "try"}.get(fname, fname)
                    self._group(sid, fname, kind, fname if fname != "steps" else kind, value)
                    self._collect_block(value, sid, fname, depth + 1, spath + (fname,))

    def _group(self, owner: str, block: str, kind: str, label: str, steps: list[Any]) -> None:
        members = tuple(s["id"] for s in steps if isinstance(s, dict) and isinstance(s.get("id"), str))
        self.groups.append(Group(f"{owner}/{block}", owner, kind, label, members))

    # -- references ---------------------------------------------------------------------------

    def template_strings(self, info: _Info) -> Iterator[tuple[tuple[str | int, ...], str]]:
        """Every template-bearing string of a step, excluding its nested blocks."""
        raw = info.raw
        skip_expression = info.node.type == "transform" and raw.get("language") in (
            "jq",
            "jsonpath",
            "javascript",
            "python",
        )
        for key, value in raw.items():
            if key in BLOCK_FIELDS and info.node.type in ("if", "switch", "forEach", "parallel", "try"):
                continue
            if key in ("id", "type", "displayName", "description", "needs"):
                continue
            if key == "expression" and skip_expression:
                continue
            yield from iter_strings(value, info.node.path + (key,))

    def link(self) -> Graph:
        ids = self.infos
        edges: dict[tuple[str, str], Edge] = {}
        references: dict[str, frozenset[str]] = {}
        for sid, info in ids.items():
            for _, text in self.template_strings(info):
                t = analyse(text)
                if t.steps:
                    info.refs.update(t.steps)
            references[sid] = frozenset(r for r in info.refs if r in ids)
            for ref in sorted(info.refs):
                if ref in ids:
                    self._lift(sid, ref, "data", edges)
            for ref, _path in info.needs:
                if ref in ids:
                    self._lift(sid, ref, "needs", edges)
        # implicit order: waits are barriers; jq/jsonpath transforms read the step before them
        for members in self.blocks.values():
            for i, sid in enumerate(members):
                info = ids[sid]
                if info.node.type == "wait":
                    for before in members[:i]:
                        edges.setdefault((before, sid), Edge(before, sid, "order"))
                    for after in members[i + 1 :]:
                        edges.setdefault((sid, after), Edge(sid, after, "order"))
                elif (
                    info.node.type == "transform"
                    and info.raw.get("language") in ("jq", "jsonpath")
                    and info.raw.get("input") is None
                    and i > 0
                ):
                    prev = members[i - 1]
                    edges.setdefault((prev, sid), Edge(prev, sid, "order"))
        return self._finish(edges, references)

    def _chain(self, sid: str) -> list[tuple[BlockKey, str]]:
        out: list[tuple[BlockKey, str]] = []
        cur: str | None = sid
        while cur is not None:
            node = self.infos[cur].node
            out.append((node.block_key, cur))
            cur = node.parent
        return out

    def _lift(self, reader: str, target: str, kind: EdgeKind, edges: dict[tuple[str, str], Edge]) -> None:
        if reader == target:
            self.problems.append(
                (
                    "CIRCULAR_DEPENDENCY",
                    f"step '{reader}' reads its own result",
                    reader,
                    self.infos[reader].node.path,
                    {"cycle": [reader]},
                )
            )
            return
        rchain = self._chain(reader)
        tchain = self._chain(target)
        rids = {s for _, s in rchain}
        tids = {s for _, s in tchain}
        if target in rids:
            return  # reading an enclosing step from inside it: the value is whatever it has so far
        if reader in tids:
            self.problems.append(
                (
                    "CIRCULAR_DEPENDENCY",
                    f"step '{reader}' reads step '{target}', which runs inside it, so neither can finish first",
                    reader,
                    self.infos[reader].node.path,
                    {"cycle": [reader, target]},
                )
            )
            return
        tblocks = dict(tchain)
        for key, ranc in rchain:
            tanc = tblocks.get(key)
            if tanc is not None:
                if tanc != ranc:
                    edges.setdefault((tanc, ranc), Edge(tanc, ranc, kind, None if tanc == target else target))
                return

    def _finish(self, edges: dict[tuple[str, str], Edge], references: dict[str, frozenset[str]]) -> Graph:
        deps: dict[str, set[str]] = {sid: set() for sid in self.infos}
        dependents: dict[str, list[str]] = {sid: [] for sid in self.infos}
        for src, dst in edges:
            deps[dst].add(src)
            dependents[src].append(dst)
        order: dict[BlockKey, tuple[str, ...]] = {}
        for key, members in self.blocks.items():
            ordered, cycles = _toposort(members, deps)
            order[key] = tuple(ordered)
            for cycle in cycles:
                first = cycle[0]
                text = " → ".join(cycle + [first])
                self.problems.append(
                    (
                        "CIRCULAR_DEPENDENCY",
                        f"steps depend on each other in a cycle: {text}",
                        first,
                        self.infos[first].node.path,
                        {"cycle": cycle},
                    )
                )
        index = {sid: i.node.index for sid, i in self.infos.items()}
        owned: dict[str, list[BlockKey]] = {}
        for key in self.blocks:
            if key[0] is not None:
                owned.setdefault(key[0], []).append(key)
        return Graph(
            nodes=MappingProxyType({sid: i.node for sid, i in self.infos.items()}),
            edges=tuple(sorted(edges.values(), key=lambda e: (index[e.target], index[e.source], e.target))),
            groups=tuple(self.groups),
            blocks=MappingProxyType({k: tuple(v) for k, v in self.blocks.items()}),
            deps=MappingProxyType({k: frozenset(v) for k, v in deps.items()}),
            dependents=MappingProxyType({k: tuple(sorted(v, key=index.__getitem__)) for k, v in dependents.items()}),
            order=MappingProxyType(order),
            references=MappingProxyType(references),
            child_blocks=MappingProxyType({k: tuple(v) for k, v in owned.items()}),
        )


def _toposort(members: list[str], deps: Mapping[str, Iterable[str]]) -> tuple[list[str], list[list[str]]]:
    """Kahn's algorithm, stable by position; leftover nodes are split into their cycles."""
    pos = {sid: i for i, sid in enumerate(members)}
    indeg = dict.fromkeys(members, 0)
    for sid in members:
        for d in deps.get(sid, ()):
            if d in pos:
                indeg[sid] += 1
    import heapq

    ready = [pos[s] for s in members if indeg[s] == 0]
    heapq.heapify(ready)
    out: list[str] = []
    succ: dict[str, list[str]] = {sid: [] for sid in members}
    for sid in members:
        for d in deps.get(sid, ()):
            if d in pos:
                succ[d].append(sid)
    while ready:
        sid = members[heapq.heappop(ready)]
        out.append(sid)
        for nxt in succ[sid]:
            indeg[nxt] -= 1
            if indeg[nxt] == 0:
                heapq.heappush(ready, pos[nxt])
    if len(out) == len(members):
        return out, []
    left = [s for s in members if s not in set(out)]
    return out, _cycles(left, deps)


def _cycles(nodes: list[str], deps: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One concrete cycle per strongly connected component (Tarjan), steps in dependency order."""
    allowed = set(nodes)
    index_of: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comps: list[list[str]] = []
    counter = 0

    def strong(root: str) -> None:  # iterative: a chain of thousands of steps must not hit the recursion limit
        nonlocal counter
        work: list[tuple[str, Iterator[str]]] = []

        def visit(v: str) -> None:
            nonlocal counter
            index_of[v] = low[v] = counter
            counter += 1
            stack.append(v)
            on_stack.add(v)
            work.append((v, iter(sorted(d for d in deps.get(v, ()) if d in allowed))))

        visit(root)
        while work:
            v, successors = work[-1]
            for w in successors:
                if w not in index_of:
                    visit(w)
                    break
                if w in on_stack:
                    low[v] = min(low[v], index_of[w])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[v])
                if low[v] == index_of[v]:
                    comp: list[str] = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1 or v in set(deps.get(v, ())):
                        comps.append(comp)

    for v in nodes:
        if v not in index_of:
            strong(v)
    out: list[list[str]] = []
    for comp in comps:
        members = set(comp)
        start = min(comp, key=nodes.index)
        path = _find_cycle(start, members, deps, nodes)
        # deps point from a step to what it waits for; show the cycle in execution order
        ordered = list(reversed(path))
        first = ordered.index(start)
        out.append(ordered[first:] + ordered[:first])
    return out


def _find_cycle(start: str, members: set[str], deps: Mapping[str, Iterable[str]], order: list[str]) -> list[str]:
    """A path start → ... that leads back to start, following dependencies inside `members`."""

    def nexts(v: str) -> Iterator[str]:
        return iter(sorted((d for d in deps.get(v, ()) if d in members), key=order.index))

    path = [start]
    seen = {start}
    stack = [nexts(start)]
    while stack:
        for nxt in stack[-1]:
            if nxt == start:
                return path
            if nxt not in seen:
                seen.add(nxt)
                path.append(nxt)
                stack.append(nexts(nxt))
                break
        else:
            stack.pop()
            path.pop()
    return [start]


def build_graph(steps: LSeq | list[Any]) -> tuple[Graph, GraphBuilder]:
    """Collect and link; returns the graph and the builder (whose problems the caller reports)."""
    builder = GraphBuilder(steps)
    builder.collect()
    graph = builder.link()
    return graph, builder
