"""The ``mcp`` handler kind: a ``kind: mcp-server`` connector's tools, called over the official
MCP SDK's client sessions (`sessions`), with approvals that wait durably.

The server's tools become the connector's actions (listed at load, or on first use when the server
cannot be reached then); a step's output is the tool's structured content when the server sends
one, else its text content (JSON-decoded when it is JSON); a tool error fails the step.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from owf_magics.connectors.mcp.auth import ServerSpec, resolve
from owf_magics.connectors.mcp.sessions import Connection, blocking, close_pool, pool_for
from owf_magics.errors import BackendError, Diagnostic, OWFError, did_you_mean
from owf_magics.manifest.models import Action, Connector, Handler
from owf_magics.manifest.refs import parse_ref
from owf_magics.manifest.render import redact
from owf_magics.runtime.context import CURRENT_KEY, RunContext, Waiting, find_request

__all__ = ["close_pool", "describe_tools", "handle", "list_at_load", "list_tools", "tool_actions", "tools_table"]


def tool_actions(conn: Connector, tools: list[Any]) -> list[Action]:
    """The listed tools that ``expose``/``exclude`` let through, as actions of the connector."""
    spec = conn.mcp
    out = []
    for tool in tools:
        if spec is not None and not spec.exposes(tool.name):
            continue
        out.append(
            Action(
                name=tool.name,
                description=tool.description or tool.title or None,
                input=dict(tool.input_schema or {"type": "object"}),
                output=dict(tool.output_schema) if tool.output_schema else None,
                handler=Handler(mcp={"connector": conn.ref, "tool": tool.name}),
            )
        )
    return out


def _connection(host: Any, conn: Connector, secrets: Mapping[str, str], env: Mapping[str, str]) -> Connection:
    """The registry's connection to this server on the running event loop."""
    spec = resolve(conn, secrets, env, getattr(host, "env", None) or ())
    return pool_for(host).get(conn.ref, spec, asyncio.get_running_loop())


async def list_tools(
    host: Any,
    conn: Connector,
    secrets: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    retries: int | None = None,
) -> Connector:
    """The connector with its server's tools as actions (the session is kept for later calls);
    `retries` overrides the server's ``retry_attempts`` for connecting."""
    import os

    connection = _connection(host, conn, secrets or {}, env if env is not None else os.environ)
    tools = await connection.list_tools(retries)
    return conn.with_tools(tool_actions(conn, tools))


def list_at_load(host: Any, items: list[Any], warnings: list[Diagnostic], timeout: float = 20.0) -> None:
    """List the tools of every MCP connector among freshly loaded manifests, in place.

    A server that cannot be reached now is listed on first use instead (one warning says so).
    """
    import os

    env = host.environment if host.environment is not None else os.environ
    for item in items:
        conn = getattr(item, "model", None)
        if item.kind != "connector" or not isinstance(conn, Connector) or conn.mcp is None or conn.tools_listed:
            continue
        try:
            item.model = blocking(list_tools(host, conn, {}, env, retries=0), timeout)
        except Exception as exc:
            message = exc.message if isinstance(exc, OWFError) else f"{type(exc).__name__}: {exc}"
            warnings.append(
                Diagnostic(
                    "UNAVAILABLE",
                    f"the tools of MCP server '{conn.name}' could not be listed at load ({message}); "
                    "they are listed on first use",
                    path=f"{'.'.join(map(str, item.raw.prefix)) or ''}mcp".lstrip("."),
                    file=item.file,
                    line=(item.raw.data.key_pos.get("mcp") or item.raw.data.pos or (None,))[0],
                    hint="start the server (or pass its secrets) before loading to check tool names at load",
                    severity="warning",
                )
            )


async def _listed(run: RunContext, conn: Connector) -> Connector:
    """The connector with its tools listed, listing them now (and in the catalog) if need be."""
    if conn.tools_listed:
        return conn
    listed = await list_tools(run.host, conn, run.secrets, run.env)
    loaded = run.host.catalog.connector(parse_ref(conn.ref, expected_kind="connector"))
    if loaded is not None and loaded.model.name == conn.name:
        loaded.model = listed
    return listed


async def handle(run: RunContext, handler: Handler, data: Any, step_id: str) -> Any:
    """Call one MCP tool: listed and checked first on first use, approved when the server requires
    it, then called on the registry's session with the server (timeout per call)."""
    target: Mapping[str, Any] = handler.mcp if isinstance(handler.mcp, Mapping) else {"tool": handler.mcp}
    tool = str(target.get("tool"))
    ref = str(target.get("connector") or "")
    cached = run.functions.get("mcp:" + ref)
    if cached is None:
        loaded = run.host.catalog.connector(parse_ref(ref, expected_kind="connector"))
        if loaded is None:
            raise OWFError(f"MCP connector '{ref}' is not loaded", code="VALIDATION", details={"connector": ref})
        conn: Connector = loaded.model
        if not conn.tools_listed:
            conn = await _listed(run, conn)
            _check_tool(conn, tool, data)
        connection = _connection(run.host, conn, run.secrets, run.env)
        cached = run.functions["mcp:" + ref] = (conn, connection)
    conn, connection = cached
    spec = conn.mcp
    if spec is not None and spec.needs_approval(tool):
        _approval(run, conn, connection.spec, tool, data)
    result = await connection.call(tool, data if isinstance(data, dict) else {})
    return tool_output(result, connection.spec, tool)


def _check_tool(conn: Connector, tool: str, data: Any) -> None:
    """After a lazy listing: the tool exists (did you mean...?) and the input fits its schema."""
    action = next((a for a in conn.actions if a.name == tool), None)
    if action is None:
        names = [a.name for a in conn.actions]
        best = did_you_mean(tool, names)
        raise OWFError(
            f"MCP server '{conn.name}' has no tool '{tool}'" + (f"; did you mean '{best}'?" if best else ""),
            code="VALIDATION",
            details={"server": conn.name, "tool": tool, "tools": names},
        )
    if action.input:
        from jsonschema import validators

        errors = sorted(
            validators.validator_for(action.input)(action.input).iter_errors(data), key=lambda e: list(e.path)
        )
        if errors:
            where = ".".join(map(str, errors[0].path)) or "input"
            raise OWFError(
                f"input validation failed for tool '{tool}' of MCP server '{conn.name}': {where}: {errors[0].message}",
                code="VALIDATION",
                details={"field": where, "constraint": errors[0].validator, "errors": len(errors)},
            )


def _approval(run: RunContext, conn: Connector, spec: ServerSpec, tool: str, data: Any) -> None:
    """``require_approval``: wait (durably) for an answer; a rejection fails this call only."""
    shown = redact(data, run.secrets) if run.secrets else data
    match = {"server": conn.name, "tool": tool, "arguments": shown}
    answer = find_request(run, CURRENT_KEY.get(), "approval", match)
    if answer is None or not answer.resolved:
        raise Waiting("approval", {**match, "connector": conn.ref, "required": "always"})
    if answer.value is not True:
        raise OWFError(
            f"the call to tool '{tool}' of MCP server '{conn.name}' was rejected",
            code="CANCELED",
            details={"reason": "rejected", "request_id": answer.id, "server": conn.name, "tool": tool},
        )


_JSON_STARTS = frozenset('{["-0123456789tfn')


def tool_output(result: Any, spec: ServerSpec, tool: str) -> Any:
    """Structured content when there is some, else the text (JSON-decoded when it is JSON)."""
    texts = [c.text for c in result.content if getattr(c, "type", None) == "text"]
    if result.is_error:
        message = spec.scrub(" ".join(texts).strip() or "the tool reported an error")
        raise BackendError(
            f"tool '{tool}' of MCP server '{spec.name}' failed: {message}",
            details={"server": spec.name, "tool": tool},
        )
    if result.structured_content is not None:
        return result.structured_content
    if not texts:
        return [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in result.content] or None
    text = "\n".join(texts)
    if text[:1] not in _JSON_STARTS:  # plain text: no decoding attempt
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def tools_table(conn: Connector) -> list[dict[str, Any]]:
    """One row per exposed tool: name, description, input schema (the CLI and notebook views)."""
    return [
        {"name": a.name, "description": a.description or "", "input": a.input or {}, "output": a.output}
        for a in conn.actions
        if a.handler is not None and a.handler.kind == "mcp"
    ]


def describe_tools(
    host: Any, ref: str, secrets: Mapping[str, str] | None = None, timeout: float = 60.0
) -> list[dict[str, Any]]:
    """The exposed tools of a loaded MCP connector (listed now when they are not known yet):
    ``name, description, input, output`` each, for ``owf mcp tools`` and ``%workflow tools``."""
    import os

    loaded = host.catalog.connector(parse_ref(ref, expected_kind="connector"))
    if loaded is None or loaded.model.mcp is None:
        raise OWFError(
            f"'{ref}' is not a loaded MCP connector",
            code="VALIDATION",
            details={"suggestion": "load a connector with kind: mcp-server and an mcp: block"},
        )
    if not loaded.model.tools_listed or secrets:
        env = host.environment if host.environment is not None else os.environ
        loaded.model = blocking(list_tools(host, loaded.model, secrets or {}, env), timeout)
    return tools_table(loaded.model)
