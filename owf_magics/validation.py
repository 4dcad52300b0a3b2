"""Validation: models, references, templates, cycles, backends and versions, every problem at once.

`Validator.build` turns canonical trees into models (pydantic errors become diagnostics with
file:line); `Validator.check` then checks everything that spans manifests. Both only collect:
the caller raises one `ManifestError` at the end.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterable
from datetime import datetime
from functools import cache
from typing import Any, Union

from pydantic import BaseModel, TypeAdapter, ValidationError

from .backends.registry import BackendRegistry
from .catalog import Catalog, Loaded
from .errors import Diagnostic, DiagnosticBag, did_you_mean, format_path, suggestion
from .graph import BLOCK_FIELDS, Graph, build_graph
from .loader import LMap, LSeq, position_of
from .models import (
    MODEL_FOR_KIND,
    STEP_TYPES,
    Agent,
    Connector,
    Execution,
    ForEachStep,
    HandoffStep,
    ParallelStep,
    Step,
    StepBase,
    SwitchStep,
    TransformStep,
    WaitStep,
    Workflow,
    WorkflowStep,
    child_blocks,
)
from .normalize import RawManifest, parse_duration
from .queries import syntax_error
from .refs import Ref, RefError, check_range, installed_version, is_version, matches, parse_ref
from .templates import LOOP_NAMES, ROOTS, TemplateInfo, analyse, known_filters, known_functions

Path = tuple[str | int, ...]
OFFLINE_PROVIDERS = frozenset({"echo", "scripted"})
_BRANCH_NAME = re.compile(r"^[A-Za-z_][\w-]*$")

_FRIENDLY = {
    "Workflow": "a workflow",
    "Agent": "an agent",
    "Connector": "a connector",
    "Bundle": "a bundle",
    "Action": "a connector action",
    "ActionStep": "an action step",
    "AgentStep": "an agent step",
    "WorkflowStep": "a sub-workflow step",
    "IfStep": "an if step",
    "SwitchStep": "a switch step",
    "ForEachStep": "a forEach step",
    "ParallelStep": "a parallel step",
    "WaitStep": "a wait step",
    "TryStep": "a try step",
    "TransformStep": "a transform step",
    "HandoffStep": "a handoff step",
    "ModelSpec": "model",
    "Execution": "execution",
    "RetryPolicy": "retry",
    "Handler": "handler",
    "HttpHandler": "handler.http",
}


# ------------------------------------------------------------------------------------------------
# pydantic errors → diagnostics


def _candidates(annotation: Any) -> list[type[BaseModel]]:
    """The model classes an annotation may hold (through Optional, list, dict, Union, Annotated)."""
    out: list[type[BaseModel]] = []
    stack = [annotation]
    while stack:
        a = stack.pop()
        if isinstance(a, type) and issubclass(a, BaseModel):
            out.append(a)
            continue
        origin = typing.get_origin(a)
        if origin is typing.Annotated:
            stack.append(typing.get_args(a)[0])
        elif origin in (Union, types.UnionType, list, dict, tuple):
            stack.extend(typing.get_args(a))
    return out


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that owns the last element of `loc` (union tags are followed)."""
    current: list[type[BaseModel]] = [root]
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if isinstance(part, str) and part in STEP_TYPES and any(STEP_TYPES[part] in _expand(c) for c in current):
            current = [STEP_TYPES[part]]
            continue
        nxt: list[type[BaseModel]] = []
        for cls in current:
            fld = cls.model_fields.get(part) or next((f for f in cls.model_fields.values() if f.alias == part), None)
            if fld is not None:
                nxt.extend(_candidates(fld.annotation))
        if not nxt:  # a dict key, or a union member name pydantic put in the location
            by_name = [c for c in _all_candidates(current) if c.__name__ == part]
            nxt = by_name or current
        current = nxt
    return current[0] if len(current) == 1 else (current[0] if current else None)


def _expand(cls: type[BaseModel]) -> list[type[BaseModel]]:
    return [cls]


def _all_candidates(current: list[type[BaseModel]]) -> list[type[BaseModel]]:
    out = list(current)
    for cls in current:
        for f in cls.model_fields.values():
            out.extend(_candidates(f.annotation))
    return out


def _field_names(cls: type[BaseModel] | None) -> list[str]:
    if cls is None:
        return []
    return [f.alias or name for name, f in cls.model_fields.items()]


def _data_path(data: Any, loc: tuple[Any, ...], missing: bool = True) -> Path:
    """Follow `loc` through the data, dropping the union tags pydantic inserts."""
    out: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        if (
            isinstance(node, dict)
            and i > 0
            and isinstance(loc[i - 1], int)
            and part in STEP_TYPES
            and node.get("type") == part
        ):
            continue  # a step's union tag, even when a field has the same name (agent, action, workflow)
        in_dict = isinstance(node, dict) and isinstance(part, str) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            out.append(part)
            node = node[part]
        elif i == len(loc) - 1 and isinstance(node, dict) and missing:
            out.append(part)  # a missing field: name it
        # else: a union tag or member name; skip
    return tuple(out)


def step_id_at(data: Any, path: Path) -> str | None:
    """The id of the innermost step along `path`."""
    found: str | None = None
    node = data
    for i, part in enumerate(path):
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(node, dict) and isinstance(part, int) and isinstance(node.get("id"), str) and i > 0:
            found = node["id"]
    return found


class _Reporter:
    """Makes diagnostics with file, line, path and step for one raw manifest."""

    def __init__(self, raw: RawManifest, bag: DiagnosticBag) -> None:
        self.raw = raw
        self.bag = bag

    def __call__(
        self,
        code: str,
        message: str,
        path: Path = (),
        *,
        hint: str | None = None,
        step_id: str | None = None,
        severity: str = "error",
        line_delta: int = 0,
    ) -> None:
        pos = position_of(self.raw.data, path)
        pos = pos if pos and pos[0] else None  # (0, 0): data given as Python objects has no position
        self.bag.add(
            Diagnostic(
                code,
                message,
                path=format_path(self.raw.prefix + path),
                file=self.raw.file,
                line=(pos[0] + line_delta) if pos else None,
                column=pos[1] if pos else None,
                step_id=step_id if step_id is not None else step_id_at(self.raw.data, path),
                hint=hint,
                severity=severity,  # type: ignore[arg-type]
            )
        )


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the text {value!r}" if len(value) < 40 else "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def pydantic_diagnostics(exc: ValidationError, raw: RawManifest, cls: type[BaseModel], bag: DiagnosticBag) -> None:
    report = _Reporter(raw, bag)
    seen: dict[Path, list[Any]] = {}
    for err in exc.errors(include_url=False):
        path = _data_path(raw.data, tuple(err["loc"]), err["type"] == "missing")
        seen.setdefault(path, []).append(err)
    for path in [p for p in seen if any(len(q) > len(p) and q[: len(p)] == p for q in seen)]:
        del seen[path]  # a union member that failed on the shape, beside one that got further: report that one
    for path, errs in seen.items():
        err = errs[0]
        typ = err["type"]
        loc = tuple(err["loc"])
        owner = _model_at(cls, loc) if loc else cls
        what = _FRIENDLY.get(owner.__name__, f"'{owner.__name__}'") if owner else "this block"
        field = str(path[-1]) if path else ""
        if typ == "extra_forbidden":
            names = _field_names(owner)
            best = did_you_mean(field, names)
            hint = (
                f"did you mean '{best}'?"
                if best
                else (f"allowed fields: {', '.join(sorted(names))}" if names else None)
            )
            report("UNKNOWN_FIELD", f"'{field}' is not a field of {what}", path, hint=hint)
        elif typ == "missing":
            report("MISSING_REQUIRED_FIELD", f"{what} needs '{field}'", path, hint=f"add '{field}: ...'")
        elif typ == "union_tag_invalid":
            tag = str(err.get("ctx", {}).get("tag", err.get("input")))
            best = did_you_mean(tag, STEP_TYPES)
            report(
                "INVALID_VALUE",
                f"'{tag}' is not a step type",
                path + ("type",),
                hint=f"did you mean '{best}'?" if best else f"use one of: {', '.join(STEP_TYPES)}",
            )
        elif typ == "union_tag_not_found":
            report(
                "MISSING_REQUIRED_FIELD",
                "the step has no 'type' and none can be inferred from its fields",
                path,
                hint=f"add 'type:' (one of {', '.join(STEP_TYPES)})",
            )
        elif typ == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            got = err.get("input")
            options = re.findall(r"'([^']*)'", str(expected))
            best = did_you_mean(str(got), options) if isinstance(got, str) else None
            report(
                "INVALID_VALUE",
                f"'{field}' must be {expected}, found {_describe(got)}",
                path,
                hint=f"did you mean '{best}'?" if best else None,
            )
        elif typ.endswith(("_type", "_parsing")) or typ in ("model_attributes_type", "is_instance_of"):
            expected = sorted({e["type"].removesuffix("_type").removesuffix("_parsing") for e in errs})
            wording = {
                "model": "a mapping",
                "dict": "a mapping",
                "list": "a list",
                "string": "text",
                "int": "an integer",
                "float": "a number",
                "bool": "true or false",
                "model_attributes": "a mapping",
            }
            wanted = " or ".join(dict.fromkeys(wording.get(e, e) for e in expected))
            hint = None
            if field == "version" and isinstance(err.get("input"), int | float):
                hint = f'quote it: version: "{err.get("input")}"'
            report("INVALID_TYPE", f"'{field}' must be {wanted}, found {_describe(err.get('input'))}", path, hint=hint)
        else:
            report("INVALID_VALUE", f"'{field}': {err['msg']}", path)


# ------------------------------------------------------------------------------------------------
# the validator


class Validator:
    """Validates one load against the catalog it will join."""

    def __init__(self, catalog: Catalog, backends: BackendRegistry, bag: DiagnosticBag) -> None:
        self.catalog = catalog
        self.backends = backends
        self.bag = bag
        self.graphs: dict[int, Graph] = {}
        self._broken_steps: list[tuple[RawManifest, Graph, Any]] = []  # workflows whose model failed
        self.broken: set[tuple[str, str]] = set()  # (kind, name) of manifests of this load whose model failed

    # -- models --------------------------------------------------------------------------------

    def build(self, raws: Iterable[RawManifest]) -> list[Loaded[Any]]:
        out: list[Loaded[Any]] = []
        for raw in raws:
            self.bag.extend(raw.warnings)
            cls = MODEL_FOR_KIND[raw.kind]
            try:
                model = cls.model_validate(raw.data)
            except ValidationError as exc:
                pydantic_diagnostics(exc, raw, cls, self.bag)
                if isinstance(raw.data.get("name"), str):
                    self.broken.add((raw.kind, raw.data["name"]))
                self._check_version(raw.data.get("version"), _Reporter(raw, self.bag))  # needs no model
                # keep collecting: the step graph of a broken workflow still has useful problems
                if raw.kind == "workflow" and isinstance(raw.data.get("steps"), list):
                    self._graph_only(raw)
                continue
            out.append(Loaded(raw.kind, model, raw, list(raw.warnings)))
        return out

    def _graph_only(self, raw: RawManifest) -> None:
        graph, builder = build_graph(raw.data["steps"])
        report = _Reporter(raw, self.bag)
        self._report_graph(builder, report)
        self._broken_steps.append((raw, graph, builder))  # its steps are checked in `check`

    def _check_broken_steps(self) -> None:
        """The steps of workflows whose model failed, once the catalog is complete.

        A step that validates on its own gets every usual check; of one that does not, the
        references, execution block and templates that can be read are still checked.
        """
        for raw, graph, builder in self._broken_steps:
            report = _Reporter(raw, self.bag)
            inputs = raw.data.get("inputs")
            scope = _Scope(graph, set(inputs) if isinstance(inputs, dict) else set())
            stack: list[tuple[Any, Path, bool, bool]] = [(raw.data["steps"], ("steps",), False, False)]
            while stack:
                steps, path, in_loop, in_catch = stack.pop()
                for i, data in enumerate(steps):
                    spath = path + (i,)
                    if not isinstance(data, dict):
                        continue
                    try:
                        step: StepBase = _step_adapter().validate_python(data)
                    except ValidationError:
                        self._check_raw_step(data, spath, scope, report, in_loop=in_loop, in_catch=in_catch)
                        stype = data.get("type")
                        for fname in BLOCK_FIELDS:
                            value = data.get(fname)
                            if fname in ("cases", "branches") and isinstance(value, dict):
                                stack.extend(
                                    (v, spath + (fname, k), in_loop, in_catch)
                                    for k, v in value.items()
                                    if isinstance(v, list)
                                )
                            elif isinstance(value, list) and (fname != "steps" or stype in ("forEach", "try")):
                                body = in_loop or (stype == "forEach" and fname == "steps")
                                stack.append((value, spath + (fname,), body, in_catch or fname in ("catch", "finally")))
                        continue
                    self._check_step(None, step, spath, graph, scope, report, builder)
                    for fname, key, block in child_blocks(step):
                        bpath = spath + ((fname, key) if key is not None else (fname,))
                        for sub, sub_path in _walk_steps(block, bpath):
                            self._check_step(None, sub, sub_path, graph, scope, report, builder)
            outputs = raw.data.get("outputs")
            for name, spec in outputs.items() if isinstance(outputs, dict) else ():
                if isinstance(spec, dict):
                    self._check_templates(
                        spec.get("value"),
                        ("outputs", name, "value"),
                        scope,
                        report,
                        None,
                        in_loop=False,
                        in_catch=False,
                    )

    def _check_raw_step(
        self, data: dict[str, Any], path: Path, scope: _Scope, report: _Reporter, *, in_loop: bool, in_catch: bool
    ) -> None:
        """What can be checked of a step that is not valid: references, execution, templates."""
        sid = data["id"] if isinstance(data.get("id"), str) else None
        if isinstance(data.get("connector"), str):
            action = data.get("action")
            self._resolve_connector(
                data["connector"], path + ("connector",), report, action=action if isinstance(action, str) else None
            )
        agent_runtime: str | None = None
        if isinstance(data.get("agent"), str) and data.get("type") in ("agent", "handoff"):
            found = self._resolve_agent(data["agent"], path + ("agent",), report)
            if found and found.model.execution:
                agent_runtime = found.model.execution.runtime
        try:
            execution = Execution.model_validate(data["execution"]) if "execution" in data else None
        except ValidationError:
            execution = None  # already reported
        self._check_execution(
            execution,
            path,
            report,
            step_id=sid,
            inherited_runtime=agent_runtime,
        )
        opaque = data.get("type") == "transform" and data.get("language") in ("jq", "jsonpath", "javascript", "python")
        for key, value in data.items():
            if key in BLOCK_FIELDS or key in ("id", "type", "displayName", "description", "needs"):
                continue
            if key == "expression" and opaque:
                continue
            loop = in_loop or ("forEach" in data and key not in ("forEach", "condition"))
            self._check_templates(value, path + (key,), scope, report, sid, in_loop=loop, in_catch=in_catch)

    # -- cross checks --------------------------------------------------------------------------

    def check(self, items: list[Loaded[Any]]) -> None:
        seen: dict[tuple[str, str, str, str], Loaded[Any]] = {}
        for item in items:
            key = (item.kind, item.namespace, item.name, item.version)
            if key in seen:
                _Reporter(item.raw, self.bag)(
                    "DUPLICATE_MANIFEST",
                    f"{item.ref} is defined twice in this load (also in {seen[key].file})",
                    ("name",),
                    hint="rename one of them or give it another version",
                )
            seen[key] = item
        for item in items:
            report = _Reporter(item.raw, self.bag)
            self._check_meta(item, report)
            if isinstance(item.model, Agent):
                self._check_agent(item, report)
            elif isinstance(item.model, Connector):
                self._check_connector(item, report)
            elif isinstance(item.model, Workflow):
                self._check_workflow(item, report)
        self._check_subworkflow_cycles(items)
        self._check_broken_steps()

    def _check_meta(self, item: Loaded[Any], report: _Reporter) -> None:
        self._check_version(getattr(item.model, "version", None), report)
        requires = getattr(item.model, "requires", None) or {}
        for name, rng in requires.items():
            problem = check_range(rng)
            if problem:
                report(
                    "INVALID_VERSION_RANGE",
                    f"'{rng}' for '{name}' is not a version range: {problem}",
                    ("requires", name),
                    hint="use ranges like '>=0.1.0 <0.3.0', '^1.0' or '~1.2'",
                )

    def _check_version(self, version: Any, report: _Reporter) -> None:
        if isinstance(version, str) and not is_version(version):
            report(
                "INVALID_VERSION",
                f"'{version}' is not a semantic version",
                ("version",),
                hint="write MAJOR.MINOR.PATCH, e.g. 1.0.0",
            )

    # -- backends ------------------------------------------------------------------------------

    def _check_execution(
        self,
        execution: Execution | None,
        path: Path,
        report: _Reporter,
        *,
        step_id: str | None = None,
        inherited_runtime: str | None = None,
        owner: str = "",
    ) -> None:
        if execution is None:
            return
        name = execution.backend
        if name is not None:
            if not self.backends.is_known(name):
                best = self.backends.suggest(name)
                report(
                    "INVALID_BACKEND",
                    f"unknown backend '{name}'",
                    path + ("execution", "backend"),
                    hint=f"did you mean '{best}'?"
                    if best
                    else "use native, langchain, assistants, custom or a registered name",
                    step_id=step_id,
                )
            elif self.backends.canonical(name) == "langchain" and not (execution.runtime or inherited_runtime):
                report(
                    "MISSING_RUNTIME",
                    f"the langchain backend needs a runtime{owner}",
                    path + ("execution", "backend"),
                    hint="add 'runtime: python' (or node) beside the backend",
                    step_id=step_id,
                )
        for framework, rng in execution.compatibility.items():
            problem = check_range(rng)
            p = path + ("execution", "compatibility", framework)
            if problem:
                report(
                    "INVALID_VERSION_RANGE",
                    f"compatibility range '{rng}' for '{framework}' does not parse: {problem}",
                    p,
                    hint="use ranges like '>=0.1.0 <0.3.0', '^1.0' or '~1.2'",
                    step_id=step_id,
                )
                continue
            found = installed_version(framework)
            if found is not None and not matches(found, rng):
                report(
                    "VERSION_MISMATCH",
                    f"{framework} {found} is installed, outside the declared compatibility range '{rng}'",
                    p,
                    hint=f"install a {framework} version matching '{rng}', or widen the range",
                    step_id=step_id,
                    severity="warning",
                )

    # -- agents --------------------------------------------------------------------------------

    def _check_agent(self, item: Loaded[Agent], report: _Reporter) -> None:
        agent = item.model
        self._check_execution(agent.execution, (), report)
        model = agent.model
        if model.provider not in OFFLINE_PROVIDERS and not model.id:
            report(
                "MISSING_REQUIRED_FIELD",
                f"model '{model.provider}' needs an 'id' (the model name)",
                ("model", "id"),
                hint="add e.g. 'id: gpt-4o-mini', or use the offline provider 'echo' or 'scripted'",
            )
        if model.provider == "scripted" and not model.responses:
            report(
                "MISSING_REQUIRED_FIELD",
                "the scripted provider needs 'responses'",
                ("model", "responses"),
                hint="add 'responses: [{content: ...}]'",
            )
        for i, entry in enumerate(agent.toolset):
            text = entry if isinstance(entry, str) else entry.connector
            self._resolve_connector(
                text, ("toolset", i) if isinstance(entry, str) else ("toolset", i, "connector"), report
            )
        if agent.knowledge:
            for i, text in enumerate(agent.knowledge.connectors):
                self._resolve_connector(text, ("knowledge", "connectors", i), report)
        if agent.io:
            self._check_schema(agent.io.inputSchema, ("io", "inputSchema"), report)
            if isinstance(agent.io.outputSchema, dict):
                self._check_schema(agent.io.outputSchema, ("io", "outputSchema"), report)
        if agent.registryMode and not (agent.io and agent.io.outputSchema):
            report(
                "MISSING_REQUIRED_FIELD",
                "registryMode requires io.outputSchema",
                ("io",),
                hint="declare the agent's output schema for registry publishing",
            )

    # -- connectors ----------------------------------------------------------------------------

    def _check_connector(self, item: Loaded[Connector], report: _Reporter) -> None:
        conn = item.model
        names: dict[str, int] = {}
        for i, action in enumerate(conn.actions):
            path: Path = ("actions", i)
            if action.name in names:
                report(
                    "INVALID_VALUE",
                    f"action '{action.name}' is defined twice (also actions[{names[action.name]}])",
                    path + ("name",),
                    hint="give each action a unique name",
                )
            names.setdefault(action.name, i)
            self._check_schema(action.input, path + ("input",), report)
            self._check_schema(action.output, path + ("output",), report)
            h = action.handler
            if h is not None:
                kinds = [k for k in ("function", "http", "command", "kafka", "mcp") if getattr(h, k)]
                if len(kinds) != 1:
                    report(
                        "INVALID_VALUE" if kinds else "MISSING_REQUIRED_FIELD",
                        "a handler needs exactly one of function, http, command, kafka or mcp "
                        f"(found {', '.join(kinds) or 'none'})",
                        path + ("handler",),
                        hint="keep one handler kind per action",
                    )
                if h.http and h.http.timeout is not None and h.http.timeout <= 0:
                    report("INVALID_VALUE", "handler timeout must be positive", path + ("handler", "http", "timeout"))

    def _check_schema(self, schema: Any, path: Path, report: _Reporter) -> None:
        if not schema:
            return
        from jsonschema import SchemaError, validators

        try:
            validators.validator_for(schema).check_schema(schema)
        except SchemaError as exc:
            where = path + tuple(exc.path)
            report("INVALID_SCHEMA", f"invalid JSON Schema: {exc.message}", where, hint="see https://json-schema.org")

    # -- references ----------------------------------------------------------------------------

    def _parse(self, text: str, kind: str, path: Path, report: _Reporter, allow_action: bool = False) -> Ref | None:
        try:
            return parse_ref(text, expected_kind=kind, allow_action=allow_action)
        except RefError as exc:
            report(exc.code, str(exc), path, hint=f"write {kind}:namespace/name@1.0.0, or just the {kind}'s name")
            return None

    def _unknown(self, kind: str, ref: Ref, text: str, path: Path, report: _Reporter) -> None:
        if (kind, ref.name) in self.broken:
            return  # defined in this load but invalid: its own diagnostics say why
        versions = self.catalog.versions(kind, ref)
        if versions:
            report(
                "UNKNOWN_REFERENCE",
                f"no loaded version of {kind} '{ref.name}' matches '{ref.range}' "
                f"(loaded: {', '.join(sorted(versions))})",
                path,
                hint="load a matching version or change the range",
            )
            return
        best = did_you_mean(ref.name, [n.split("/")[-1] for n in self.catalog.names(kind)])
        report(
            "UNKNOWN_REFERENCE",
            f"{kind} '{text}' is not loaded",
            path,
            hint=f"did you mean '{best}'?"
            if best
            else f"load the {kind} manifest first (ow.load or a %%workflow cell)",
        )

    def _resolve_connector(
        self, text: str, path: Path, report: _Reporter, action: str | None = None
    ) -> Loaded[Connector] | None:
        ref = self._parse(text, "connector", path, report, allow_action=True)
        if ref is None:
            return None
        found = self.catalog.connector(ref)
        if found is None:
            self._unknown("connector", ref, text, path, report)
            return None
        wanted = action or ref.action
        conn = found.model
        if wanted and conn.actions and conn.action(wanted) is None:
            names = [a.name for a in conn.actions]
            report(
                "UNKNOWN_REFERENCE",
                f"connector '{found.ref}' has no action '{wanted}'",
                path if action is None else path[:-1] + ("action",),
                hint=(suggestion(wanted, names).strip() or f"actions: {', '.join(names)}"),
            )
        return found

    def _resolve_agent(self, text: str, path: Path, report: _Reporter) -> Loaded[Agent] | None:
        ref = self._parse(text, "agent", path, report)
        if ref is None:
            return None
        found = self.catalog.agent(ref)
        if found is None:
            self._unknown("agent", ref, text, path, report)
        return found

    # -- workflows -----------------------------------------------------------------------------

    def _check_workflow(self, item: Loaded[Workflow], report: _Reporter) -> None:
        wf = item.model
        raw = item.raw.data
        self._check_execution(wf.execution, (), report)
        if wf.timeout is not None and parse_duration(wf.timeout) is None:
            report(
                "INVALID_DURATION",
                f"timeout '{wf.timeout}' is not a duration",
                ("timeout",),
                hint="write e.g. 300, 30s, 10m or 1h",
            )
        for i, trig in enumerate(wf.triggers):
            needed = {"schedule": "cron", "webhook": "path"}.get(trig.type)
            if needed and not getattr(trig, needed):
                report("MISSING_REQUIRED_FIELD", f"a {trig.type} trigger needs '{needed}'", ("triggers", i, needed))
            if trig.type == "event" and not (trig.topic or trig.source):
                report("MISSING_REQUIRED_FIELD", "an event trigger needs 'topic' or 'source'", ("triggers", i))
        graph, builder = build_graph(raw.get("steps", []))
        self.graphs[id(item)] = graph
        self._report_graph(builder, report)
        declared_inputs = set(wf.inputs)
        scope = _Scope(graph, declared_inputs)
        for step, path in _walk_steps(wf.steps, ("steps",)):
            self._check_step(item, step, path, graph, scope, report, builder)
        for name, spec in wf.outputs.items():
            self._check_templates(
                spec.value, ("outputs", name, "value"), scope, report, None, in_loop=False, in_catch=False
            )

    def _report_graph(self, builder: Any, report: _Reporter) -> None:
        for sid, first, second in builder.duplicates:
            first_pos = position_of(report.raw.data, first)
            where = f" (first at line {first_pos[0]})" if first_pos else ""
            report(
                "DUPLICATE_STEP_ID",
                f"step id '{sid}' is used twice{where}",
                second + ("id",),
                step_id=sid,
                hint="step ids must be unique in a workflow, nested steps included",
            )
        for code, message, sid, path, extra in builder.problems:
            cycle = extra.get("cycle", [])
            hint = "remove one of the references (or 'needs') so the steps can run in order"
            report(code, message, path, step_id=sid, hint=hint if cycle else None)

    def _check_step(
        self,
        item: Loaded[Workflow] | None,
        step: StepBase,
        path: Path,
        graph: Graph,
        scope: _Scope,
        report: _Reporter,
        builder: Any,
    ) -> None:
        sid = step.id
        node = graph.nodes.get(sid)
        in_loop = scope.in_loop(sid)
        in_catch = scope.in_catch(sid)
        # references to other manifests
        agent_runtime: str | None = None
        if step.type == "action":  # type: ignore[attr-defined]
            self._resolve_connector(step.connector, path + ("connector",), report, action=step.action)  # type: ignore[attr-defined]
        elif step.type == "agent":  # type: ignore[attr-defined]
            found = self._resolve_agent(step.agent, path + ("agent",), report)  # type: ignore[attr-defined]
            if found and found.model.execution:
                agent_runtime = found.model.execution.runtime
        elif isinstance(step, WorkflowStep):
            self._resolve_subworkflow(item, step, path, report)
        elif isinstance(step, HandoffStep):
            if step.agent is None and not step.selectAgent:
                report("MISSING_REQUIRED_FIELD", "a handoff step needs 'agent' or 'selectAgent'", path, step_id=sid)
            if step.agent:
                self._resolve_agent(step.agent, path + ("agent",), report)
            for j, sel in enumerate(step.selectAgent or []):
                self._resolve_agent(sel.agent, path + ("selectAgent", j, "agent"), report)
        wf_exec = item.model.execution if item is not None else None
        self._check_execution(
            step.execution,
            path,
            report,
            step_id=sid,
            inherited_runtime=agent_runtime or (wf_exec.runtime if wf_exec else None),
        )
        # durations and shapes
        if step.timeout is not None and parse_duration(step.timeout) is None:
            report(
                "INVALID_DURATION",
                f"timeout '{step.timeout}' is not a duration",
                path + ("timeout",),
                step_id=sid,
                hint="write seconds (30) or a duration like 30s, 10m, 1h, 2d",
            )
        if isinstance(step, WaitStep):
            self._check_wait(step, path, report)
        elif isinstance(step, ParallelStep):
            if not step.branches:
                report(
                    "MISSING_REQUIRED_FIELD",
                    "a parallel step needs at least one branch",
                    path + ("branches",),
                    step_id=sid,
                )
            for name in step.branches:
                if not _BRANCH_NAME.match(name):
                    report(
                        "INVALID_VALUE",
                        f"branch name '{name}' must be an identifier (letters, digits, _ or -)",
                        path + ("branches", name),
                        step_id=sid,
                        hint="templates read it as steps.<id>.branches.<name>",
                    )
            if not isinstance(step.join, str) and step.join.count > len(step.branches):
                report(
                    "INVALID_VALUE",
                    f"join count {step.join.count} exceeds the {len(step.branches)} branches",
                    path + ("join",),
                    step_id=sid,
                )
        elif isinstance(step, SwitchStep) and not step.cases:
            report("MISSING_REQUIRED_FIELD", "a switch step needs at least one case", path + ("cases",), step_id=sid)
        elif isinstance(step, ForEachStep) and not isinstance(step.items, str | list):
            report(
                "INVALID_TYPE",
                f"'items' must be a list or an expression, found {_describe(step.items)}",
                path + ("items",),
                step_id=sid,
            )
        elif isinstance(step, TransformStep) and step.language in ("jq", "jsonpath") and "{{" not in step.expression:
            problem = syntax_error(step.language, step.expression)
            if problem:
                report(
                    "INVALID_VALUE",
                    f"the {step.language} expression does not compile: {problem}",
                    path + ("expression",),
                    step_id=sid,
                    hint=f"check the {step.language} syntax of '{step.expression}'",
                )
        elif isinstance(step, TransformStep) and step.language in ("javascript", "python"):
            report(
                "INVALID_VALUE",
                f"transform language '{step.language}' is not supported: no sandbox runs it here",
                path + ("language",),
                step_id=sid,
                hint="use template, jq or jsonpath",
            )
        if step.forEach is not None and not isinstance(step.forEach.items, str | list):
            report(
                "INVALID_TYPE",
                f"'forEach.items' must be a list or an expression, found {_describe(step.forEach.items)}",
                path + ("forEach", "items"),
                step_id=sid,
            )
        for j, need in enumerate(step.needs):
            if need not in graph.nodes:
                best = did_you_mean(need, graph.nodes)
                report(
                    "UNKNOWN_REFERENCE",
                    f"step '{sid}' needs unknown step '{need}'",
                    path + ("needs", j),
                    step_id=sid,
                    hint=f"did you mean '{best}'?" if best else None,
                )
        # templates in the step's own fields
        if node is None:
            return
        info = builder.infos.get(sid)
        if info is None or info.node.path != path:  # a duplicate id: reported once, checked once
            return
        rel = len(path)
        for spath, text in builder.template_strings(info):
            field = spath[rel] if len(spath) > rel else None
            loop_scope = in_loop or (step.forEach is not None and field not in ("forEach", "condition"))
            if isinstance(step, ForEachStep) and field == "items":
                loop_scope = in_loop
            self._check_template_text(text, spath, scope, report, sid, in_loop=loop_scope, in_catch=in_catch)

    def _check_wait(self, step: WaitStep, path: Path, report: _Reporter) -> None:
        sid = step.id
        if (step.duration is None) == (step.until is None):
            report(
                "INVALID_VALUE",
                "a wait step needs exactly one of 'duration' or 'until'",
                path,
                step_id=sid,
                hint="write 'duration: 30s' or 'until: {event: ...}' / 'until: {time: ...}'",
            )
        if step.duration is not None and parse_duration(step.duration) is None:
            report(
                "INVALID_DURATION",
                f"'{step.duration}' is not a duration",
                path + ("duration",),
                step_id=sid,
                hint="write e.g. 30s, 10m, 1h or 2d",
            )
        until = step.until
        if until is not None:
            if (until.event is None) == (until.time is None):
                report(
                    "INVALID_VALUE", "'until' needs exactly one of 'event' or 'time'", path + ("until",), step_id=sid
                )
            if until.time is not None and "{{" not in until.time:
                try:
                    datetime.fromisoformat(until.time.replace("Z", "+00:00"))
                except ValueError:
                    report(
                        "INVALID_VALUE",
                        f"'{until.time}' is not an ISO 8601 time",
                        path + ("until", "time"),
                        step_id=sid,
                        hint="write e.g. 2025-10-08T09:00:00Z",
                    )
            if until.timeout is not None and parse_duration(until.timeout) is None:
                report(
                    "INVALID_DURATION", f"'{until.timeout}' is not a duration", path + ("until", "timeout"), step_id=sid
                )

    def _resolve_subworkflow(
        self, item: Loaded[Workflow] | None, step: WorkflowStep, path: Path, report: _Reporter
    ) -> None:
        text = step.workflow
        if step.version is not None and check_range(step.version):
            report(
                "INVALID_VERSION_RANGE",
                f"'{step.version}' is not a version or range",
                path + ("version",),
                step_id=step.id,
            )
            return
        if text.startswith("workflow:"):
            ref = self._parse(text, "workflow", path + ("workflow",), report)
            if ref is None:
                return
            if step.version:
                ref = Ref(ref.kind, ref.namespace, ref.name, step.version)
        else:
            ref = Ref("workflow", None, text, step.version)
        if self.catalog.workflow(ref) is None:
            self._unknown("workflow", ref, text, path + ("workflow",), report)

    def _check_subworkflow_cycles(self, items: list[Loaded[Any]]) -> None:
        def calls(wf: Workflow) -> list[tuple[str, Ref]]:
            out = []
            for step, _ in _walk_steps(wf.steps, ("steps",)):
                if isinstance(step, WorkflowStep):
                    if step.version is not None and check_range(step.version):
                        continue  # reported as INVALID_VERSION_RANGE; cannot be resolved
                    try:
                        ref = (
                            parse_ref(step.workflow, expected_kind="workflow")
                            if step.workflow.startswith("workflow:")
                            else Ref("workflow", None, step.workflow, step.version)
                        )
                    except RefError:
                        continue
                    out.append((step.id, ref))
            return out

        for item in items:
            if not isinstance(item.model, Workflow):
                continue
            stack: list[tuple[Loaded[Any], list[str]]] = [(item, [item.name])]
            visited: set[int] = set()
            while stack:
                cur, trail = stack.pop()
                if id(cur) in visited:
                    continue
                visited.add(id(cur))
                for _sid, ref in calls(cur.model):
                    target = self.catalog.workflow(ref)
                    if target is None:
                        continue
                    if target is item:
                        chain = " → ".join([*trail, item.name])
                        _Reporter(item.raw, self.bag)(
                            "CIRCULAR_DEPENDENCY",
                            f"sub-workflows call each other in a cycle: {chain}",
                            ("name",),
                            hint="a workflow may not call itself, directly or through others",
                        )
                        stack.clear()
                        break
                    stack.append((target, [*trail, target.name]))

    # -- templates -----------------------------------------------------------------------------

    def _check_templates(
        self,
        value: Any,
        path: Path,
        scope: _Scope,
        report: _Reporter,
        sid: str | None,
        *,
        in_loop: bool,
        in_catch: bool,
    ) -> None:
        from .templates import iter_strings

        for spath, text in iter_strings(value, path):
            self._check_template_text(text, spath, scope, report, sid, in_loop=in_loop, in_catch=in_catch)

    def _check_template_text(
        self, text: str, path: Path, scope: _Scope, report: _Reporter, sid: str | None, *, in_loop: bool, in_catch: bool
    ) -> None:
        info: TemplateInfo = analyse(text)
        if not info.is_template:
            return
        if info.error:
            delta = (info.error_line or 1) - 1 + (1 if "\n" in text.rstrip("\n") else 0)
            loads = "cannot load other templates" in info.error
            report(
                "TEMPLATE_SYNTAX",
                info.error if loads else f"template does not parse: {info.error}",
                path,
                step_id=sid,
                line_delta=delta,
                hint="inline the text instead, or pass it in as an input"
                if loads
                else "check the {{ }} and {% %} pairs, quotes and operators",
            )
            return
        filters = known_filters()
        for name in sorted(info.filters - filters):
            report(
                "TEMPLATE_SYNTAX",
                f"no filter or test named '{name}'",
                path,
                step_id=sid,
                hint=(suggestion(name, filters).strip() or "see docs/manifests.md for the filters"),
            )
        functions = known_functions()
        for root in sorted(info.roots):
            if root in functions:
                continue
            if root not in ROOTS:
                best = did_you_mean(root, [*ROOTS, *functions])
                report(
                    "UNKNOWN_REFERENCE",
                    f"template reads unknown name '{root}'",
                    path,
                    step_id=sid,
                    hint=f"did you mean '{best}'?"
                    if best
                    else f"templates read {', '.join(k for k in ROOTS if k != 'loop')}",
                )
            elif root in LOOP_NAMES and not in_loop:
                report(
                    "UNKNOWN_REFERENCE",
                    f"'{root}' is only defined inside a loop",
                    path,
                    step_id=sid,
                    hint="use it in a forEach step's steps or in a step with forEach/for_each",
                )
            elif root == "error" and not in_catch:
                report(
                    "UNKNOWN_REFERENCE",
                    "'error' is only defined in a try step's catch and finally blocks",
                    path,
                    step_id=sid,
                    hint="read steps.<id>.error to see another step's error",
                )
        for ref in sorted(info.steps):
            if ref not in scope.graph.nodes:
                best = did_you_mean(ref, scope.graph.nodes)
                report(
                    "UNKNOWN_REFERENCE",
                    f"template reads unknown step 'steps.{ref}'",
                    path,
                    step_id=sid,
                    hint=f"did you mean '{best}'?" if best else "reference a step id of this workflow",
                )
            elif (loop := _loop_outside(scope.graph, ref, sid)) is not None:
                report(
                    "UNKNOWN_REFERENCE",
                    f"template reads 'steps.{ref}', which runs once per item inside the forEach '{loop}': "
                    "outside that loop it has no single result",
                    path,
                    step_id=sid,
                    hint=f"read steps.{loop}.output.results (one entry per item) instead",
                )
        for name in sorted(info.inputs):
            if name not in scope.inputs:
                best = did_you_mean(name, scope.inputs)
                report(
                    "UNKNOWN_REFERENCE",
                    f"template reads undeclared input 'inputs.{name}'",
                    path,
                    step_id=sid,
                    hint=f"did you mean '{best}'?"
                    if best
                    else f"declare it under the workflow's inputs: ({name}: {{type: string}})",
                )


def _loop_outside(graph: Graph, ref: str, reader: str | None) -> str | None:
    """The forEach step whose body holds `ref` but not `reader` (None when there is none)."""
    holders: set[str] = set()
    node = graph.nodes.get(reader) if reader else None
    while node is not None:
        holders.add(node.id)
        node = graph.nodes.get(node.parent) if node.parent else None
    node = graph.nodes.get(ref)
    node = graph.nodes.get(node.parent) if node is not None and node.parent else None
    while node is not None:
        if node.type == "forEach" and node.id not in holders:
            return node.id
        node = graph.nodes.get(node.parent) if node.parent else None
    return None


@cache
def _step_adapter() -> TypeAdapter[Any]:
    return TypeAdapter(Step)


class _Scope:
    """Which names are in scope for each step of one workflow."""

    def __init__(self, graph: Graph, inputs: set[str]) -> None:
        self.graph = graph
        self.inputs = inputs
        self._loop: dict[str, bool] = {}
        self._catch: dict[str, bool] = {}

    def _ancestors(self, sid: str) -> list[tuple[str, str]]:
        out = []
        node = self.graph.nodes.get(sid)
        while node is not None and node.parent is not None:
            out.append((node.parent, node.block))
            node = self.graph.nodes.get(node.parent)
        return out

    def in_loop(self, sid: str) -> bool:
        if sid not in self._loop:
            self._loop[sid] = any(
                self.graph.nodes[p].type == "forEach" and block == "steps" for p, block in self._ancestors(sid)
            ) or any(self._has_modifier(p) for p, _ in self._ancestors(sid))
        return self._loop[sid]

    def _has_modifier(self, sid: str) -> bool:
        return False

    def in_catch(self, sid: str) -> bool:
        if sid not in self._catch:
            self._catch[sid] = any(block in ("catch", "finally") for _, block in self._ancestors(sid))
        return self._catch[sid]


def _walk_steps(steps: list[Any], path: Path) -> Iterable[tuple[StepBase, Path]]:
    for i, step in enumerate(steps):
        spath = path + (i,)
        yield step, spath
        for fname, key, block in child_blocks(step):
            bpath = spath + ((fname, key) if key is not None else (fname,))
            yield from _walk_steps(block, bpath)


def walk_steps(steps: list[Any]) -> Iterable[tuple[StepBase, Path]]:
    """Every step of a workflow, nested ones included, with its path."""
    return _walk_steps(steps, ("steps",))


__all__ = ["LMap", "LSeq", "Validator", "pydantic_diagnostics", "walk_steps"]
