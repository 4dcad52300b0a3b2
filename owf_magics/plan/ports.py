"""Typed ports: a value that is exactly one template reading a part's typed output, bound to a typed input.

Outputs: a workflow's ``outputs`` (``type:`` or ``schema:``), a connector action's ``output`` schema,
an agent's ``io.outputSchema``. Inputs: a workflow's ``inputs`` (for a ``workflow:`` step) and a
connector action's ``input`` schema (for an action step). An untyped end is not checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from owf_magics.errors import Diagnostic, DiagnosticBag
from owf_magics.manifest.catalog import Catalog
from owf_magics.manifest.loader import LMap
from owf_magics.manifest.normalize import RawManifest
from owf_magics.manifest.refs import parse_ref
from owf_magics.plan.fragments import iter_steps, workflow_resolver

_READ_RE = re.compile(
    r"^\s*\{\{\s*steps\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*(['\"])([^'\"]*)\2\s*\])"
    r"((?:\s*\.\s*[A-Za-z_]\w*|\s*\[\s*(['\"])[^'\"]*\5\s*\])*)\s*\}\}\s*$"
)
_SEG_RE = re.compile(r"\.\s*([A-Za-z_]\w*)|\[\s*['\"]([^'\"]*)['\"]\s*\]")
_NUMERIC = {"integer", "number"}

WorkflowResolver = Callable[[Any, "str | None"], "dict[str, Any] | None"]


def _types(schema: Any) -> frozenset[str] | None:
    """The JSON types a schema allows; None when it says nothing (or anything)."""
    if not isinstance(schema, dict):
        return None
    t = schema.get("type")
    if isinstance(t, str):
        return None if t == "any" else frozenset({t})
    if isinstance(t, list) and all(isinstance(x, str) for x in t):
        return None if "any" in t else frozenset(t)
    return None


def _walk(schema: Any, path: list[str]) -> Any:
    for seg in path:
        props = schema.get("properties") if isinstance(schema, dict) else None
        if not isinstance(props, dict) or seg not in props:
            return None
        schema = props[seg]
    return schema


def compatible(out: frozenset[str], into: frozenset[str]) -> bool:
    """Whether a value of one of the types `out` may be bound to an input of the types `into`."""
    if out & into:
        return True
    return "integer" in out and "number" in into  # every integer is a number; not the reverse


def _fmt(types: frozenset[str]) -> str:
    return "|".join(sorted(types))


class PortChecker:
    """Checks the bindings of every step of the workflows of one load."""

    def __init__(self, catalog: Catalog, batch: list[RawManifest], workflow: WorkflowResolver, bag: DiagnosticBag):
        self.catalog = catalog
        self.bag = bag
        self.workflow = workflow
        self.connectors = {r.data.get("name"): r.data for r in batch if r.kind == "connector"}
        self.agents = {r.data.get("name"): r.data for r in batch if r.kind == "agent"}

    def _action(self, step: dict[str, Any]) -> dict[str, Any] | None:
        cname, aname = step.get("connector"), step.get("action")
        if not isinstance(cname, str) or not isinstance(aname, str):
            return None
        data = self.connectors.get(cname)
        if data is None:
            try:
                found = self.catalog.connector(parse_ref(cname, expected_kind="connector"))
            except ValueError:
                return None
            data = found.raw.data if found is not None else None
        actions = data.get("actions") if isinstance(data, dict) else None
        for a in actions if isinstance(actions, list) else []:
            if isinstance(a, dict) and a.get("name") == aname:
                return a
        return None

    def _agent(self, name: Any) -> dict[str, Any] | None:
        if not isinstance(name, str):
            return None
        if name in self.agents:
            return self.agents[name]
        try:
            found = self.catalog.agent(parse_ref(name, expected_kind="agent"))
        except ValueError:
            return None
        return found.raw.data if found is not None else None

    def output_schema(self, step: dict[str, Any], path: list[str]) -> tuple[Any, str] | None:
        """The schema of what `steps.<step>` + `path` reads, and how to name it; None if untyped."""
        stype = step.get("type")
        sid = step.get("id")
        if stype == "workflow" and path and path[0] in ("output", "outputs"):
            child = self.workflow(step.get("workflow"), step.get("version"))
            outs = child.get("outputs") if isinstance(child, dict) else None
            if not isinstance(outs, dict) or len(path) < 2 or not isinstance(outs.get(path[1]), dict):
                return None
            spec = outs[path[1]]
            schema = spec.get("schema") if isinstance(spec.get("schema"), dict) else {"type": spec.get("type")}
            return _walk(schema, path[2:]), f"output '{path[1]}' of workflow step '{sid}'"
        if stype == "action" and path and path[0] == "output":
            action = self._action(step)
            if action is None:
                return None
            return _walk(action.get("output"), path[1:]), f"the output of action step '{sid}'"
        meta = step.get("metadata")
        if stype == "transform" and path == ["output"] and isinstance(meta, dict) and meta.get("outputType"):
            return {"type": meta["outputType"]}, f"adapter '{sid}'"  # b.add_adapter(..., type=...)
        if stype == "agent" and path and path[0] == "output":
            agent = self._agent(step.get("agent"))
            io = agent.get("io") if isinstance(agent, dict) else None
            schema = io.get("outputSchema") if isinstance(io, dict) else None
            return _walk(schema, path[1:]), f"the output of agent step '{sid}'"
        return None

    def check(self, raw: RawManifest) -> None:
        steps = raw.data.get("steps")
        if not isinstance(steps, list):
            return
        by_id = {s["id"]: s for s in iter_steps(steps) if isinstance(s.get("id"), str)}
        for step in by_id.values():
            bound = step.get("input")
            if not isinstance(bound, dict):
                continue
            if step.get("type") == "workflow":
                child = self.workflow(step.get("workflow"), step.get("version"))
                declared = child.get("inputs") if isinstance(child, dict) else None
                schemas = declared if isinstance(declared, dict) else {}
                what = f"input '{{name}}' of workflow '{child.get('name') if isinstance(child, dict) else '?'}'"
            elif step.get("type") == "action":
                action = self._action(step)
                schema = action.get("input") if action else None
                props = schema.get("properties") if isinstance(schema, dict) else None
                schemas = props if isinstance(props, dict) else {}
                what = f"input '{{name}}' of action '{step.get('action')}'"
            else:
                continue
            for name, value in bound.items():
                into = _types(schemas.get(name))
                if into is None or not isinstance(value, str):
                    continue
                m = _READ_RE.match(value)
                if not m:
                    continue
                src = by_id.get(m.group(1) or m.group(3))
                if src is None:
                    continue
                path = [a or b for a, b in _SEG_RE.findall(m.group(4))]
                found = self.output_schema(src, path)
                out = _types(found[0]) if found else None
                if found is None or out is None or compatible(out, into):
                    continue
                pos = bound.key_pos.get(name) if isinstance(bound, LMap) else None
                self.bag.add(
                    Diagnostic(
                        "TYPE_MISMATCH",
                        f"step '{step.get('id')}' binds {what.format(name=name)} ({_fmt(into)}) to "
                        f"{found[1]} ({_fmt(out)})",
                        file=raw.file,
                        line=pos[0] if pos else None,
                        column=pos[1] if pos else None,
                        step_id=str(step.get("id")),
                        hint=f"put a transform step between them that turns the {_fmt(out)} into a {_fmt(into)} "
                        f'(e.g. expression: "{{{{ {value.strip()[2:-2].strip()} | string }}}}"), or change one type',
                    )
                )


def check_ports(raws: list[RawManifest], catalog: Catalog, bag: DiagnosticBag) -> None:
    """`TYPE_MISMATCH` for every typed output bound to a typed input of another type in `raws`."""
    if not any(r.kind == "workflow" for r in raws):
        return
    find = workflow_resolver(raws, catalog)

    def workflow(source: Any, version: str | None) -> dict[str, Any] | None:
        if isinstance(source, dict):
            return source
        if not isinstance(source, str):
            return None
        found = find(source, version if isinstance(version, str) else None)
        return found[0] if found else None

    checker = PortChecker(catalog, raws, workflow, bag)
    for raw in raws:
        if raw.kind == "workflow":
            checker.check(raw)
