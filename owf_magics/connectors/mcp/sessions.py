"""MCP client sessions, pooled per `OpenWorkflow` and event loop.

Lifetime: a session starts on the first call (or tool listing) that needs its server and stays
open for the registry's later runs on the same loop (the main thread's loop every synchronous run
uses, a kernel's run loop), so a stdio server is started once, not once per run; calls are made
on the caller's loop, without a hop to another thread. Listings made from synchronous code (a
load, the CLI) use a session on the ``owf-mcp`` loop thread. A session is closed by
``ow.close()``, when the `OpenWorkflow` is garbage-collected, at interpreter exit (a kernel
shutdown), and when its loop ends (``asyncio.run`` cancels its owner task); closing a stdio
session ends its process (stdin closed, then terminated). A server that dies is noticed by the
call that needed it (BACKEND_ERROR naming the server); the next call starts it again. A canceled
or timed-out run cancels its calls in flight, not the session. Each session lives in one owner
task, because the SDK's transports are anyio task groups that must be entered and left by the
same task.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import threading
import weakref
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

from owf_magics.connectors.mcp.auth import ServerSpec, unwatch, watch
from owf_magics.errors import BackendError, OWFError, StepTimeoutError

T = TypeVar("T")

_hub: list[asyncio.AbstractEventLoop] = []
_hub_lock = threading.Lock()


def hub_loop() -> asyncio.AbstractEventLoop:
    """The loop every MCP session runs on (a daemon thread, started on first use)."""
    with _hub_lock:
        if not _hub or _hub[0].is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="owf-mcp", daemon=True).start()
            _hub[:] = [loop]
        return _hub[0]


def blocking(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run `coro` on the hub loop and wait for it from synchronous code (a load, the CLI)."""
    return asyncio.run_coroutine_threadsafe(coro, hub_loop()).result(timeout)


class ServerGone(Exception):
    """The connection ended under a call (the server exited or the stream broke)."""


class Connection:
    """One client session with one MCP server, owned by one task on one event loop."""

    def __init__(self, spec: ServerSpec, loop: asyncio.AbstractEventLoop) -> None:
        self.spec = spec
        self.loop = loop
        self.session: Any = None
        self.tools: list[Any] | None = None
        self.starts = 0
        self.http_status: dict[str, int] = {}  # the last HTTP error status the server answered
        self._owner: asyncio.Task[None] | None = None
        self._closing: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None

    async def open(self, retries: int | None = None) -> Any:
        """The live session, started (with retries and backoff) when there is none."""
        if self.session is not None and self._owner is not None and not self._owner.done():
            return self.session
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.session is not None and self._owner is not None and not self._owner.done():
                return self.session
            attempts = 1 + (self.spec.retry_attempts if retries is None else retries)
            last: BaseException | None = None
            tried = 0
            for attempt in range(attempts):
                tried += 1
                if attempt:
                    await asyncio.sleep(min(0.2 * 2 ** (attempt - 1), 5.0))
                try:
                    return await self._start()
                except _Refused as exc:  # a refusal (401, 403) is not retried
                    last = exc.__cause__ or exc
                    break
                except OWFError:  # not to be had here (a transport the SDK lacks)
                    raise
                except Exception as exc:
                    last = exc
            raise BackendError(
                f"MCP server '{self.spec.name}' could not be reached: {self.spec.scrub(_describe(last))}",
                details={"server": self.spec.name, "transport": self.spec.transport, "attempts": tried},
            )

    async def _start(self) -> Any:
        ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.http_status.clear()
        self._closing = asyncio.Event()
        self._owner = asyncio.get_running_loop().create_task(self._own(ready, self._closing))
        try:
            session = await ready
        except BaseException:
            self._owner.cancel()
            with contextlib.suppress(BaseException):
                await self._owner
            raise
        self.session = session
        self.starts += 1
        return session

    async def _own(self, ready: asyncio.Future[Any], closing: asyncio.Event) -> None:
        from mcp import ClientSession

        watch(self.spec)
        try:
            async with contextlib.AsyncExitStack() as stack:
                # a server's stderr may carry anything (secrets too): it goes nowhere
                errlog = stack.enter_context(open(os.devnull, "w"))  # noqa: SIM115 - closed by the stack
                streams = await stack.enter_async_context(_transport(self.spec, errlog, self.http_status))
                read, write = streams[0], streams[1]
                session = await stack.enter_async_context(ClientSession(read, write))
                import anyio

                with anyio.fail_after(max(self.spec.timeout, 10.0)):
                    await session.initialize()
                ready.set_result(session)
                await closing.wait()
        except BaseException as exc:
            if ready.done():  # the session ended after it was up: its callers notice
                if not isinstance(exc, Exception):
                    raise
                return
            error = _unwrap(exc)
            status = self.http_status.get("status")
            if status is not None:
                error = _HttpStatus(status)
            if status in (401, 403):
                refused = _Refused()
                refused.__cause__ = error
                error = refused
            ready.set_exception(error)
        finally:
            self.session = None
            unwatch(self.spec)

    async def close(self) -> None:
        owner, self._owner = self._owner, None
        if owner is None:
            return
        if self._closing is not None:
            self._closing.set()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(owner), 8.0)
        if not owner.done():
            owner.cancel()
        self.session = None

    async def list_tools(self, retries: int | None = None) -> list[Any]:
        session = await self.open(retries)
        tools: list[Any] = []
        cursor = None
        while True:
            from mcp.types import PaginatedRequestParams

            result = await self._guard(
                session.list_tools(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
            )
            tools.extend(result.tools)
            cursor = result.next_cursor
            if not cursor:
                break
        self.tools = tools
        return tools

    async def call(self, tool: str, arguments: dict[str, Any]) -> Any:
        session = await self.open()
        return await self._guard(session.call_tool(tool, arguments), tool)

    async def _guard(self, call: Awaitable[T], tool: str | None = None) -> T:
        """A call with the server's timeout; a dead connection closed so the next call restarts it."""
        from mcp.shared.exceptions import MCPError
        from mcp.types import CONNECTION_CLOSED

        what = f"tool '{tool}' of MCP server '{self.spec.name}'" if tool else f"MCP server '{self.spec.name}'"
        try:
            async with asyncio.timeout(self.spec.timeout):
                return await call
        except TimeoutError as exc:
            raise StepTimeoutError(
                f"{what} did not answer within {self.spec.timeout:g}s",
                details={"server": self.spec.name, "tool": tool, "timeout_ms": round(self.spec.timeout * 1000)},
            ) from exc
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                await self.close()
                raise BackendError(
                    f"MCP server '{self.spec.name}' went away during the call to {tool or 'it'} "
                    "(it is started again for the next call)",
                    details={"server": self.spec.name, "tool": tool, "reason": "connection closed"},
                ) from None
            raise BackendError(
                f"{what} answered with an error: {self.spec.scrub(exc.message)}",
                details={"server": self.spec.name, "tool": tool, "mcp_code": exc.code},
            ) from None


class _Refused(Exception):
    """The server refused the connection (HTTP 401 or 403): retrying will not help."""


class _HttpStatus(Exception):
    """The HTTP status the server answered the connection with."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status

    def __str__(self) -> str:
        if self.status in (401, 403):
            return f"HTTP {self.status} (refused: check the connector's auth)"
        return f"HTTP {self.status}"


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException | None) -> str:
    inner = _unwrap(exc) if exc is not None else None
    if inner is None:
        return "unknown error"
    response = getattr(inner, "response", None)
    status = getattr(response, "status_code", None)
    if status is not None:
        inner = _HttpStatus(status)
    if isinstance(inner, _HttpStatus):
        return str(inner)
    return f"{type(inner).__name__}: {inner}"


def _transport(spec: ServerSpec, errlog: Any, http_status: dict[str, int]) -> Any:
    """The SDK's transport context manager for this server."""
    if spec.transport == "stdio":
        import sys

        from mcp import StdioServerParameters, stdio_client

        command = sys.executable if spec.command in ("python", "python3") else str(spec.command)
        params = StdioServerParameters(command=command, args=list(spec.args), env=dict(spec.env) or None, cwd=spec.cwd)
        return stdio_client(params, errlog=errlog)
    import httpx2
    from mcp.shared._httpx_utils import MCP_DEFAULT_SSE_READ_TIMEOUT, MCP_DEFAULT_TIMEOUT

    async def status(response: Any) -> None:  # the SDK reports a refusal without its status
        if response.status_code >= 400:
            http_status["status"] = response.status_code

    hooks = {"response": [status]}
    timeout = httpx2.Timeout(MCP_DEFAULT_TIMEOUT, read=MCP_DEFAULT_SSE_READ_TIMEOUT)
    client = httpx2.AsyncClient(
        headers=dict(spec.headers), params=dict(spec.params), timeout=timeout, event_hooks=hooks
    )
    url = str(spec.endpoint)
    if spec.transport == "sse":
        from mcp.client.sse import sse_client

        def factory(headers: Any = None, timeout: Any = None, auth: Any = None) -> Any:
            return httpx2.AsyncClient(
                headers={**(headers or {}), **spec.headers},
                params=dict(spec.params),
                timeout=timeout,
                auth=auth,
                event_hooks=hooks,
            )

        return sse_client(url, httpx_client_factory=factory)
    if spec.transport == "websocket":
        from owf_magics.errors import UnavailableError

        raise UnavailableError(
            f"MCP server '{spec.name}': the websocket transport is not in the installed MCP SDK (2.x)",
            details={"server": spec.name, "suggestion": "use transport: streamable-http (or sse)"},
        )
    from mcp.client.streamable_http import streamable_http_client

    return _with_client(client, streamable_http_client(url, http_client=client))


@contextlib.asynccontextmanager
async def _with_client(client: Any, inner: Any) -> Any:
    async with client, inner as streams:
        yield streams


# --------------------------------------------------------------------------------------------
# the pool: connections per registry


class Pool:
    """The MCP connections of one `OpenWorkflow`, by connector, resolved parameters and loop."""

    def __init__(self) -> None:
        self.connections: dict[tuple[str, str, int], Connection] = {}
        self._lock = threading.Lock()

    def get(self, ref: str, spec: ServerSpec, loop: asyncio.AbstractEventLoop) -> Connection:
        key = (ref, spec.key, id(loop))
        with self._lock:
            conn = self.connections.get(key)
            if conn is None or conn.loop is not loop:
                for k, c in list(self.connections.items()):  # forget those of loops that ended
                    if c.loop.is_closed():
                        del self.connections[k]
                conn = self.connections[key] = Connection(spec, loop)
                if not _hub or loop is not _hub[0]:
                    _close_at_exit()
            return conn

    def close(self) -> None:
        """Close every connection, each on its own loop (waiting for those this thread can)."""
        with self._lock:
            conns, self.connections = list(self.connections.values()), {}
        for conn in conns:
            loop = conn.loop
            if loop.is_closed() or conn.session is None:
                continue
            with contextlib.suppress(Exception):
                if loop.is_running():
                    try:
                        here = asyncio.get_running_loop()
                    except RuntimeError:
                        here = None
                    if here is loop:  # closing from a coroutine on that loop: it finishes after us
                        loop.create_task(conn.close())
                    else:
                        asyncio.run_coroutine_threadsafe(conn.close(), loop).result(15)
                else:  # an idle loop of this thread (the main thread's run loop between runs)
                    loop.run_until_complete(conn.close())


_pools: weakref.WeakKeyDictionary[Any, Pool] = weakref.WeakKeyDictionary()
_all: list[weakref.ref[Pool]] = []


def pool_for(host: Any) -> Pool:
    """The pool of this registry (closed when the registry is garbage-collected)."""
    pool = _pools.get(host)
    if pool is None:
        pool = _pools[host] = Pool()
        weakref.finalize(host, pool.close)
        _all.append(weakref.ref(pool))
    return pool


def close_pool(host: Any) -> None:
    """Close every MCP session of this registry (``ow.close()``)."""
    pool = _pools.pop(host, None)
    if pool is not None:
        pool.close()


def _close_all() -> None:
    for ref in _all:
        pool = ref()
        if pool is not None:
            pool.close()


_registered: list[bool] = []


def _close_at_exit() -> None:
    """Close every session at interpreter exit, before the run loops close (atexit runs last
    registered first: this is registered when the first run's session starts, after its loop)."""
    if not _registered:
        _registered.append(True)
        atexit.register(_close_all)


atexit.register(_close_all)  # sessions on the owf-mcp loop thread (listings at load)
