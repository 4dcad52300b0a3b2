"""Request and response bodies (pydantic), which FastAPI validates and the OpenAPI document shows.

Requests forbid unknown fields, so a body cannot smuggle anything in (``secrets`` included: run
secrets come only from the server).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Manifest = str | dict[str, Any] | list[Any]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ValidateRequest(_Request):
    """``POST /workflows/validate``."""

    manifest: Manifest = Field(description="OpenWorkflow manifests: YAML/JSON text, or the parsed object")


class ExecuteRequest(_Request):
    """``POST /workflows/execute``: a workflow loaded at start-up by name, or an inline manifest."""

    workflow: Annotated[str, Field(min_length=1, max_length=512)] | None = Field(
        None, description="a loaded workflow's name; with `manifest`, which of its workflows to run"
    )
    version: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        None, description="a version or range of the loaded workflow (default: the highest)"
    )
    manifest: Manifest | None = Field(None, description="manifests to run instead of a loaded workflow")
    inputs: dict[str, Any] = Field(default_factory=dict, description="the workflow's inputs")
    prefer_backend: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        None, description="the backend for steps that name none"
    )


class ResumeRequest(_Request):
    """``POST /runs/{id}/resume``: answers to a waiting run's requests."""

    approvals: dict[str, bool] = Field(default_factory=dict, description="request id -> approve (true) or reject")
    event: Any = Field(None, description="the payload of the event the run waits for, or {event_name: payload}")
    force: bool = Field(False, description="continue a `running` run whose process died")


class Problem(BaseModel):
    """One diagnostic."""

    code: str
    message: str
    line: int | None = None
    column: int | None = None
    step_id: str | None = None
    path: str = ""
    file: str | None = None
    hint: str | None = None


class ValidateResponse(BaseModel):
    status: Literal["valid", "invalid"]
    errors: list[Problem]
    warnings: list[Problem]


class Metrics(BaseModel):
    execution_time_ms: float | None
    tokens_used: int
    cost_usd: float | None
    nodes_executed: list[str]


class Pending(BaseModel):
    id: str
    step_id: str
    kind: str
    payload: dict[str, Any]
    created_at: str


class ExecuteResponse(BaseModel):
    """A finished (or waiting) run; with ``?wait=false`` only ``status`` and ``execution_id``."""

    status: str = Field(description="completed | failed | waiting_approval | canceled; queued | running")
    execution_id: str
    workflow: str | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)
    metrics: Metrics | None = None
    error: dict[str, Any] | None = None
    pending: list[Pending] = Field(default_factory=list)


class RunSummary(BaseModel):
    run_id: str
    workflow: str | None = None
    workflow_version: str | None = None
    status: str
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: float | None = None
    error_code: str | None = None


class RunDetail(RunSummary):
    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)
    error: dict[str, Any] | None = None
    steps: dict[str, Any] = Field(default_factory=dict)
    trace: list[dict[str, Any]] = Field(default_factory=list)
    pending: list[Pending] = Field(default_factory=list)
    metrics: Metrics | None = None


class CancelResponse(BaseModel):
    status: Literal["canceled", "cancel_requested"]
    run_id: str


class WorkflowSummary(BaseModel):
    name: str
    version: str
    namespace: str | None = None
    description: str | None = None
    inputs: dict[str, Any]
    outputs: list[str]
    steps: int
    published: bool = Field(False, description="published to the service (the newest version), not loaded at start-up")


class WorkflowDetail(WorkflowSummary):
    plan: list[dict[str, Any]]
    mermaid: str
    warnings: list[Problem]


class QueueStatus(BaseModel):
    max_concurrent: int
    running: list[str]
    queued: list[str]
    completed: int
    failed: int
    canceled: int
    stopping: bool


class Health(BaseModel):
    status: Literal["ok", "stopping"]
    version: str
    workflows: int


class Error(BaseModel):
    """Every error: ``{"status": "error", "code", "message", "details"}``."""

    status: Literal["error"]
    code: str
    message: str
    details: Any = None


#: The error responses each authenticated route documents.
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Error, "description": "no token, or a token that is expired, not yet valid or wrongly signed"},
    403: {"model": Error, "description": "the token lacks the scope"},
    413: {"model": Error, "description": "the body is larger than the server accepts"},
    422: {"model": Error, "description": "the request is invalid"},
}
