"""The routes of published workflows (``POST /workflows``, versions, delete), AgentFlow sources
(``/sources``) and queues (``/queues``); their request and response bodies.

Every one is scoped to the caller's tenant: another tenant's workflow, source or queue answers
404, exactly as one that does not exist.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from owf_magics.runs.definitions import tenant_key
from owf_magics.service import sources
from owf_magics.service.auth import Principal, require
from owf_magics.service.errors import ApiError
from owf_magics.service.runner import RunService
from owf_magics.service.schemas import ERRORS, Manifest, Problem

published = APIRouter(prefix="/workflows", tags=["workflows"], responses=ERRORS)
source_routes = APIRouter(prefix="/sources", tags=["sources"], responses=ERRORS)
queue_routes = APIRouter(prefix="/queues", tags=["queues"], responses=ERRORS)

Write = Annotated[Principal, Depends(require("workflows:write"))]
Read = Annotated[Principal, Depends(require("workflows:read"))]
SourcesRead = Annotated[Principal, Depends(require("sources:read"))]
SourcesWrite = Annotated[Principal, Depends(require("sources:write"))]
Name = Annotated[str, Path(min_length=1, max_length=512, description="the workflow's name")]
Version = Annotated[str, Path(min_length=1, max_length=128, description="a version")]
Ident = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$", description="an id")]
_404: dict[int | str, dict[str, Any]] = {404: ERRORS[422] | {"description": "not in the caller's tenant"}}


def _service(request: Request) -> RunService:
    return request.app.state.service  # type: ignore[no-any-return]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PublishRequest(_Request):
    manifest: Manifest = Field(description="OpenWorkflow (or OpenFlow, AgentFlow, ...) manifests: text or object")


class PublishedWorkflow(BaseModel):
    name: str
    version: str


class PublishResponse(BaseModel):
    status: Literal["published"]
    snapshot: str
    workflows: list[PublishedWorkflow]
    warnings: list[Problem]


class VersionInfo(BaseModel):
    name: str
    version: str
    description: str | None = None
    published_by: str | None = None
    published_at: float


class SourceBody(_Request):
    kind: Literal["llm", "image", "db", "api"]
    config: dict[str, Any] = Field(
        default_factory=dict, description="the source's settings; credential fields are write-only"
    )


class SourceCreate(SourceBody):
    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")


class SourceView(BaseModel):
    id: str
    kind: str
    config: dict[str, Any]
    created_at: float
    updated_at: float


class Bandwidth(_Request):
    max_messages_per_second: float | None = Field(None, gt=0, le=1e9)
    max_requests_per_minute: float | None = Field(None, gt=0, le=1e12)
    tokens_per_minute: float | None = Field(None, gt=0, le=1e15)
    burst_size: int | None = Field(None, ge=1, le=1_000_000_000)


class QueueUpdate(_Request):
    bandwidth: Bandwidth


class QueueView(BaseModel):
    workflow: str
    version: str
    id: str
    bandwidth: dict[str, Any]
    published_bandwidth: dict[str, Any]
    on_limit: str
    subqueues: list[Any]
    adjusted: bool
    waiting: int = Field(0, description="messages waiting for room in this worker")


# -- /workflows ------------------------------------------------------------------------------------


@published.post(
    "",
    status_code=201,
    response_model=PublishResponse,
    responses={409: ERRORS[422] | {"description": "that name and version are already published"}},
    summary="Publish manifests' workflows under the caller's tenant, each at its version",
)
async def publish(body: PublishRequest, request: Request, who: Write) -> dict[str, Any]:
    return await asyncio.to_thread(_service(request).published.publish, who, body.manifest)


@published.get(
    "/{name}/versions",
    response_model=list[VersionInfo],
    responses=_404,
    summary="The published versions of a workflow, newest first",
)
def versions(name: Name, request: Request, who: Read) -> list[dict[str, Any]]:
    rows = _service(request).published.versions(who, name)
    if not rows:
        raise ApiError(404, f"no published workflow '{name}'", {"name": name})
    return [
        {
            "name": d.name,
            "version": d.version,
            "description": d.description,
            "published_by": d.published_by,
            "published_at": d.published_at,
        }
        for d in rows
    ]


@published.delete(
    "/{name}/{version}",
    status_code=204,
    response_class=Response,
    responses=_404,
    summary="Remove a published version (runs keep the snapshot they ran)",
)
def unpublish(name: Name, version: Version, request: Request, who: Write) -> Response:
    _service(request).published.delete(who, name, version)
    return Response(status_code=204)


# -- /sources --------------------------------------------------------------------------------------


def _store_source(
    request: Request, who: Principal, source_id: str, body: SourceBody, *, create: bool
) -> dict[str, Any]:
    svc = _service(request)
    config = dict(body.config)
    if not create:  # a credential sent back as *** keeps the stored one
        old = svc.store.get_sources(who.tenant, source_id)
        if old and any(v == sources.MASK for v in config.values()):
            kept = sources.opened(old[0], svc.keyring)
            config = {k: (kept.get(k) if v == sources.MASK else v) for k, v in config.items()}
    try:
        stored = sources.seal(source_id, tenant_key(who.tenant), body.kind, config, svc.keyring)
    except Exception as exc:
        from owf_magics.errors import OWFError

        if isinstance(exc, OWFError):
            raise ApiError(422, exc.message, exc.details, code="VALIDATION") from None
        raise
    if not svc.store.put_source(stored, create=create):
        if create:
            raise ApiError(409, f"source '{source_id}' exists; PUT /sources/{source_id} replaces it", {"id": source_id})
        raise ApiError(404, f"no source '{source_id}'", {"id": source_id})
    return sources.masked(stored)


@source_routes.post(
    "",
    status_code=201,
    response_model=SourceView,
    responses={409: ERRORS[422] | {"description": "a source with that id exists"}},
    summary="Create an AgentFlow source (credential fields are stored encrypted, never read back)",
)
def create_source(body: SourceCreate, request: Request, who: SourcesWrite) -> dict[str, Any]:
    return _store_source(request, who, body.id, SourceBody(kind=body.kind, config=body.config), create=True)


@source_routes.get("", response_model=list[SourceView], summary="The caller's tenant's sources (credentials as ***)")
def list_sources(request: Request, who: SourcesRead) -> list[dict[str, Any]]:
    return [sources.masked(s) for s in _service(request).store.get_sources(who.tenant)]


@source_routes.get("/{source_id}", response_model=SourceView, responses=_404, summary="A source (credentials as ***)")
def get_source(source_id: Ident, request: Request, who: SourcesRead) -> dict[str, Any]:
    found = _service(request).store.get_sources(who.tenant, source_id)
    if not found:
        raise ApiError(404, f"no source '{source_id}'", {"id": source_id})
    return sources.masked(found[0])


@source_routes.put(
    "/{source_id}",
    response_model=SourceView,
    responses=_404,
    summary="Replace a source (a credential sent as *** keeps the stored one)",
)
def replace_source(source_id: Ident, body: SourceBody, request: Request, who: SourcesWrite) -> dict[str, Any]:
    return _store_source(request, who, source_id, body, create=False)


@source_routes.delete(
    "/{source_id}", status_code=204, response_class=Response, responses=_404, summary="Delete a source"
)
def delete_source(source_id: Ident, request: Request, who: SourcesWrite) -> Response:
    if not _service(request).store.delete_source(who.tenant, source_id):
        raise ApiError(404, f"no source '{source_id}'", {"id": source_id})
    return Response(status_code=204)


# -- /queues ---------------------------------------------------------------------------------------


@queue_routes.get(
    "", response_model=list[QueueView], summary="The AgentFlow queues of the caller's published workflows"
)
def list_queues(request: Request, who: Read) -> list[dict[str, Any]]:
    return _service(request).published.queues(who)


@queue_routes.get("/{workflow}/{queue_id}", response_model=QueueView, responses=_404, summary="One queue")
def get_queue(workflow: Name, queue_id: Ident, request: Request, who: Read) -> dict[str, Any]:
    for q in _service(request).published.queues(who):
        if q["workflow"] == workflow and q["id"] == queue_id:
            return q
    raise ApiError(404, f"no queue '{queue_id}' in workflow '{workflow}'", {"workflow": workflow, "queue": queue_id})


@queue_routes.put(
    "/{workflow}/{queue_id}",
    response_model=QueueView,
    responses=_404,
    summary="Set a queue's bandwidth while the servers run (every worker on the store)",
)
def set_queue(workflow: Name, queue_id: Ident, body: QueueUpdate, request: Request, who: Write) -> dict[str, Any]:
    bandwidth = body.bandwidth.model_dump(exclude_none=True)
    if not bandwidth:
        raise ApiError(422, "give at least one bandwidth setting", code="VALIDATION")
    return _service(request).published.set_bandwidth(who, workflow, queue_id, bandwidth)
