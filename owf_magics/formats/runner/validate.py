"""Validation of a workflow-runner ``WorkflowRequest`` as the Go runner's validator.go does it, but
reporting every problem at once, each at its line (and accepting ``stdout_verbose`` without a
target, which validator.go refuses: docs/decisions.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from owf_magics.errors import Diagnostic, DiagnosticBag
from owf_magics.manifest.loader import SourceDocument, position_of
from owf_magics.manifest.normalize import parse_duration

STDOUT_MODES = ("stdout", "stdout_verbose")
CALLBACK_MODES = ("", "http", *STDOUT_MODES)


class Checker:
    """Collects diagnostics for one request document, each at the line of what it names."""

    def __init__(self, doc: SourceDocument, bag: DiagnosticBag) -> None:
        self.doc = doc
        self.bag = bag
        self.ok = True

    def add(self, code: str, message: str, path: tuple[str | int, ...], hint: str, step_id: str | None = None) -> None:
        pos = position_of(self.doc.data, path)
        self.ok = False
        self.bag.add(
            Diagnostic(
                code,
                message,
                path=".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path).replace(".[", "["),
                file=self.doc.file,
                line=pos[0] if pos else self.doc.line,
                column=pos[1] if pos else None,
                step_id=step_id,
                hint=hint,
            )
        )


def text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def mapping(c: Checker, value: Any, path: tuple[str | int, ...], required: bool = False) -> Mapping[str, Any]:
    if value is None:
        if required:
            c.add("MISSING_REQUIRED_FIELD", f"'{path[-1]}' is required", path[:-1], f"add '{path[-1]}: {{...}}'")
        return {}
    if not isinstance(value, Mapping):
        c.add("INVALID_TYPE", f"'{path[-1]}' must be an object", path, "write it as a JSON object")
        return {}
    return value


def items(c: Checker, value: Any, path: tuple[str | int, ...]) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        c.add("INVALID_TYPE", f"'{path[-1]}' must be a list", path, "write it as a JSON array")
        return []
    return value


def count(c: Checker, value: Any, path: tuple[str | int, ...]) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        c.add("INVALID_TYPE", f"'{path[-1]}' must be an integer", path, "use a whole number")
    elif value < 0:
        c.add("INVALID_VALUE", f"'{path[-1]}' cannot be negative (got {value})", path, "use 0 or more (0: no limit)")


def validate_request(doc: SourceDocument, bag: DiagnosticBag) -> bool:
    """Every problem of the request into ``bag``; True when there was none."""
    c = Checker(doc, bag)
    req = doc.data
    if not text(req.get("query")):
        c.add("MISSING_REQUIRED_FIELD", "query is required (empty)", ("query",), "give the request a non-empty query")
    check_session(c, mapping(c, req.get("session"), ("session",), required=True))
    check_callback(c, req.get("callback"))
    check_workflow(c, mapping(c, req.get("workflow"), ("workflow",), required=True))
    for key in ("metadata", "context"):
        mapping(c, req.get(key), (key,))
    return c.ok


def check_session(c: Checker, session: Mapping[str, Any]) -> None:
    if not session and "session" not in c.doc.data:
        return
    if not text(session.get("session_id")):
        c.add("MISSING_REQUIRED_FIELD", "session.session_id is required", ("session", "session_id"), "add a session_id")
    creds = mapping(c, session.get("credentials"), ("session", "credentials"))
    for key in ("user_id", "account_id"):
        if not text(creds.get(key)):
            c.add(
                "MISSING_REQUIRED_FIELD",
                f"session.credentials.{key} is required",
                ("session", "credentials", key),
                f"add credentials.{key}",
            )
    count(c, session.get("history_size"), ("session", "history_size"))
    count(c, session.get("max_turns"), ("session", "max_turns"))
    check_retention(c, mapping(c, session.get("retention"), ("session", "retention")))


def check_retention(c: Checker, retention: Mapping[str, Any]) -> None:
    """``session.retention: {max_items, max_age}`` (ours): a count, a duration (``30d``, seconds)."""
    for key in retention:
        if key not in ("max_items", "max_age"):
            c.add("UNKNOWN_FIELD", f"session.retention has no field '{key}'", ("session", "retention", key),
                  "use max_items and/or max_age")  # fmt: skip
    count(c, retention.get("max_items"), ("session", "retention", "max_items"))
    age = retention.get("max_age")
    if age is not None and parse_duration(age) is None:
        path = ("session", "retention", "max_age")
        c.add("INVALID_VALUE", f"session.retention.max_age {age!r} is not a duration", path, "seconds, or '30d', '12h'")


def check_callback(c: Checker, callback: Any) -> None:
    if callback is None:
        target, mode = "", ""
    elif isinstance(callback, str):
        target, mode = callback, ""
    elif isinstance(callback, Mapping):
        target, mode = text(callback.get("target")), text(callback.get("mode")).lower()
    else:
        c.add("INVALID_TYPE", "callback must be a URL string or {target, mode}", ("callback",), "see docs/formats.md")
        return
    if mode not in CALLBACK_MODES:
        c.add(
            "INVALID_VALUE",
            f"callback mode '{mode}' is not one of http, stdout, stdout_verbose",
            ("callback", "mode"),
            "use http, stdout or stdout_verbose",
        )
        return
    if mode in STDOUT_MODES:
        return
    path: tuple[str | int, ...] = ("callback", "target") if isinstance(callback, Mapping) else ("callback",)
    if not target.strip():
        c.add(
            "MISSING_REQUIRED_FIELD",
            "callback target is required for http callbacks",
            path,
            "give callback.target an http(s) URL, or set callback.mode to stdout",
        )
        return
    parsed = urlparse(target.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        c.add("INVALID_VALUE", f"callback target '{target}' is not a valid URL", path, "use an absolute http(s) URL")


def check_workflow(c: Checker, wf: Mapping[str, Any]) -> None:
    if not wf and "workflow" not in c.doc.data:
        return
    base: tuple[str | int, ...] = ("workflow",)
    if not text(wf.get("name")):
        c.add("MISSING_REQUIRED_FIELD", "workflow.name is required", (*base, "name"), "name the workflow")
    start = text(wf.get("starting_agent"))
    if not start:
        c.add(
            "MISSING_REQUIRED_FIELD",
            "workflow.starting_agent is required",
            (*base, "starting_agent"),
            "name the agent that runs the query",
        )
    agents = items(c, wf.get("agents"), (*base, "agents"))
    if not agents:
        c.add(
            "MISSING_REQUIRED_FIELD", "workflow.agents cannot be empty", (*base, "agents"), "declare at least one agent"
        )
        return
    seen: dict[str, int] = {}
    for i, agent in enumerate(agents):
        path = (*base, "agents", i)
        if not isinstance(agent, Mapping):
            c.add("INVALID_TYPE", f"agents[{i}] must be an object", path, "write the agent as a JSON object")
            continue
        name = text(agent.get("name"))
        if not name:
            c.add("MISSING_REQUIRED_FIELD", f"agents[{i}] is missing its name", path, "give every agent a name")
            continue
        if name in seen:
            c.add(
                "DUPLICATE_MANIFEST",
                f"duplicate agent name '{name}' (first at agents[{seen[name]}])",
                (*path, "name"),
                "rename one of them",
                step_id=name,
            )
            continue
        seen[name] = i
        check_agent(c, agent, path, name)
    if start and start not in seen:
        c.add(
            "UNKNOWN_REFERENCE",
            f"starting_agent '{start}' not found in agents ({', '.join(sorted(seen)) or 'none'})",
            (*base, "starting_agent"),
            "use the name of a declared agent",
        )
    for i, agent in enumerate(agents):
        if not isinstance(agent, Mapping) or not text(agent.get("name")):
            continue
        name = text(agent.get("name"))
        path = (*base, "agents", i)
        for j, target in enumerate(items(c, agent.get("handoff"), (*path, "handoff"))):
            if text(target) not in seen:
                c.add(
                    "UNKNOWN_REFERENCE",
                    f"agent '{name}' handoff '{target}' not found",
                    (*path, "handoff", j),
                    "hand off to a declared agent",
                    step_id=name,
                )
        for j, tool in enumerate(items(c, agent.get("agent_tools"), (*path, "agent_tools"))):
            target = text(tool.get("agent_name")) if isinstance(tool, Mapping) else ""
            if target not in seen:
                c.add(
                    "UNKNOWN_REFERENCE",
                    f"agent '{name}' agent_tool references unknown agent '{target}'",
                    (*path, "agent_tools", j),
                    "set agent_name to a declared agent",
                    step_id=name,
                )


def check_agent(c: Checker, agent: Mapping[str, Any], path: tuple[str | int, ...], name: str) -> None:
    model = agent.get("model")
    if model is not None:
        m = mapping(c, model, (*path, "model"))
        if isinstance(model, Mapping) and not text(m.get("model")):
            c.add(
                "MISSING_REQUIRED_FIELD",
                f"agent '{name}': model.model is required when model is present",
                (*path, "model"),
                "name the model, e.g. model: gpt-4o-mini",
                step_id=name,
            )
    for j, tool in enumerate(items(c, agent.get("tools"), (*path, "tools"))):
        if not isinstance(tool, Mapping) or not text(tool.get("type")):
            c.add(
                "MISSING_REQUIRED_FIELD",
                f"agent '{name}': tool missing type",
                (*path, "tools", j),
                "set type (web_search, code_interpreter, file_search, image_generation)",
                step_id=name,
            )
    for j, server in enumerate(items(c, agent.get("mcp"), (*path, "mcp"))):
        if not isinstance(server, Mapping) or not text(server.get("address")):
            c.add(
                "MISSING_REQUIRED_FIELD",
                f"agent '{name}': mcp address is required",
                (*path, "mcp", j),
                "give the MCP server's URL as address",
                step_id=name,
            )
    for key in ("input_guardrails", "output_guardrails"):
        for j, gr in enumerate(items(c, agent.get(key), (*path, key))):
            if not isinstance(gr, Mapping) or not text(gr.get("name")):
                c.add(
                    "MISSING_REQUIRED_FIELD",
                    f"agent '{name}': guardrail missing name",
                    (*path, key, j),
                    "name a preset or a registered guardrail",
                    step_id=name,
                )
    out = agent.get("output_type")
    if out is not None:
        o = mapping(c, out, (*path, "output_type"))
        if isinstance(out, Mapping) and not isinstance(o.get("schema"), Mapping):
            c.add(
                "MISSING_REQUIRED_FIELD",
                f"agent '{name}': output_type needs a JSON Schema in 'schema'",
                (*path, "output_type"),
                "add schema: {type: object, ...}",
                step_id=name,
            )
