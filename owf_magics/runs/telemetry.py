"""OpenTelemetry spans for runs: one span per run, one child span per step execution.

`RunTracer` is an event sink: give it the executor's events (``run.started``,
``step.execution.completed``, ``run.completed``/``run.failed``/``run.canceled``) and it builds the
spans, with the attributes of execution-backends.md ("Trace Attributes") and the GenAI semantic
conventions' token usage. Only ``opentelemetry-api`` is used: nothing is exported unless the user
has configured a ``TracerProvider`` with an exporter (without one the API's spans are no-ops).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from owf_magics._version import __version__
from owf_magics.runtime.context import W3C_TRACE_ID

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

#: The instrumentation scope name of every span.
TRACER_NAME = "owf_magics"

# execution-backends.md, "Trace Attributes"
ATTR_BACKEND_NAME = "backend.name"
ATTR_BACKEND_VERSION = "backend.version"
ATTR_BACKEND_RUNTIME = "backend.runtime"
ATTR_STEP_ID = "step.id"
ATTR_STEP_TYPE = "step.type"
ATTR_AGENT_ID = "agent.id"
ATTR_CONNECTOR_ID = "connector.id"
# OpenTelemetry GenAI semantic conventions
ATTR_GENAI_INPUT_TOKENS = "gen_ai.usage.input_tokens"
ATTR_GENAI_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
ATTR_GENAI_MODEL = "gen_ai.request.model"
ATTR_GENAI_PROVIDER = "gen_ai.provider.name"
ATTR_GENAI_SYSTEM = "gen_ai.system"  # the older name of gen_ai.provider.name; both are set
# ours
ATTR_RUN_ID = "owf.run.id"
ATTR_WORKFLOW_NAME = "owf.workflow.name"
ATTR_WORKFLOW_VERSION = "owf.workflow.version"
ATTR_RUN_STATUS = "owf.run.status"
ATTR_STEP_STATUS = "owf.step.status"
ATTR_STEP_ITERATION = "owf.step.iteration"
ATTR_STEP_ATTEMPT = "owf.step.attempt"
ATTR_TOTAL_TOKENS = "owf.usage.total_tokens"
ATTR_COST_USD = "owf.usage.cost_usd"
ATTR_ERROR_TYPE = "error.type"  # OpenTelemetry's general attribute: the error code


def _ns(timestamp: Any) -> int | None:
    """Nanoseconds since the epoch of an ISO timestamp (``...Z``), or None."""
    if not isinstance(timestamp, str) or not timestamp:
        return None
    try:
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000_000)


def _clean(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """OpenTelemetry attributes: drop None, keep str/bool/int/float, stringify the rest."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if value is None:
            continue
        out[key] = value if isinstance(value, str | bool | int | float) else str(value)
    return out


def _execution_key(body: Mapping[str, Any]) -> tuple[Any, ...]:
    return (body.get("step_id"), body.get("iteration") or "", body.get("attempt") or 1)


def tracing_configured() -> bool:
    """Whether the program set a real tracer provider (the default proxy and no-op ones drop spans)."""
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


class RunTracer:
    """Builds OpenTelemetry spans for one run from its events. Use one per run.

    Use it as a sink (``tracer(event)`` for each event, e.g. alongside a callback), or call
    `start_run`, `step` and `end_run` directly. Step spans are children of the run span; a step
    event carries its start time and duration, so its span gets exactly those times.

    Args:
        tracer_provider: Where spans go; None means the global provider (``trace.set_tracer_provider``).
        plan: The run's `Plan`; when given, each step's ``agent.id``, ``connector.id``, backend
            version and runtime come from its `PlanEntry`.
        step_info: Per step id, extra attributes: ``agent_id``, ``connector_id``, ``model``,
            ``provider`` (these override the plan's).

    Step events may also carry ``agent_id``, ``connector_id``, ``model`` and ``provider`` at top
    level or under ``execution`` (the executor can add them; they win over `step_info`).
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        *,
        plan: Any = None,
        step_info: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        from opentelemetry import trace

        self._trace = trace
        self.tracer: Tracer = trace.get_tracer(TRACER_NAME, __version__, tracer_provider=tracer_provider)
        self.plan = plan
        self.step_info = {k: dict(v) for k, v in (step_info or {}).items()}
        self.run_span: Span | None = None
        self.run_id: str | None = None
        self._lock = threading.Lock()
        self._tokens = 0
        self._cost = 0.0
        self._agent_events: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}  # per step execution

    # -- direct API -----------------------------------------------------------------------------

    def start_run(
        self,
        run_id: str,
        workflow: str,
        *,
        version: str | None = None,
        start_time_ns: int | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Span:
        """Open the run's span (``workflow <name>``)."""
        with self._lock:
            self.run_id = run_id
            self.run_span = self.tracer.start_span(
                f"workflow {workflow}",
                start_time=start_time_ns,
                attributes=_clean(
                    {
                        ATTR_RUN_ID: run_id,
                        ATTR_WORKFLOW_NAME: workflow,
                        ATTR_WORKFLOW_VERSION: version,
                        ATTR_BACKEND_NAME: "native",
                        ATTR_BACKEND_VERSION: __version__,
                        ATTR_BACKEND_RUNTIME: "python",
                        **dict(attributes or {}),
                    }
                ),
            )
            W3C_TRACE_ID.set(format(self.run_span.get_span_context().trace_id, "032x"))
            return self.run_span

    def step(
        self,
        step_id: str,
        step_type: str,
        *,
        status: str,
        start_time_ns: int | None = None,
        end_time_ns: int | None = None,
        backend: str | None = None,
        backend_version: str | None = None,
        runtime: str | None = None,
        agent_id: str | None = None,
        connector_id: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        total_tokens: int | None = None,
        cost_usd: float | None = None,
        iteration: str | None = None,
        attempt: int | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> Span:
        """Record one finished step execution as a child span of the run (``step <id>``)."""
        from opentelemetry.trace import Status, StatusCode

        entry = self._plan_entry(step_id)
        info = self.step_info.get(step_id, {})
        attrs = {
            ATTR_STEP_ID: step_id,
            ATTR_STEP_TYPE: step_type,
            ATTR_BACKEND_NAME: backend or getattr(entry, "backend", None),
            ATTR_BACKEND_VERSION: backend_version or getattr(entry, "adapter_version", None),
            ATTR_BACKEND_RUNTIME: runtime or getattr(entry, "runtime", None),
            ATTR_AGENT_ID: agent_id or info.get("agent_id") or getattr(entry, "agent", None),
            ATTR_CONNECTOR_ID: connector_id or info.get("connector_id") or getattr(entry, "connector", None),
            ATTR_STEP_STATUS: status,
            ATTR_STEP_ITERATION: iteration or None,
            ATTR_STEP_ATTEMPT: attempt,
            ATTR_RUN_ID: self.run_id,
        }
        model = model or info.get("model")
        provider = provider or info.get("provider")
        if model is not None or input_tokens is not None or output_tokens is not None:
            attrs.update(
                {
                    ATTR_GENAI_MODEL: model,
                    ATTR_GENAI_PROVIDER: provider,
                    ATTR_GENAI_SYSTEM: provider,
                    ATTR_GENAI_INPUT_TOKENS: input_tokens,
                    ATTR_GENAI_OUTPUT_TOKENS: output_tokens,
                    ATTR_TOTAL_TOKENS: total_tokens,
                }
            )
        if cost_usd:
            attrs[ATTR_COST_USD] = cost_usd
        if error_code:
            attrs[ATTR_ERROR_TYPE] = error_code
        with self._lock:
            parent = self._trace.set_span_in_context(self.run_span) if self.run_span is not None else None
            span = self.tracer.start_span(
                f"step {step_id}", context=parent, start_time=start_time_ns, attributes=_clean(attrs)
            )
            self._tokens += int(total_tokens or 0)
            self._cost += float(cost_usd or 0.0)
        if status in ("failed", "error"):
            span.set_status(Status(StatusCode.ERROR, f"{error_code}: {error_message}" if error_code else None))
        elif status == "success":
            span.set_status(Status(StatusCode.OK))
        span.end(end_time=end_time_ns)
        return span

    def end_run(
        self,
        status: str,
        *,
        error_code: str | None = None,
        error_message: str | None = None,
        end_time_ns: int | None = None,
    ) -> None:
        """Close the run's span with its final status (``completed`` → OK, ``failed`` → ERROR;
        ``waiting_approval`` and ``canceled`` leave the status unset)."""
        from opentelemetry.trace import Status, StatusCode

        with self._lock:
            span, self.run_span = self.run_span, None
        if span is None:
            return
        span.set_attributes(
            _clean(
                {
                    ATTR_RUN_STATUS: status,
                    ATTR_TOTAL_TOKENS: self._tokens,
                    ATTR_COST_USD: round(self._cost, 8),
                    ATTR_ERROR_TYPE: error_code,
                }
            )
        )
        if status == "completed":
            span.set_status(Status(StatusCode.OK))
        elif status == "failed":
            span.set_status(Status(StatusCode.ERROR, f"{error_code}: {error_message}" if error_code else None))
        span.end(end_time=end_time_ns)

    # -- as an event sink -----------------------------------------------------------------------

    def __call__(self, event: Mapping[str, Any]) -> None:
        """Consume one executor event (or callback envelope); other event types are ignored."""
        kind = event.get("type")
        payload = event.get("payload")
        body: Mapping[str, Any] = payload if isinstance(payload, Mapping) and "payload" in event else event
        meta: Mapping[str, Any] = event.get("metadata") or {}
        if kind == "run.started":
            self.start_run(
                str(body.get("run_id", "")),
                str(body.get("workflow", "")),
                version=meta.get("workflow_version"),
                start_time_ns=_ns(event.get("timestamp")),
            )
        elif kind == "step.execution.completed":
            span = self._step_event(body, event.get("timestamp"))
            self._agent_spans(body, span, event.get("timestamp"))
        elif isinstance(kind, str) and kind.startswith("agent.") and kind != "agent.message.delta":
            with self._lock:
                self._agent_events.setdefault(_execution_key(body), []).append(body)
        elif kind in ("run.completed", "run.failed", "run.canceled"):
            status = body.get("status") or kind.split(".")[1]
            error = body.get("error") or {}
            self.end_run(str(status), error_code=error.get("code"), error_message=error.get("message"))

    def _agent_spans(self, body: Mapping[str, Any], step_span: Span, timestamp: Any) -> None:
        with self._lock:
            events = self._agent_events.pop(_execution_key(body), None)
        if not events:
            return
        from owf_magics.runs.genai_spans import agent_spans

        start = _ns(timestamp)
        duration = (body.get("execution") or {}).get("duration_ms")
        end = start + int(float(duration) * 1_000_000) if start is not None and duration is not None else None
        agent_spans(self.tracer, step_span, events, start_ns=start, end_ns=end, ns=_ns, clean=_clean)

    def _step_event(self, body: Mapping[str, Any], timestamp: Any) -> Span:
        execution: Mapping[str, Any] = body.get("execution") or {}
        result: Mapping[str, Any] = body.get("result") or {}
        usage: Mapping[str, Any] = execution.get("token_usage") or {}
        error: Mapping[str, Any] = result.get("error") or {}
        start = _ns(timestamp)
        duration = execution.get("duration_ms")
        end = start + int(float(duration) * 1_000_000) if start is not None and duration is not None else None
        status = str(result.get("status", ""))

        def pick(key: str) -> Any:
            return body.get(key) or execution.get(key)

        return self.step(
            str(body.get("step_id", "")),
            str(body.get("step_type", "")),
            status="failed" if status == "error" else status,
            start_time_ns=start,
            end_time_ns=end,
            backend=execution.get("backend"),
            backend_version=execution.get("adapter_version"),
            runtime=execution.get("runtime"),
            agent_id=pick("agent_id"),
            connector_id=pick("connector_id"),
            model=pick("model"),
            provider=pick("provider"),
            input_tokens=usage.get("prompt_tokens"),
            output_tokens=usage.get("completion_tokens"),
            total_tokens=usage.get("total_tokens"),
            cost_usd=pick("cost_usd"),
            iteration=body.get("iteration") or None,
            attempt=body.get("attempt"),
            error_code=error.get("code"),
            error_message=error.get("message"),
        )

    def close(self, timeout: float | None = None) -> None:
        """End the run span if the run never reported its end (status ``unknown``)."""
        if self.run_span is not None:
            self.end_run("unknown")

    def _plan_entry(self, step_id: str) -> Any:
        if self.plan is None:
            return None
        try:
            return self.plan[step_id]
        except (KeyError, IndexError, TypeError):
            return None
