"""What a connection to an MCP server needs, resolved: the transport's parameters with the
connector's ``auth`` rendered (``{{ secrets.NAME }}``, ``{{ env.NAME }}``) into headers or query
parameters. The resolved values never reach a repr, a log line or an error message."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from owf_magics.errors import OWFError
from owf_magics.manifest.mcp_spec import McpAuth, McpServer
from owf_magics.manifest.models import Connector
from owf_magics.manifest.render import redact, render
from owf_magics.manifest.secrets import EnvView, SecretMap, credential_field, reveal


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """One server's resolved connection parameters; `key` tells two apart without showing them."""

    name: str
    transport: str
    command: str | None = None
    args: tuple[str, ...] = ()
    cwd: str | None = None
    endpoint: str | None = None
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    params: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout: float = 30.0  # seconds per call
    retry_attempts: int = 3
    secrets: tuple[str, ...] = field(default=(), repr=False)  # values to scrub from messages

    @property
    def key(self) -> str:
        text = json.dumps(
            [self.transport, self.command, self.args, self.cwd, self.endpoint, self.env, self.headers, self.params],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def scrub(self, text: str) -> str:
        return str(redact(text, {str(i): s for i, s in enumerate(self.secrets)})) if self.secrets else text


def resolve(
    conn: Connector, secrets: Mapping[str, str], env: Mapping[str, str], declared: Iterable[str] = ()
) -> ServerSpec:
    """The connector's ``mcp`` block and ``auth`` with their templates rendered.

    Every ``auth`` field and every ``mcp.env`` value is a credential field: a secret
    (``{{ secrets.NAME }}``, or a declared credential-like ``{{ env.NAME }}``) fills it whole.
    ``env`` reads only the declared variables (the connector's ``runtime.environment`` and
    ``OpenWorkflow(env=[...])``).
    """
    spec: McpServer = conn.mcp or McpServer()
    names = {*declared, *(v.name for v in (conn.runtime.environment if conn.runtime else []))}
    scope = {"secrets": SecretMap(secrets), "env": EnvView(env, names)}

    def text(value: Any) -> str:
        if not (isinstance(value, str) and "{{" in value):
            return str(value)
        with credential_field():
            out = reveal(render(value, scope))
        return "" if out is None else str(out)

    used: list[str] = [v for v in secrets.values() if v]
    auth = McpAuth.model_validate(conn.auth or {})
    headers: dict[str, str] = {}
    params: dict[str, str] = {}
    if auth.type == "api_key":
        headers[auth.header_name] = (auth.prefix or "") + text(auth.api_key or "")
    elif auth.type == "bearer":
        headers["Authorization"] = f"Bearer {text(auth.token or '')}"
    elif auth.type == "basic":
        pair = f"{text(auth.username or '')}:{text(auth.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        used.append(headers["Authorization"][6:])
    elif auth.type == "custom_headers":
        headers.update({k: text(v) for k, v in auth.headers.items()})
    elif auth.type == "query_params":
        params.update({k: text(v) for k, v in auth.params.items()})
    if spec.transport != "stdio" and not spec.endpoint:
        raise OWFError(
            f"MCP server '{conn.name}' has no endpoint for its {spec.transport} transport",
            code="VALIDATION",
            details={"connector": conn.name, "suggestion": "add mcp.endpoint: http://host:port/mcp"},
        )
    if spec.transport == "stdio" and not spec.command:
        raise OWFError(
            f"MCP server '{conn.name}' has no command to start",
            code="VALIDATION",
            details={"connector": conn.name, "suggestion": "add mcp.command (and mcp.args)"},
        )
    return ServerSpec(
        name=conn.name,
        transport=spec.transport,
        command=spec.command,
        args=tuple(spec.args),
        cwd=spec.cwd,
        endpoint=spec.endpoint,
        env={k: text(v) for k, v in spec.env.items()},
        headers=headers,
        params=params,
        timeout=spec.timeout / 1000,
        retry_attempts=spec.retry_attempts,
        secrets=tuple(sorted(set(used), key=len, reverse=True)),
    )


class _Scrubber(logging.Filter):
    """Replaces the credentials of live connections in the log records of the HTTP and MCP
    libraries (httpx logs request URLs, which carry query-parameter credentials)."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if self.values:
            message = record.getMessage()
            cleaned = str(redact(message, {str(i): v for i, v in enumerate(self.values)}))
            if cleaned != message:
                record.msg, record.args = cleaned, None
        return True


SCRUBBER = _Scrubber()
_LOGGERS = ("httpx", "httpx2", "httpcore", "mcp")


def watch(spec: ServerSpec) -> None:
    """Scrub this connection's credentials from library logs while it is open."""
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in _LOGGERS]
    for name in {*names, *_LOGGERS}:  # a logger's filters do not apply to its children's records
        logging.getLogger(name).addFilter(SCRUBBER)
    for value in spec.secrets:
        SCRUBBER.values[value] = SCRUBBER.values.get(value, 0) + 1


def unwatch(spec: ServerSpec) -> None:
    for value in spec.secrets:
        left = SCRUBBER.values.get(value, 0) - 1
        if left > 0:
            SCRUBBER.values[value] = left
        else:
            SCRUBBER.values.pop(value, None)
