"""A real MCP server for the tests, built with the SDK's server API (`MCPServer`).

Run as ``python tests/mcp_server.py stdio``, ``... http PORT`` or ``... sse PORT`` (the SDK's
SSE app, endpoint ``/sse``). Over HTTP
the endpoint ``/<auth type>/mcp`` checks that auth type on every request (none | api_key | bearer |
basic | custom_headers | query_params, the expected values in the JSON of ``AUTH_VALUES``, the
api_key header in ``AUTH_HEADER``) and answers 401 otherwise. ``COUNT_FILE``: the ``count`` tool
appends a line there per call.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

server = MCPServer("owf-test")


class Sum(BaseModel):
    total: int


@server.tool(description="Add two integers.")
def add(a: int, b: int) -> Sum:
    return Sum(total=a + b)


@server.tool(description="Echo the text back.", structured_output=False)
def echo(text: str) -> str:
    return text


@server.tool(description="Return a JSON object as text.", structured_output=False)
def as_json(key: str) -> str:
    return json.dumps({"key": key, "length": len(key)})


@server.tool(description="Sleep, then answer.")
async def slow(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"


@server.tool(description="Append one line to COUNT_FILE and return how many lines it has.")
def count(note: str) -> int:
    path = os.environ["COUNT_FILE"]
    with open(path, "a") as fh:
        fh.write(note + "\n")
    with open(path) as fh:
        return len(fh.readlines())


@server.tool(description="Always fails.")
def broken(reason: str) -> str:
    raise ToolError(f"broken: {reason}")


@server.tool(description="Kill the server process.")
def die() -> str:
    os._exit(3)


@server.tool(description="The process id of the server.")
def pid() -> int:
    return os.getpid()


def _authorised(kind: str, scope: dict[str, Any]) -> bool:
    want = json.loads(os.environ.get("AUTH_VALUES", "{}")).get(kind, "")
    headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
    if kind == "none":
        return True
    if kind == "api_key":
        return headers.get(os.environ.get("AUTH_HEADER", "x-api-key").lower()) == want
    if kind == "bearer":
        return headers.get("authorization") == f"Bearer {want}"
    if kind == "basic":
        return headers.get("authorization") == "Basic " + base64.b64encode(want.encode()).decode()
    if kind == "custom_headers":
        return all(headers.get(k.lower()) == v for k, v in want.items())
    if kind == "query_params":
        from urllib.parse import parse_qs

        query = parse_qs(scope.get("query_string", b"").decode())
        return all(query.get(k) == [v] for k, v in want.items())
    return False


def http_app() -> Any:
    app = server.streamable_http_app()

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        kind, _, rest = scope["path"].lstrip("/").partition("/")
        scope = {**scope, "path": "/" + rest, "raw_path": ("/" + rest).encode()}
        if not _authorised(kind, scope):
            await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"unauthorised"})
            return
        await app(scope, receive, send)

    return guarded


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        server.run("stdio")
    elif sys.argv[1] == "sse":
        import uvicorn

        uvicorn.run(server.sse_app(), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
    else:
        import uvicorn

        uvicorn.run(http_app(), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
