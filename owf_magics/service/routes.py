"""The routes, by domain: ``/workflows`` (validate, execute, list, describe) and ``/runs`` (list,
read, follow, resume, cancel, the queue). Every route needs a bearer token with its scope."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from owf_magics.engine import resolve_inputs
from owf_magics.errors import ManifestError
from owf_magics.service import manifests
from owf_magics.service.auth import Principal, require
from owf_magics.service.errors import ApiError, diagnostic, jsonable
from owf_magics.service.events import stream
from owf_magics.service.runner import RunService
from owf_magics.service.schemas import (
    ERRORS,
    CancelResponse,
    ExecuteRequest,
    ExecuteResponse,
    QueueStatus,
    ResumeRequest,
    RunDetail,
    RunSummary,
    ValidateRequest,
    ValidateResponse,
    WorkflowDetail,
    WorkflowSummary,
)
from owf_magics.service.views import record_view, result_view, run_view, workflow_detail, workflow_summary

T = TypeVar("T")
workflows = APIRouter(prefix="/workflows", tags=["workflows"], responses=ERRORS)
runs = APIRouter(prefix="/runs", tags=["runs"], responses=ERRORS)
queues = APIRouter(prefix="/queue", tags=["queues"], responses=ERRORS)

Read = Annotated[Principal, Depends(require("workflows:read"))]
Run = Annotated[Principal, Depends(require("workflows:run"))]
RunsRead = Annotated[Principal, Depends(require("runs:read"))]
Approve = Annotated[Principal, Depends(require("runs:approve"))]
RunId = Annotated[str, Path(min_length=1, max_length=200, description="the run's id")]
Wait = Annotated[bool, Query(description="wait for the run to finish or wait (false: answer 202 at once)")]
Responses = dict[int | str, dict[str, Any]]
_NOT_FOUND: Responses = {404: ERRORS[422] | {"description": "no such run in the caller's tenant"}}
_CONFLICT: Responses = {409: ERRORS[422] | {"description": "the run is not in a state that allows this"}}


def _service(request: Request) -> RunService:
    return request.app.state.service  # type: ignore[no-any-return]


#: Bodies up to this size are loaded on the event loop (about a millisecond); larger ones in a thread,
#: so one big manifest never holds up the other requests.
INLINE_BYTES = 32_768


async def _off_loop_if_large(request: Request, fn: Callable[..., T], *args: Any) -> T:
    if int(request.headers.get("content-length") or 0) <= INLINE_BYTES:
        return fn(*args)
    return await asyncio.to_thread(fn, *args)


# -- /workflows -----------------------------------------------------------------------------------


@workflows.post("/validate", response_model=ValidateResponse, summary="Check manifests without running them")
async def validate(body: ValidateRequest, request: Request, who: Read) -> dict[str, Any]:
    allow = _service(request).config.allow_handlers
    ow = manifests.new_registry(False, allow_handlers=allow)
    try:
        warnings = await _off_loop_if_large(request, manifests.validate, ow, body.manifest)
    except ManifestError as exc:
        return {
            "status": "invalid",
            "errors": [jsonable(diagnostic(d)) for d in exc.diagnostics],
            "warnings": [jsonable(diagnostic(d)) for d in exc.warnings],
        }
    return {"status": "valid", "errors": [], "warnings": [jsonable(diagnostic(d)) for d in warnings]}


@workflows.post(
    "/execute",
    response_model=ExecuteResponse,
    responses={202: {"model": ExecuteResponse, "description": "started (?wait=false)"}, **_CONFLICT},
    summary="Run a loaded workflow by name, or an inline manifest",
)
async def execute(body: ExecuteRequest, request: Request, who: Run, wait: Wait = True) -> JSONResponse:
    svc = _service(request)
    if body.manifest is None and body.workflow is None:
        raise ApiError(422, "give `workflow` (a loaded workflow's name) or `manifest` (manifests to run)")
    inline = published = None
    if body.manifest is not None:
        wf, ow = await _off_loop_if_large(request, svc.inline, body.manifest, body.workflow)
        inline = (ow, manifests.as_text(body.manifest))
    else:
        assert body.workflow is not None
        wf, published = await asyncio.to_thread(svc.named, who, body.workflow, body.version)
    try:
        # inputs are checked before anything is queued, so `?wait=false` answers a bad input with
        # 400 whether or not the run would have started before the answer (no race with the queue)
        resolve_inputs(wf.item.model, body.inputs or {}, files_root=getattr(wf.ow, "files_root", None), item=wf.item)
        started = await asyncio.to_thread(
            svc.start, who, wf, body.inputs, prefer_backend=body.prefer_backend, inline=inline, published=published
        )
    except BaseException:
        if inline is not None:
            manifests.release(inline[0])
        raise
    if not wait:
        try:
            await svc.settle(started, lambda: svc.store.get_run(started.run_id) is not None)
        except Exception:
            await asyncio.to_thread(svc.forget_unstarted, started.run_id)
            raise
        state = "queued" if started.handle.status == "queued" else "running"
        return JSONResponse({"status": state, "execution_id": started.run_id}, status_code=202)
    try:
        result = await started.handle.aresult()
    except Exception:
        await asyncio.to_thread(svc.forget_unstarted, started.run_id)
        raise
    return JSONResponse(result_view(result))


@workflows.get(
    "",
    response_model=list[WorkflowSummary],
    summary="The workflows loaded at start-up, then the tenant's published ones",
)
def list_workflows(request: Request, who: Read) -> list[dict[str, Any]]:
    svc = _service(request)
    loaded = [workflow_summary(wf) for wf in svc.ow.workflows()]
    return loaded + [workflow_summary(wf) | {"published": True} for wf in svc.published.newest(who)]


@workflows.get(
    "/{name}",
    response_model=WorkflowDetail,
    responses={404: ERRORS[422] | {"description": "no such workflow"}},
    summary="A workflow (published in the caller's tenant, else loaded): inputs, outputs, plan, graph",
)
def get_workflow(
    name: Annotated[str, Path(min_length=1, max_length=512)],
    request: Request,
    who: Read,
    version: Annotated[str | None, Query(max_length=128)] = None,
    prefer_backend: Annotated[str | None, Query(max_length=128)] = None,
) -> dict[str, Any]:
    return workflow_detail(_service(request).named(who, name, version)[0], prefer_backend)


# -- /runs ----------------------------------------------------------------------------------------


@runs.get("", response_model=list[RunSummary], summary="The runs of the caller's tenant, newest first")
def list_runs(
    request: Request,
    who: RunsRead,
    status: Annotated[str | None, Query(pattern="^(running|waiting_approval|completed|failed|canceled)$")] = None,
    workflow: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    svc = _service(request)
    queued = svc.queued(who) if status is None else []
    stored = [record_view(r) for r in svc.list_runs(who, status=status, workflow=workflow, limit=limit)]
    return (queued + stored)[:limit]


@runs.get(
    "/{run_id}", response_model=RunDetail, responses=_NOT_FOUND, summary="A run: status, outputs, trace, requests"
)
def get_run(run_id: RunId, request: Request, who: RunsRead) -> dict[str, Any]:
    svc = _service(request)
    record, _ = svc.visible(who, run_id)
    if record is None:
        handle = svc.local(run_id)
        return {"run_id": run_id, "workflow": handle.label if handle else None, "status": "queued"}
    return run_view(record, svc.ow.run(run_id))


@runs.get(
    "/{run_id}/events",
    responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}, **_NOT_FOUND},
    response_class=StreamingResponse,
    summary="The run's events as server-sent events (resumable with Last-Event-ID)",
)
def run_events(
    run_id: RunId,
    request: Request,
    who: RunsRead,
    after: Annotated[int | None, Query(ge=0, description="send events after this sequence number")] = None,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> StreamingResponse:
    svc = _service(request)
    svc.visible(who, run_id)
    start = after or 0
    if last_event_id is not None:
        if not last_event_id.strip().isdigit():
            raise ApiError(422, "Last-Event-ID must be the id of an event this stream sent (a number)")
        start = int(last_event_id)

    def status() -> str | None:
        record = svc.store.get_run(run_id)
        if record is not None:
            return str(record.status)
        return "queued" if svc.local(run_id) is not None else None

    body = stream(svc.store, run_id, start, status=status, stopping=lambda: svc.stopping, poll=svc.config.poll_interval)
    return StreamingResponse(
        body, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


@runs.post(
    "/{run_id}/resume",
    response_model=ExecuteResponse,
    responses={202: {"model": ExecuteResponse, "description": "resumed (?wait=false)"}, **_NOT_FOUND, **_CONFLICT},
    summary="Answer a waiting run's approvals or event, and continue it",
)
async def resume(run_id: RunId, body: ResumeRequest, request: Request, who: Approve, wait: Wait = True) -> JSONResponse:
    svc = _service(request)
    record, labels = await asyncio.to_thread(svc.visible, who, run_id)
    allowed = ("waiting_approval", "running") if body.force else ("waiting_approval",)
    if record is None or record.status not in allowed:
        state = "queued" if record is None else record.status
        raise ApiError(409, f"run '{run_id}' is {state}: only waiting runs resume", {"status": state})
    started = await asyncio.to_thread(svc.resume, run_id, labels, body.approvals, body.event, force=body.force)
    if not wait:

        def moved() -> bool:
            now = svc.store.get_run(run_id)
            return now is not None and now.status != record.status

        await svc.settle(started, moved)
        return JSONResponse({"status": "running", "execution_id": run_id}, status_code=202)
    result = await started.handle.aresult()
    return JSONResponse(result_view(result))


@runs.post(
    "/{run_id}/cancel",
    response_model=CancelResponse,
    responses={**_NOT_FOUND, **_CONFLICT},
    summary="Cancel a queued, running or waiting run",
)
async def cancel(run_id: RunId, request: Request, who: Run) -> dict[str, Any]:
    svc = _service(request)
    record, _ = await asyncio.to_thread(svc.visible, who, run_id)
    return await svc.cancel(who, run_id, record)


@queues.get("", response_model=QueueStatus, summary="This worker's run queue (the caller's runs in it)")
def queue_status(request: Request, who: RunsRead) -> dict[str, Any]:
    return _service(request).queue_view(who)
