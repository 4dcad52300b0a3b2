"""Validation: models, references, templates, cycles, backends and versions, every problem at once.

`Validator.build` turns canonical trees into models (pydantic errors become diagnostics with
file:line); `Validator.check` then checks everything that spans manifests. Both only collect:
the caller raises one `ManifestError` at the end.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from owf_magics.errors import DiagnosticBag, did_you_mean, suggestion
from owf_magics.manifest.catalog import Catalog, Loaded
from owf_magics.manifest.loader import LMap, LSeq, position_of
from owf_magics.manifest.mcp_spec import auth_problems
from owf_magics.manifest.models import (
    HANDLER_FIELDS,
    MODEL_FOR_KIND,
    PATTERN_STEPS,
    PATTERN_TYPES,
    Agent,
    Connector,
    Execution,
    ForEachStep,
    HandoffStep,
    ParallelStep,
    StepBase,
    SwitchStep,
    TransformStep,
    WaitStep,
    Workflow,
    WorkflowStep,
    child_blocks,
)
from owf_magics.manifest.normalize import RawManifest, parse_duration
from owf_magics.manifest.queries import syntax_error
from owf_magics.manifest.refs import Ref, RefError, check_range, installed_version, is_version, matches, parse_ref
from owf_magics.manifest.schemas import schema_problem
from owf_magics.plan.diagnostics import Path, Reporter, describe, pydantic_diagnostics
from owf_magics.plan.graph import BLOCK_FIELDS, Graph, build_graph
from owf_magics.plan.output_secrets import check_output_secrets
from owf_magics.plan.patterns import ROUND_FIELDS, check_pattern, is_workflow_entry
from owf_magics.plan.steps import StepScope, step_adapter, walk_steps, walk_steps_at
from owf_magics.plan.template_checks import (
    NO_SECRETS_IN_OUTPUTS,
    check_template_text,
    check_templates,
    raw_env_names,
    secret_place,
)
from owf_magics.plan.tool_inputs import check_tool_input
from owf_magics.runtime.registry import BackendRegistry

OFFLINE_PROVIDERS = frozenset({"echo", "scripted", "workflow"})  # workflow: docs/patterns.md
_BRANCH_NAME = re.compile(r"^[A-Za-z_][\w-]*$")


# ------------------------------------------------------------------------------------------------
# the validator


class Validator:
    """Validates one load against the catalog it will join."""

    def __init__(
        self, catalog: Catalog, backends: BackendRegistry, bag: DiagnosticBag, *, env: Iterable[str] = ()
    ) -> None:
        self.env = frozenset(env)  # OpenWorkflow(env=[...]): names every workflow may read
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
                self._check_version(raw.data.get("version"), Reporter(raw, self.bag))  # needs no model
                # keep collecting: the step graph of a broken workflow still has useful problems
                if raw.kind == "workflow" and isinstance(raw.data.get("steps"), list):
                    self._graph_only(raw)
                continue
            out.append(Loaded(raw.kind, model, raw, list(raw.warnings)))
        return out

    def _graph_only(self, raw: RawManifest) -> None:
        graph, builder = build_graph(raw.data["steps"])
        report = Reporter(raw, self.bag)
        self._report_graph(builder, report)
        self._broken_steps.append((raw, graph, builder))  # its steps are checked in `check`

    def _check_broken_steps(self) -> None:
        """The steps of workflows whose model failed, once the catalog is complete.

        A step that validates on its own gets every usual check; of one that does not, the
        references, execution block and templates that can be read are still checked.
        """
        for raw, graph, builder in self._broken_steps:
            report = Reporter(raw, self.bag)
            inputs = raw.data.get("inputs")
            scope = StepScope(graph, set(inputs) if isinstance(inputs, dict) else set())
            scope.env = self.env | raw_env_names(raw.data)
            stack: list[tuple[Any, Path, bool, bool]] = [(raw.data["steps"], ("steps",), False, False)]
            while stack:
                steps, path, in_loop, in_catch = stack.pop()
                for i, data in enumerate(steps):
                    spath = path + (i,)
                    if not isinstance(data, dict):
                        continue
                    try:
                        step: StepBase = step_adapter().validate_python(data)
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
                        for sub, sub_path in walk_steps_at(block, bpath):
                            self._check_step(None, sub, sub_path, graph, scope, report, builder)
            outputs = raw.data.get("outputs")
            for name, spec in outputs.items() if isinstance(outputs, dict) else ():
                if isinstance(spec, dict):
                    check_templates(
                        spec.get("value"),
                        ("outputs", name, "value"),
                        scope,
                        report,
                        None,
                        in_loop=False,
                        in_catch=False,
                        secrets=NO_SECRETS_IN_OUTPUTS,
                    )

    def _check_raw_step(
        self, data: dict[str, Any], path: Path, scope: StepScope, report: Reporter, *, in_loop: bool, in_catch: bool
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
        if data.get("type") in PATTERN_TYPES and isinstance(data.get("participants"), list):
            for j, name in enumerate(data["participants"]):  # docs/patterns.md
                if isinstance(name, str):
                    self._resolve_agent(name, path + ("participants", j), report)
        opaque = data.get("type") == "transform" and data.get("language") in ("jq", "jsonpath", "javascript", "python")
        for key, value in data.items():
            if key in BLOCK_FIELDS or key in ("id", "type", "displayName", "description", "needs"):
                continue
            if key == "expression" and opaque:
                continue
            loop = in_loop or ("forEach" in data and key not in ("forEach", "condition"))
            loop = loop or (key in ROUND_FIELDS and data.get("type") in PATTERN_TYPES)
            where = secret_place(data.get("type"), isinstance(data.get("connector"), str), key)
            check_templates(value, path + (key,), scope, report, sid, in_loop=loop, in_catch=in_catch, secrets=where)

    # -- cross checks --------------------------------------------------------------------------

    def check(self, items: list[Loaded[Any]]) -> None:
        seen: dict[tuple[str, str, str, str], Loaded[Any]] = {}
        for item in items:
            key = (item.kind, item.namespace, item.name, item.version)
            if key in seen:
                Reporter(item.raw, self.bag)(
                    "DUPLICATE_MANIFEST",
                    f"{item.ref} is defined twice in this load (also in {seen[key].file})",
                    ("name",),
                    hint="rename one of them or give it another version",
                )
            seen[key] = item
        for item in items:
            report = Reporter(item.raw, self.bag)
            self._check_meta(item, report)
            if isinstance(item.model, Agent):
                self._check_agent(item, report)
            elif isinstance(item.model, Connector):
                self._check_connector(item, report)
            elif isinstance(item.model, Workflow):
                self._check_workflow(item, report)
        self._check_subworkflow_cycles(items)
        self._check_broken_steps()

    def _check_meta(self, item: Loaded[Any], report: Reporter) -> None:
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

    def _check_version(self, version: Any, report: Reporter) -> None:
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
        report: Reporter,
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

    def _check_agent(self, item: Loaded[Agent], report: Reporter) -> None:
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
            if is_workflow_entry(entry):  # a workflow as a tool (docs/patterns.md)
                ref = self._parse(text, "workflow", ("toolset", i), report)
                if ref is not None and self.catalog.workflow(ref) is None:
                    self._unknown("workflow", ref, text, ("toolset", i), report)
                continue
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

    def _check_connector(self, item: Loaded[Connector], report: Reporter) -> None:
        conn = item.model
        if conn.mcp is not None:  # an MCP server's auth, in the OpenFlow types
            for where, message, hint, severity in auth_problems(conn.auth):
                report(
                    "INVALID_VALUE" if severity == "error" else "MISSING_REQUIRED_FIELD",
                    message,
                    where,
                    hint=hint,
                    severity=severity,
                )
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
                kinds = [k for k in HANDLER_FIELDS if getattr(h, k)]
                if len(kinds) != 1:
                    report(
                        "INVALID_VALUE" if kinds else "MISSING_REQUIRED_FIELD",
                        f"a handler needs exactly one of {', '.join(HANDLER_FIELDS)} "
                        f"(found {', '.join(kinds) or 'none'})",
                        path + ("handler",),
                        hint="keep one handler kind per action",
                    )
                if h.http and h.http.timeout is not None and h.http.timeout <= 0:
                    report("INVALID_VALUE", "handler timeout must be positive", path + ("handler", "http", "timeout"))

    def _check_schema(self, schema: Any, path: Path, report: Reporter) -> None:
        if not schema:
            return
        problem = schema_problem(schema)
        if problem is not None:
            where = path + problem.path
            report(
                "INVALID_SCHEMA", f"invalid JSON Schema: {problem.message}", where, hint="see https://json-schema.org"
            )

    # -- references ----------------------------------------------------------------------------

    def _parse(self, text: str, kind: str, path: Path, report: Reporter, allow_action: bool = False) -> Ref | None:
        try:
            return parse_ref(text, expected_kind=kind, allow_action=allow_action)
        except RefError as exc:
            report(exc.code, str(exc), path, hint=f"write {kind}:namespace/name@1.0.0, or just the {kind}'s name")
            return None

    def _unknown(self, kind: str, ref: Ref, text: str, path: Path, report: Reporter) -> None:
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
        self, text: str, path: Path, report: Reporter, action: str | None = None
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
        if wanted and (conn.actions or conn.tools_listed) and conn.action(wanted) is None:
            names = [a.name for a in conn.actions]
            report(
                "UNKNOWN_REFERENCE",
                f"connector '{found.ref}' has no action '{wanted}'",
                path if action is None else path[:-1] + ("action",),
                hint=(suggestion(wanted, names).strip() or f"actions: {', '.join(names)}"),
            )
        return found

    def _resolve_agent(self, text: str, path: Path, report: Reporter) -> Loaded[Agent] | None:
        ref = self._parse(text, "agent", path, report)
        if ref is None:
            return None
        found = self.catalog.agent(ref)
        if found is None:
            self._unknown("agent", ref, text, path, report)
        return found

    # -- workflows -----------------------------------------------------------------------------

    def _check_workflow(self, item: Loaded[Workflow], report: Reporter) -> None:
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
        scope = StepScope(graph, declared_inputs)
        scope.env = self.env | {v.name for v in (wf.runtime.environment if wf.runtime else ())}
        for step, path in walk_steps_at(wf.steps, ("steps",)):
            self._check_step(item, step, path, graph, scope, report, builder)
        for name, spec in wf.outputs.items():
            check_templates(
                spec.value,
                ("outputs", name, "value"),
                scope,
                report,
                None,
                in_loop=False,
                in_catch=False,
                secrets=NO_SECRETS_IN_OUTPUTS,
            )
        check_output_secrets(wf, report)  # an output that would show *** for a secret: say so now

    def _report_graph(self, builder: Any, report: Reporter) -> None:
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
        scope: StepScope,
        report: Reporter,
        builder: Any,
    ) -> None:
        sid = step.id
        node = graph.nodes.get(sid)
        in_loop = scope.in_loop(sid)
        in_catch = scope.in_catch(sid)
        # references to other manifests
        agent_runtime: str | None = None
        if step.type == "action":  # type: ignore[attr-defined]
            conn = self._resolve_connector(step.connector, path + ("connector",), report, action=step.action)  # type: ignore[attr-defined]
            if conn is not None and conn.model.mcp is not None:
                check_tool_input(conn.model, step.action, step.input, path, report, sid)  # type: ignore[attr-defined]
        elif step.type == "agent":  # type: ignore[attr-defined]
            found = self._resolve_agent(step.agent, path + ("agent",), report)  # type: ignore[attr-defined]
            if found and found.model.execution:
                agent_runtime = found.model.execution.runtime
        elif isinstance(step, WorkflowStep):
            self._resolve_subworkflow(item, step, path, report)
        elif isinstance(step, PATTERN_STEPS):
            check_pattern(self._resolve_agent, step, path, report)
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
                f"'items' must be a list or an expression, found {describe(step.items)}",
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
                f"'forEach.items' must be a list or an expression, found {describe(step.forEach.items)}",
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
            loop_scope = loop_scope or (field in ROUND_FIELDS and step.type in PATTERN_TYPES)  # type: ignore[attr-defined]
            if isinstance(step, ForEachStep) and field == "items":
                loop_scope = in_loop
            where = secret_place(step.type, step.type == "action", field)  # type: ignore[attr-defined]
            check_template_text(text, spath, scope, report, sid, in_loop=loop_scope, in_catch=in_catch, secrets=where)

    def _check_wait(self, step: WaitStep, path: Path, report: Reporter) -> None:
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
        self, item: Loaded[Workflow] | None, step: WorkflowStep, path: Path, report: Reporter
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
            for step, _ in walk_steps_at(wf.steps, ("steps",)):
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
                        Reporter(item.raw, self.bag)(
                            "CIRCULAR_DEPENDENCY",
                            f"sub-workflows call each other in a cycle: {chain}",
                            ("name",),
                            hint="a workflow may not call itself, directly or through others",
                        )
                        stack.clear()
                        break
                    stack.append((target, [*trail, target.name]))

    # -- templates -----------------------------------------------------------------------------


__all__ = ["LMap", "LSeq", "Validator", "pydantic_diagnostics", "walk_steps"]
