"""AgentFlow Core `WorkflowSpec` checks: every problem at once, each at its file and line.

The shape (AgentFlow's WORKFLOW-SCHEMA): ``nodes[{id, type, metadata{source, config}}]``,
``edges[{from, to (one or a list), condition?}]``, ``queues[{id, from, to, bandwidth, subqueues,
on_limit}]``, ``sources[{id, kind, config}]``, ``start_node``. `check` returns the nodes, edges,
queues and sources it could read, for `build` to convert.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from owf_magics.errors import Diagnostic, DiagnosticBag, did_you_mean, format_path
from owf_magics.manifest.loader import LMap, LSeq, Pos, position_of

NODE_TYPES = ("input", "router", "llm", "image", "db", "aggregator")
SOURCE_KINDS = ("llm", "image", "db", "api")
BANDWIDTH_KEYS = ("max_messages_per_second", "max_requests_per_minute", "tokens_per_minute", "burst_size")
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
#: the source kind each node type needs (llm/image/db nodes name a source of that kind)
NEEDS_SOURCE = {"llm": "llm", "image": "image", "db": "db"}


@dataclass
class Spec:
    """What `check` could read of one WorkflowSpec."""

    name: str
    nodes: dict[str, LMap] = field(default_factory=dict)
    edges: list[tuple[str, str, str | None, LMap]] = field(default_factory=list)  # from, to, condition
    queues: list[LMap] = field(default_factory=list)
    sources: dict[str, LMap] = field(default_factory=dict)
    start: str = ""
    root: Any = None


class Checker:
    """Reports problems of one document with its file and lines."""

    def __init__(self, root: Any, file: str, bag: DiagnosticBag) -> None:
        self.root, self.file, self.bag = root, file, bag

    def __call__(
        self, code: str, message: str, path: tuple[str | int, ...], hint: str | None = None, step: str | None = None
    ) -> None:
        pos: Pos | None = position_of(self.root, path)
        self.bag.add(
            Diagnostic(
                code,
                message,
                path=format_path(path),
                file=self.file,
                line=pos[0] if pos else None,
                column=pos[1] if pos else None,
                step_id=step,
                hint=hint,
            )
        )


def _items(data: Mapping[str, Any], key: str, report: Checker, required: bool = True) -> list[tuple[int, Any]]:
    value = data.get(key)
    if value is None:
        if required:
            report("MISSING_REQUIRED_FIELD", f"an AgentFlow spec needs '{key}' (a list)", (), hint=f"add '{key}: []'")
        return []
    if not isinstance(value, list):
        report("INVALID_TYPE", f"'{key}' must be a list, not {type(value).__name__}", (key,))
        return []
    return list(enumerate(value))


def _ident(item: Mapping[str, Any], path: tuple[str | int, ...], what: str, report: Checker) -> str | None:
    ident = item.get("id")
    if ident is None:
        report("MISSING_REQUIRED_FIELD", f"a {what} needs an 'id'", path, hint=f"give the {what} a unique id")
        return None
    if not isinstance(ident, str) or not ID_PATTERN.match(ident):
        report(
            "INVALID_VALUE",
            f"{what} id {ident!r} must be letters, digits, '_' or '-'",
            (*path, "id"),
            hint="rename it (it becomes a step id)",
        )
        return None
    return ident


def check(doc: Any, file: str, bag: DiagnosticBag) -> Spec:
    """Every problem of the spec in `bag`; what could be read in the returned `Spec`."""
    report = Checker(doc, file, bag)
    name = doc.get("id") or doc.get("name")
    if not isinstance(name, str) or not name:
        report(
            "MISSING_REQUIRED_FIELD",
            "an AgentFlow spec needs an 'id' or a 'name' (it is registered as a workflow under it)",
            (),
            hint="add 'name: my-workflow'",
        )
        name = "agentflow"
    spec = Spec(name=name, root=doc)
    _sources(doc, spec, report)
    _nodes(doc, spec, report)
    start = doc.get("start_node")
    if not isinstance(start, str) or not start:
        report("INVALID_TYPE", "'start_node' must be a node id", ("start_node",))
    elif start not in spec.nodes:
        best = did_you_mean(start, spec.nodes)
        report(
            "UNKNOWN_REFERENCE",
            f"start_node '{start}' is not a node",
            ("start_node",),
            hint=f"did you mean '{best}'?" if best else "name one of the nodes",
        )
    else:
        spec.start = start
    _edges(doc, spec, report)
    _queues(doc, spec, report)
    _reachable_and_acyclic(spec, report)
    return spec


def _sources(doc: Mapping[str, Any], spec: Spec, report: Checker) -> None:
    for i, src in _items(doc, "sources", report, required=False):
        path: tuple[str | int, ...] = ("sources", i)
        if not isinstance(src, LMap):
            report("INVALID_TYPE", "a source must be a mapping", path)
            continue
        sid = _ident(src, path, "source", report)
        kind = src.get("kind")
        if kind not in SOURCE_KINDS:
            report(
                "INVALID_VALUE" if kind is not None else "MISSING_REQUIRED_FIELD",
                f"source kind must be one of {', '.join(SOURCE_KINDS)} (found {kind!r})",
                (*path, "kind") if kind is not None else path,
                step=sid,
            )
        elif not isinstance(src.get("config", {}), Mapping):
            report("INVALID_TYPE", "a source's 'config' must be a mapping", (*path, "config"), step=sid)
        if sid is not None:
            if sid in spec.sources:
                report("INVALID_VALUE", f"source '{sid}' is defined twice", (*path, "id"), step=sid)
            spec.sources.setdefault(sid, src)


def _nodes(doc: Mapping[str, Any], spec: Spec, report: Checker) -> None:
    items = _items(doc, "nodes", report)
    if not items and isinstance(doc.get("nodes"), list):
        report("INVALID_VALUE", "an AgentFlow spec needs at least one node", ("nodes",))
    for i, node in items:
        path: tuple[str | int, ...] = ("nodes", i)
        if not isinstance(node, LMap):
            report("INVALID_TYPE", "a node must be a mapping", path)
            continue
        nid = _ident(node, path, "node", report)
        ntype = node.get("type")
        if ntype not in NODE_TYPES:
            best = did_you_mean(str(ntype), NODE_TYPES) if ntype is not None else None
            report(
                "INVALID_VALUE" if ntype is not None else "MISSING_REQUIRED_FIELD",
                f"node type must be one of {', '.join(NODE_TYPES)} (found {ntype!r})",
                (*path, "type") if ntype is not None else path,
                hint=f"did you mean '{best}'?" if best else None,
                step=nid,
            )
        else:
            meta = node.get("metadata", {})
            if not isinstance(meta, Mapping) or not isinstance(meta.get("config", {}), Mapping):
                msg = "a node's 'metadata' and 'metadata.config' must be mappings"
                report("INVALID_TYPE", msg, (*path, "metadata"), step=nid)
            elif ntype == "router":
                if _node_source(node, path, ntype, spec, report, nid):
                    _router(node, path, report, nid)
            elif _node_source(node, path, ntype, spec, report, nid) and ntype == "db":
                cfg = meta.get("config") or {}
                if not (cfg.get("query") or meta.get("query") or cfg.get("allow_state_query")):
                    report(
                        "MISSING_REQUIRED_FIELD",
                        "a db node needs metadata.config.query (the SQL it runs)",
                        (*path, "metadata"),
                        hint="add config.query, with ? or :name (SQLite) or %s (PostgreSQL) for the parameters; "
                        "or allow_state_query: true to run the state's db_query",
                        step=nid,
                    )
        # a broken node is still a node: edges to it are not reported again (the load fails anyway)
        if nid is not None:
            if nid in spec.nodes:
                report("DUPLICATE_STEP_ID", f"node id '{nid}' is used twice", (*path, "id"), step=nid)
                continue
            spec.nodes[nid] = node


ROUTER_STRATEGIES = ("prefix", "keyword", "pattern", "rules", "llm", "default")
_RULE = re.compile(r"""^(contains|starts_with|ends_with|equals)\(['"](.*)['"]\)$|^(length_gt|length_lt)\((\d+)\)$""")


def _router(node: LMap, path: tuple[str | int, ...], report: Checker, nid: str | None) -> None:
    """A router's strategy and routes (``metadata`` or ``metadata.config``)."""
    meta = node.get("metadata") or {}
    where: tuple[str | int, ...] = (*path, "metadata")
    cfg: Mapping[str, Any] = meta
    if "strategy" not in meta and "routes" not in meta and isinstance(meta.get("config"), Mapping):
        cfg, where = meta["config"], (*where, "config")
    strategy = cfg.get("strategy")
    if strategy is not None and strategy not in ROUTER_STRATEGIES:
        best = did_you_mean(str(strategy), ROUTER_STRATEGIES)
        report(
            "INVALID_VALUE",
            f"router strategy must be one of {', '.join(ROUTER_STRATEGIES)} (found {strategy!r})",
            (*where, "strategy"),
            hint=f"did you mean '{best}'?" if best else None,
            step=nid,
        )
        return
    if strategy == "llm" and source_id(node) is None:
        report(
            "MISSING_REQUIRED_FIELD",
            "an llm router needs metadata.source naming an llm source (its classifier)",
            (*where, "strategy"),
            step=nid,
        )
    routes = cfg.get("routes", [])
    if not isinstance(routes, list):
        report("INVALID_TYPE", "router routes must be a list of {intent, ...}", (*where, "routes"), step=nid)
        return
    for j, r in enumerate(routes):
        rpath = (*where, "routes", j)
        if not isinstance(r, Mapping) or not isinstance(r.get("intent"), str):
            report("MISSING_REQUIRED_FIELD", "a route needs an 'intent' (a string)", rpath, step=nid)
            continue
        if strategy == "pattern":
            try:
                re.compile(str(r.get("pattern")))
            except re.error as exc:
                report("INVALID_VALUE", f"route pattern is not a regular expression: {exc}", (*rpath, "pattern"))
        if strategy == "rules" and not _RULE.match(str(r.get("condition", "")).strip()):
            report(
                "INVALID_VALUE",
                f"route condition {r.get('condition')!r} is not one of contains('x'), starts_with('x'), "
                "ends_with('x'), equals('x'), length_gt(n), length_lt(n)",
                (*rpath, "condition") if "condition" in r else rpath,
                step=nid,
            )


def source_id(node: Mapping[str, Any]) -> str | None:
    """The source a node names: ``metadata.source`` (or AgentFlow's later ``metadata.source_id``)."""
    meta = node.get("metadata") or {}
    sid = meta.get("source", meta.get("source_id"))
    return sid if isinstance(sid, str) else None


def _node_source(
    node: LMap, path: tuple[str | int, ...], ntype: str, spec: Spec, report: Checker, nid: str | None
) -> bool:
    meta = node.get("metadata") or {}
    sid = source_id(node)
    key = "source" if "source" in meta else "source_id"
    if sid is None and (meta.get(key) is not None):
        report("INVALID_TYPE", "metadata.source must be a source id", (*path, "metadata", key), step=nid)
        return False
    if sid is None:
        if ntype == "db":
            report(
                "MISSING_REQUIRED_FIELD",
                "a db node needs metadata.source naming a db source (its database)",
                (*path, "metadata") if "metadata" in node else path,
                hint="add a source {id, kind: db, config: {database: path.db}}",
                step=nid,
            )
            return False
        return True  # llm and image nodes fall back to the offline providers
    src = spec.sources.get(sid)
    if src is None:
        best = did_you_mean(sid, spec.sources)
        report(
            "UNKNOWN_REFERENCE",
            f"node '{nid}' names source '{sid}', which is not in 'sources'",
            (*path, "metadata", key),
            hint=f"did you mean '{best}'?" if best else "add it to 'sources'",
            step=nid,
        )
        return False
    want = NEEDS_SOURCE.get(ntype, "llm" if ntype == "router" else None)
    if src.get("kind") not in SOURCE_KINDS:
        return False  # reported at the source
    if want is not None and src.get("kind") != want:
        report(
            "INVALID_VALUE",
            f"a {ntype} node needs a source of kind '{want}', and '{sid}' is '{src.get('kind')}'",
            (*path, "metadata", key),
            step=nid,
        )
        return False
    if ntype == "db":
        cfg = src.get("config") or {}
        if not (cfg.get("database") or cfg.get("connection_string")):
            report(
                "MISSING_REQUIRED_FIELD",
                f"db source '{sid}' needs config.database or config.connection_string",
                ("sources", list(spec.sources).index(sid), "config"),
                step=nid,
            )
            return False
    return True


def _edges(doc: Mapping[str, Any], spec: Spec, report: Checker) -> None:
    for i, edge in _items(doc, "edges", report):
        path: tuple[str | int, ...] = ("edges", i)
        if not isinstance(edge, LMap):
            report("INVALID_TYPE", "an edge must be a mapping", path)
            continue
        src, dst, cond = edge.get("from"), edge.get("to"), edge.get("condition")
        if src is None or dst is None:
            report("MISSING_REQUIRED_FIELD", "an edge needs 'from' and 'to'", path)
            continue
        if cond is not None and not isinstance(cond, str):
            report("INVALID_TYPE", "an edge condition must be a string (an intent)", (*path, "condition"))
            continue
        targets = dst if isinstance(dst, list) else [dst]
        ok = _known(src, (*path, "from"), spec, report)
        for j, target in enumerate(targets):
            tpath = (*path, "to", j) if isinstance(dst, list) else (*path, "to")
            if _known(target, tpath, spec, report) and ok:
                if target == spec.start:
                    report("INVALID_VALUE", f"an edge leads back to the start node '{target}'", tpath)
                    continue
                spec.edges.append((src, target, cond, edge))


def _known(ref: Any, path: tuple[str | int, ...], spec: Spec, report: Checker) -> bool:
    if not isinstance(ref, str):
        report("INVALID_TYPE", "an edge end must be a node id", path)
        return False
    if ref not in spec.nodes:
        best = did_you_mean(ref, spec.nodes)
        report(
            "UNKNOWN_REFERENCE",
            f"'{ref}' is not a node",
            path,
            hint=f"did you mean '{best}'?" if best else "name one of the nodes",
        )
        return False
    return True


def _queues(doc: Mapping[str, Any], spec: Spec, report: Checker) -> None:
    seen: set[str] = set()
    for i, q in _items(doc, "queues", report, required=False):
        path: tuple[str | int, ...] = ("queues", i)
        if not isinstance(q, LMap):
            report("INVALID_TYPE", "a queue must be a mapping", path)
            continue
        qid = _ident(q, path, "queue", report)
        ok = qid is not None
        if qid in seen:
            report("INVALID_VALUE", f"queue '{qid}' is defined twice", (*path, "id"))
            ok = False
        seen.add(str(qid))
        for end in ("from", "to"):
            if q.get(end) is None:
                report("MISSING_REQUIRED_FIELD", f"a queue needs '{end}'", path)
                ok = False
            elif not _known(q.get(end), (*path, end), spec, report):
                ok = False
        if ok and not any(e[0] == q["from"] and e[1] == q["to"] for e in spec.edges):
            report(
                "INVALID_VALUE",
                f"queue '{qid}' maps {q['from']} -> {q['to']}, which no edge connects",
                path,
                hint="add the edge, or point the queue at an existing one",
            )
            ok = False
        ok = _bandwidth(q, path, report) and ok
        on_limit = q.get("on_limit", "wait")
        if on_limit not in ("wait", "fail"):
            report("INVALID_VALUE", f"on_limit must be 'wait' or 'fail' (found {on_limit!r})", (*path, "on_limit"))
            ok = False
        if ok:
            spec.queues.append(q)


def _bandwidth(q: LMap, path: tuple[str | int, ...], report: Checker) -> bool:
    ok = True
    bw = q.get("bandwidth", {})
    if not isinstance(bw, Mapping):
        report("INVALID_TYPE", "a queue's bandwidth must be a mapping", (*path, "bandwidth"))
        return False
    for key, value in bw.items():
        if key not in BANDWIDTH_KEYS:
            best = did_you_mean(str(key), BANDWIDTH_KEYS)
            report(
                "UNKNOWN_FIELD",
                f"'{key}' is not a bandwidth setting",
                (*path, "bandwidth", key),
                hint=f"did you mean '{best}'?" if best else f"use {', '.join(BANDWIDTH_KEYS)}",
            )
            ok = False
        elif isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            report(
                "INVALID_VALUE",
                f"bandwidth {key} must be a positive number (found {value!r})",
                (*path, "bandwidth", key),
            )
            ok = False
    subs = q.get("subqueues", [])
    if not isinstance(subs, list):
        report("INVALID_TYPE", "subqueues must be a list", (*path, "subqueues"))
        return False
    for j, sq in enumerate(subs):
        w = sq.get("weight") if isinstance(sq, Mapping) else None
        if not isinstance(sq, Mapping) or sq.get("id") is None:
            report("MISSING_REQUIRED_FIELD", "a sub-queue needs an 'id' and a 'weight'", (*path, "subqueues", j))
            ok = False
        elif isinstance(w, bool) or not isinstance(w, int | float) or w <= 0:
            report(
                "INVALID_VALUE",
                f"sub-queue weight must be a positive number (found {w!r})",
                (*path, "subqueues", j, "weight"),
            )
            ok = False
    return ok


def _reachable_and_acyclic(spec: Spec, report: Checker) -> None:
    after: dict[str, list[str]] = {n: [] for n in spec.nodes}
    for src, dst, _, _ in spec.edges:
        after[src].append(dst)
    state: dict[str, int] = {}

    def visit(n: str, trail: list[str]) -> None:
        state[n] = 1
        for m in after[n]:
            if state.get(m) == 1:
                edge = next(e[3] for e in spec.edges if e[0] == n and e[1] == m)
                cycle = " -> ".join([*trail[trail.index(m) :], n, m]) if m in trail else f"{n} -> {m}"
                report(
                    "CIRCULAR_DEPENDENCY",
                    f"the edges form a cycle: {cycle}",
                    ("edges", _edge_index(spec, edge)),
                    hint="AgentFlow graphs run once from start_node: remove an edge of the cycle",
                )
            elif m not in state:
                visit(m, [*trail, n])
        state[n] = 2

    if spec.start:
        visit(spec.start, [])
    for n, node in spec.nodes.items():
        if spec.start and n not in state:
            idx = _node_index(node, spec)
            report(
                "INVALID_VALUE",
                f"node '{n}' cannot be reached from start_node '{spec.start}'",
                ("nodes", idx),
                hint="connect it with an edge, or remove it",
                step=n,
            )


def _edge_index(spec: Spec, edge: LMap) -> int:
    return next((i for i, e in enumerate(_root_list(spec, "edges")) if e is edge), 0)


def _node_index(node: LMap, spec: Spec) -> int:
    return next((i for i, n in enumerate(_root_list(spec, "nodes")) if n is node), 0)


def _root_list(spec: Spec, key: str) -> LSeq | list[Any]:
    value = spec.root.get(key) if isinstance(spec.root, Mapping) else None
    return value if isinstance(value, list) else []
