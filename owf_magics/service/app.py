"""The FastAPI application: middleware (body limit, CORS when configured), the lifespan that starts
and stops the runs, the health route, and the routers of `routes`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from owf_magics._version import __version__
from owf_magics.service import errors, resources, routes
from owf_magics.service.auth import Principal, TokenChecker, require
from owf_magics.service.config import ServiceConfig
from owf_magics.service.observability import RequestLog
from owf_magics.service.runner import RunService
from owf_magics.service.schemas import ERRORS, Health

#: The Prometheus text format's media type.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class BodyLimit:
    """Refuses (413) a request body larger than `limit` bytes, declared or streamed, before any
    route reads it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await errors.error_response(400, "Content-Length must be a number")(scope, receive, send)
                return
            if int(declared) > self.limit:
                await self._refuse(scope, receive, send)
                return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            total += len(body)
            if total > self.limit:
                await self._refuse(scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body"):
                break
        whole: Message | None = {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        async def replay() -> Message:
            nonlocal whole
            if whole is not None:
                message, whole = whole, None
                return message
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = errors.error_response(
            413, f"the request body is larger than {self.limit} bytes", {"max_body_bytes": self.limit}
        )
        await response(scope, receive, send)


def create_app(config: ServiceConfig, service: RunService | None = None) -> FastAPI:
    """The service as an ASGI app.

    Args:
        config: Its settings (checked here: no key and no ``insecure_dev`` is refused).
        service: The runs (default: a `RunService` for `config`, loading its manifests).
    """
    config.check()
    runs = service if service is not None else RunService(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        watcher = asyncio.create_task(runs.watch_cancels())
        try:
            yield
        finally:
            watcher.cancel()
            await asyncio.to_thread(runs.close, config.shutdown_grace)

    app = FastAPI(
        title="owf-magics",
        version=__version__,
        description="OpenWorkflow runs as a service: validate, execute, follow, approve (docs/service.md).",
        docs_url="/docs" if config.docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if config.docs else None,
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.service = runs
    app.state.tokens = TokenChecker(config)
    errors.install(app)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
        )
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    app.add_middleware(RequestLog, metrics=runs.metrics)  # outermost: every answer is logged and counted

    @app.get("/health", response_model=Health, tags=["health"], summary="Liveness (no token needed)")
    async def health(request: Request) -> dict[str, Any]:
        svc: RunService = request.app.state.service
        return {
            "status": "stopping" if svc.stopping else "ok",
            "version": __version__,
            "workflows": len(svc.ow.workflows()),
        }

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        tags=["health"],
        responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"}, **ERRORS},
        summary="This worker's metrics (Prometheus text format)",
    )
    async def metrics(request: Request, who: Annotated[Principal, Depends(require("metrics:read"))]) -> Response:
        svc: RunService = request.app.state.service
        return Response(svc.metrics.text(), media_type=CONTENT_TYPE)

    app.include_router(resources.published)
    app.include_router(routes.workflows)
    app.include_router(routes.runs)
    app.include_router(routes.queues)
    app.include_router(resources.source_routes)
    app.include_router(resources.queue_routes)
    return app
