"""The ``mcp:`` block of a ``kind: mcp-server`` connector and its ``auth``: models and spellings.

OpenFlow's server and tools configuration (``url``, ``retry_attempts``, ``available_tools``,
``filter``, ``auth`` inside the server) and the registry taxonomy's (``auth: {type: apiKey, in,
name, prefix}``) are rewritten here to the canonical block, each with an ``ALIAS`` warning.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from owf_magics.manifest.loader import LMap, LSeq, Pos


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=False, defer_build=True)


class ApprovalLists(_Strict):
    """``require_approval: {always: [tools], never: [tools]}`` (the OpenAI Responses shape)."""

    always: list[str] = Field(default_factory=list)
    never: list[str] = Field(default_factory=list)


class McpServer(_Strict):
    """How to reach one MCP server, which of its tools to expose, and how to call them."""

    transport: Literal["stdio", "streamable-http", "sse", "websocket"] = "stdio"
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    endpoint: str | None = None
    protocolVersion: str | None = None
    expose: Literal["all"] | list[str] = "all"
    exclude: list[str] = Field(default_factory=list)
    timeout: Annotated[float, Field(gt=0, le=3_600_000)] = 30_000  # ms per call
    retry_attempts: Annotated[int, Field(ge=0, le=5)] = 3
    require_approval: Literal["always", "never"] | ApprovalLists = "never"
    tool_selection: Literal["auto", "manual"] = "auto"
    description: str | None = None

    def exposes(self, tool: str) -> bool:
        """Whether ``expose``/``exclude`` let this tool through."""
        if tool in self.exclude:
            return False
        return self.expose == "all" or tool in self.expose

    def needs_approval(self, tool: str) -> bool:
        rule = self.require_approval
        if isinstance(rule, str):
            return rule == "always"
        if tool in rule.never:
            return False
        return tool in rule.always


class McpAuth(_Strict):
    """A connector's ``auth`` for an MCP server, in the OpenFlow types."""

    type: Literal["none", "api_key", "bearer", "basic", "custom_headers", "query_params"] = "none"
    api_key: str | None = None
    header_name: str = "X-API-Key"
    prefix: str | None = None
    token: str | None = None
    username: str | None = None
    password: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    params: dict[str, str] = Field(default_factory=dict)


#: the fields of ``auth`` that hold a value for each type (the rest must be absent)
AUTH_NEEDS: dict[str, tuple[str, ...]] = {
    "none": (),
    "api_key": ("api_key",),
    "bearer": ("token",),
    "basic": ("username", "password"),
    "custom_headers": ("headers",),
    "query_params": ("params",),
}

# --------------------------------------------------------------------------------------------
# spellings

_KIND_ALIASES = ("mcp", "mcp_server", "mcpServer", "mcp-servers")
_TRANSPORTS = {
    "http": "streamable-http",
    "streamable_http": "streamable-http",
    "streamableHttp": "streamable-http",
    "streamable-https": "streamable-http",
    "ws": "websocket",
    "wss": "websocket",
}
_BLOCK_KEYS = {
    "url": "endpoint",
    "retryAttempts": "retry_attempts",
    "requireApproval": "require_approval",
    "available_tools": "expose",
    "availableTools": "expose",
    "filter": "exclude",
    "protocol_version": "protocolVersion",
    "working_dir": "cwd",
    "workingDir": "cwd",
    "toolSelection": "tool_selection",
}
#: OpenFlow server fields written at the connector's top level
_TOP_KEYS = ("url", "endpoint", "command", "args", "transport", "timeout", "retry_attempts", "require_approval")
_AUTH_TYPES = {
    "apiKey": "api_key",
    "apikey": "api_key",
    "api-key": "api_key",
    "token": "bearer",
    "headers": "custom_headers",
}
_AUTH_KEYS = {"apiKey": "api_key", "key": "api_key", "headerName": "header_name", "user": "username"}


def _move(m: LMap, old: str, new: str, value: Any, pos: Pos | None) -> None:
    m.pop(old, None)
    m.key_pos.pop(old, None)
    m[new] = value
    if pos is not None:
        m.key_pos[new] = pos


def normalise_mcp_connector(m: LMap, ctx: Any) -> None:
    """Rewrite an MCP connector's spellings in place (``ctx`` is normalize's warning collector)."""
    kind = m.get("kind")
    if kind in _KIND_ALIASES:
        ctx.alias(("kind",), str(kind), "mcp-server", m.key_pos.get("kind", m.pos))
        m["kind"] = kind = "mcp-server"
    block = m.get("mcp")
    if kind != "mcp-server" and not isinstance(block, LMap):
        return
    if block is None:  # OpenFlow: the server's fields may all sit at the connector's top level
        block = LMap(pos=m.pos)
        m["mcp"] = block
    if not isinstance(block, LMap):
        return
    for key in _TOP_KEYS:  # OpenFlow's server configuration, flat on the connector
        if key in m and key not in block and kind == "mcp-server":
            pos = m.key_pos.get(key, m.pos)
            new = _BLOCK_KEYS.get(key, key)
            value = m.pop(key)
            m.key_pos.pop(key, None)
            _move(block, key, new, value, pos)
            ctx.alias(("mcp", new), key, f"mcp.{new}", pos)
    for old, new in _BLOCK_KEYS.items():
        if old in block and new not in block:
            pos = block.key_pos.get(old, block.pos)
            _move(block, old, new, block[old], pos)
            ctx.alias(("mcp", new), old, new, pos)
    transport = block.get("transport")
    if isinstance(transport, str) and transport in _TRANSPORTS:
        ctx.alias(("mcp", "transport"), transport, _TRANSPORTS[transport], block.key_pos.get("transport", block.pos))
        block["transport"] = _TRANSPORTS[transport]
    if block.get("auto_discover") is False and "expose" not in block:  # OpenFlow: no tools unless listed
        block["expose"] = LSeq(pos=block.pos)
    if "auto_discover" in block:
        pos = block.key_pos.get("auto_discover", block.pos)
        block.pop("auto_discover")
        ctx.alias(("mcp", "expose"), "auto_discover", "expose: all | [tools]", pos)
    if "auth" in block and "auth" not in m:  # OpenFlow puts auth in the server configuration
        pos = block.key_pos.get("auth", block.pos)
        _move(m, "auth", "auth", block.pop("auth"), pos)
        ctx.alias(("auth",), "mcp.auth", "auth", pos)
    auth = m.get("auth")
    if isinstance(auth, LMap):
        _normalise_auth(auth, ctx)


def _normalise_auth(auth: LMap, ctx: Any) -> None:
    kind = auth.get("type")
    pos = auth.key_pos.get("type", auth.pos)
    if kind == "http" and isinstance(auth.get("scheme"), str):  # OpenAPI's {type: http, scheme: bearer}
        scheme = str(auth.pop("scheme")).lower()
        auth["type"] = kind = scheme if scheme in ("bearer", "basic") else kind
        ctx.alias(("auth", "type"), "type: http + scheme", f"type: {kind}", pos)
    if isinstance(kind, str) and kind in _AUTH_TYPES:
        ctx.alias(("auth", "type"), kind, _AUTH_TYPES[kind], pos)
        auth["type"] = kind = _AUTH_TYPES[kind]
    for old, new in _AUTH_KEYS.items():
        if old in auth and new not in auth:
            _move(auth, old, new, auth[old], auth.key_pos.get(old, auth.pos))
            ctx.alias(("auth", new), old, new, auth.key_pos.get(new))
    where = auth.get("in")
    if kind == "api_key" and isinstance(where, str):  # the registry taxonomy: {in, name, prefix, value}
        name = auth.pop("name", None)
        auth.pop("in")
        value = auth.pop("value", None)
        if value is not None and "api_key" not in auth:
            auth["api_key"] = value
        if where == "query":
            key = str(name or "api_key")
            params = LMap(pos=auth.pos)
            params[key] = auth.pop("api_key", "")
            auth["type"], auth["params"] = "query_params", params
            auth.pop("prefix", None)
            ctx.alias(("auth",), "in: query", "type: query_params + params", pos)
        else:
            if name is not None:
                auth["header_name"] = name
            ctx.alias(("auth",), "in: header + name", "header_name", pos)


def auth_problems(auth: Any) -> list[tuple[tuple[str | int, ...], str, str, str]]:
    """What is wrong with an MCP connector's ``auth``: ``(path, message, hint, severity)`` each.

    A missing credential value is a warning: the registry taxonomy's manifests leave it to the
    runtime (``{{ secrets.NAME }}`` fills it), and the server refuses the call without it.
    """
    if auth is None:
        return []
    from pydantic import ValidationError

    try:
        model = McpAuth.model_validate(auth)
    except ValidationError as exc:
        return [
            (
                ("auth", *err["loc"]),
                err["msg"],
                "auth types: none, api_key, bearer, basic, custom_headers, query_params",
                "error",
            )
            for err in exc.errors()
        ]
    return [
        (
            ("auth",),
            f"auth type '{model.type}' has no '{name}'",
            f"add auth.{name}, e.g. '{{{{ secrets.NAME }}}}'",
            "warning",
        )
        for name in AUTH_NEEDS[model.type]
        if not getattr(model, name)
    ]
