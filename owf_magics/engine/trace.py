"""Trace rows and step lifecycle events, ordered by graph rank, iteration and attempt."""

from __future__ import annotations

from typing import Any

from owf_magics.agents.providers import Usage
from owf_magics.engine.frame import Frame
from owf_magics.manifest.models import (
    StepBase,
)
from owf_magics.runtime.context import (
    RunContext,
)
from owf_magics.runtime.results import StepResult


def trace_step(
    run: RunContext,
    frame: Frame,
    step: StepBase,
    res: StepResult,
    *,
    attempt: int,
    started: str,
    duration: float,
    usage: Usage | None = None,
    cost: float = 0.0,
    note: str | None = None,
    event: bool = True,
) -> None:
    entry = frame.plan.entries[step.id]
    key = (frame.order.get(step.id, 0), frame.iteration, attempt)
    duration = round(duration, 3)
    row = {
        "run_id": run.run_id,
        "step_id": frame.prefix + step.id,
        "type": step.type,  # type: ignore[attr-defined]
        "backend": entry.backend,
        "backend_source": entry.source,
        "status": res.status,
        "attempt": attempt,
        "iteration": ".".join(map(str, frame.iteration)) if frame.iteration else "",
        "parent": entry.parent or "",
        "started_at": started,
        "duration_ms": duration,
        "prompt_tokens": usage.prompt_tokens if usage else 0,
        "completion_tokens": usage.completion_tokens if usage else 0,
        "total_tokens": usage.total_tokens if usage else 0,
        "cost_usd": cost,
        "error_code": res.error.code if res.error else None,
    }
    run.trace.append((key, row))
    if res.status in ("skipped", "waiting") or not event:
        return
    execution: dict[str, Any] = {
        "backend": entry.backend,
        "runtime": entry.runtime,
        "adapter_version": entry.adapter_version,
        "duration_ms": duration,
    }
    if usage is not None:
        execution["token_usage"] = {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        }
    result: dict[str, Any] = {"status": "success" if res.status == "success" else "error", "output": res.output}
    if res.error:
        result["error"] = res.error.to_dict()
    run.emit(
        key,
        {
            "type": "step.execution.completed",
            "timestamp": started,
            "run_id": run.run_id,
            "step_id": frame.prefix + step.id,
            "step_type": step.type,  # type: ignore[attr-defined]
            "iteration": row["iteration"],
            "attempt": attempt,
            "execution": execution,
            "result": result,
        },
    )


def step_event(
    run: RunContext, frame: Frame, step: StepBase, kind: str, attempt: int, timestamp: str, **fields: Any
) -> None:
    """A step lifecycle event (started, retrying, failed, skipped), ordered with the step's others."""
    entry = frame.plan.entries[step.id]
    run.emit(
        (frame.order.get(step.id, 0), frame.iteration, attempt),
        {
            "type": kind,
            "timestamp": timestamp,
            "run_id": run.run_id,
            "step_id": frame.prefix + step.id,
            "step_type": step.type,  # type: ignore[attr-defined]
            "iteration": ".".join(map(str, frame.iteration)) if frame.iteration else "",
            "attempt": attempt,
            "backend": entry.backend,
            **fields,
        },
    )
