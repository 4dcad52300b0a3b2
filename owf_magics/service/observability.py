"""What a worker tells its operators: JSON-lines logs on stderr and Prometheus metrics.

Logs: one JSON object a line (``ts``, ``level``, ``logger``, ``message`` and the fields of the
event: ``request_id``, ``tenant``, ``method``, ``route``, ``status``, ``latency_ms`` for a request;
``run_id``, ``workflow``, ``step``, ``status``, ``latency_ms`` for a step or a run). A request's
body, its token and the runs' secrets are never logged: the fields are chosen here, and a message
only ever names ids. ``--log-level`` / ``OWF_LOG_LEVEL`` sets the level (``debug`` adds a line per
step; ``info`` a line per request and per run).

Metrics (``GET /metrics``, scope ``metrics:read``), per worker process, names prefixed ``owf_``:
requests by route and status, request latency, runs by workflow and outcome, run durations, steps,
tokens and cost per workflow, and this worker's run queue (running and queued).
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The fields a log line may carry besides its message (nothing else of a record is written).
FIELDS = (
    "request_id",
    "tenant",
    "sub",
    "method",
    "route",
    "status",
    "latency_ms",
    "run_id",
    "workflow",
    "version",
    "step",
    "attempt",
    "error_code",
    "error_id",
    "tokens",
    "cost_usd",
)
LEVELS = ("critical", "error", "warning", "info", "debug")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
log = logging.getLogger("owf_magics.service")


class JsonFormatter(logging.Formatter):
    """A record as one JSON line: time, level, logger, message and the known `FIELDS`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: str) -> None:
    """JSON lines on stderr for the service's and uvicorn's loggers, at `level`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    numeric = getattr(logging, level.upper(), logging.INFO)
    for name in ("owf_magics", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(numeric)
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True  # requests are logged here, as JSON


class Metrics:
    """The worker's Prometheus metrics, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "owf_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "owf_http_request_duration_seconds", "time to answer a request", ["method", "route"], registry=r
        )
        self.runs = Counter("owf_runs", "runs finished (or waiting), by outcome", ["workflow", "status"], registry=r)
        self.run_seconds = Histogram(
            "owf_run_duration_seconds",
            "run durations",
            ["workflow", "status"],
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, float("inf")),
            registry=r,
        )
        self.steps = Counter("owf_steps", "step executions, by outcome", ["workflow", "status"], registry=r)
        self.tokens = Counter("owf_tokens", "model tokens used", ["workflow"], registry=r)
        self.cost = Counter("owf_cost_usd", "model cost in USD (known prices only)", ["workflow"], registry=r)
        self.running = Gauge("owf_runs_running", "runs executing in this worker", registry=r)
        self.queued = Gauge("owf_run_queue_depth", "runs waiting for a free slot in this worker", registry=r)

    def watch_queue(self, status: Any) -> None:
        """Read the run queue's running and queued counts at each scrape (`status()` gives them)."""
        self.running.set_function(lambda: float(len(status().running)))
        self.queued.set_function(lambda: float(len(status().queued)))

    def watch_agentflow_queues(self, waiting: Any) -> None:
        """Export `waiting()` (``(tenant, workflow, queue, count)`` rows) at each scrape."""
        from prometheus_client.core import GaugeMetricFamily

        class Waiting:
            def collect(self) -> Any:
                family = GaugeMetricFamily(
                    "owf_agentflow_queue_waiting",
                    "messages waiting for room in an AgentFlow queue of a published workflow (this worker)",
                    labels=["tenant", "workflow", "queue"],
                )
                for tenant, workflow, queue, count in waiting():
                    family.add_metric([tenant, workflow, queue], count)
                yield family

        self.registry.register(Waiting())

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))


class RunObserver:
    """Logs and counts one run's steps (the engine's event callback) and its end."""

    def __init__(self, metrics: Metrics, run_id: str, workflow: str, tenant: str | None) -> None:
        self.metrics, self.run_id, self.workflow, self.tenant = metrics, run_id, workflow, tenant

    def __call__(self, event: Mapping[str, Any]) -> None:
        if event.get("type") != "step.execution.completed":
            return
        result = event.get("result") or {}
        status = str(result.get("status") or "unknown")
        self.metrics.steps.labels(self.workflow, status).inc()
        error = result.get("error") if isinstance(result.get("error"), Mapping) else None
        log.debug(
            "step %s",
            status,
            extra={
                "run_id": self.run_id,
                "workflow": self.workflow,
                "tenant": self.tenant,
                "step": event.get("step_id"),
                "attempt": event.get("attempt"),
                "status": status,
                "latency_ms": (event.get("execution") or {}).get("duration_ms"),
                "error_code": error.get("code") if error else None,
            },
        )

    def finished(self, result: Any) -> None:
        status = str(result.status)
        seconds = (result.duration_ms or 0) / 1000
        self.metrics.runs.labels(self.workflow, status).inc()
        self.metrics.run_seconds.labels(self.workflow, status).observe(seconds)
        tokens = int(result.total_tokens or 0)
        if tokens:
            self.metrics.tokens.labels(self.workflow).inc(tokens)
        cost = result.cost_usd
        if isinstance(cost, int | float) and math.isfinite(cost) and cost > 0:  # NaN: an unknown price
            self.metrics.cost.labels(self.workflow).inc(cost)
        log.info(
            "run %s",
            status,
            extra={
                "run_id": self.run_id,
                "workflow": self.workflow,
                "version": getattr(result, "workflow_version", None),
                "tenant": self.tenant,
                "status": status,
                "latency_ms": result.duration_ms,
                "tokens": tokens,
                "error_code": result.error.code if result.error else None,
            },
        )


class RequestLog:
    """ASGI middleware: a request id per request (``X-Request-ID``: the caller's when it is a short
    token, else a new one), echoed in the answer; one log line and the metrics when it is answered."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex[:16]
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        start = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or "unmatched"  # the template, never the ids
            method = str(scope["method"])
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(seconds)
            log.info(
                "%s %s %d",
                method,
                route,
                status,
                extra={
                    "request_id": request_id,
                    "tenant": state.get("tenant"),
                    "sub": state.get("sub"),
                    "method": method,
                    "route": route,
                    "status": status,
                    "latency_ms": round(seconds * 1000, 3),
                },
            )
