"""Reading stored runs back: ``ow.run(run_id)`` as a `RunResult`, ``ow.runs()`` as a DataFrame."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from owf_magics.runtime.frames import typed_frame
from owf_magics.runtime.records import RUNS_COLUMNS, RunStore, StepRecord

if TYPE_CHECKING:
    import pandas as pd

    from owf_magics.runtime.results import RunResult

__all__ = ["run_result", "runs_frame"]


def run_result(store: RunStore, run_id: str) -> RunResult | None:
    """``ow.run(run_id)``: a stored run as a `RunResult` (None when the store has no such run).

    ``steps`` holds one `StepResult` per step id (for steps in loops, the last execution written);
    ``events`` are the stored events in sequence order; ``pending`` the open requests; ``error``
    the run's error. The trace is rebuilt from the stored ``step.execution.completed`` events (one
    row per execution, in the order they happened; ``backend_source`` empty for runs stored before
    the events carried it) and the usage
    from the step records (one row per step execution that called a model; provider and model are
    not stored).
    """
    from owf_magics.runtime.results import RunResult, StepError, StepResult

    record = store.get_run(run_id)
    if record is None:
        return None
    steps: dict[str, StepResult] = {}
    for rec in store.get_steps(run_id).values():
        err = rec.error
        steps[rec.step_id] = StepResult(
            rec.step_id,
            rec.status,
            rec.output,
            StepError(
                str(err.get("code", "INTERNAL_ERROR")), str(err.get("message", "")), dict(err.get("details") or {})
            )
            if err
            else None,
            rec.attempts,
            rec.backend or "native",
        )
    error = record.error
    events = [e.event for e in store.get_events(run_id)]
    return RunResult(
        record.run_id,
        record.workflow,
        record.status,
        dict(record.outputs or {}),
        steps,
        events,
        _trace_rows(run_id, events),
        [_usage_row(run_id, rec) for rec in store.get_steps(run_id).values() if rec.usage],
        error=StepError(
            str(error.get("code", "INTERNAL_ERROR")), str(error.get("message", "")), dict(error.get("details") or {})
        )
        if error
        else None,
        pending=list(store.get_pending(run_id)),
        duration_ms=record.duration_ms or 0.0,
    )


def _trace_rows(run_id: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for event in events:
        if event.get("type") != "step.execution.completed":
            continue
        execution = event.get("execution") or {}
        result = event.get("result") or {}
        usage = execution.get("token_usage") or {}
        rows.append(
            {
                "run_id": run_id,
                "step_id": event.get("step_id"),
                "type": event.get("step_type"),
                "backend": execution.get("backend"),
                "backend_source": execution.get("backend_source", ""),
                "status": "success" if result.get("status") == "success" else "failed",
                "attempt": event.get("attempt", 1),
                "iteration": event.get("iteration", ""),
                "parent": "",
                "fragment": event.get("fragment", ""),
                "started_at": event.get("timestamp"),
                "duration_ms": execution.get("duration_ms", 0.0),
                "prompt_tokens": int(usage.get("prompt_tokens") or 0),
                "completion_tokens": int(usage.get("completion_tokens") or 0),
                "total_tokens": int(usage.get("total_tokens") or 0),
                "cost_usd": float("nan") if usage else 0.0,  # not in the event: unknown, not 0
                "error_code": (result.get("error") or {}).get("code"),
            }
        )
    return rows


def _usage_row(run_id: str, rec: StepRecord) -> dict[str, Any]:
    usage = rec.usage or {}
    prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return {
        "run_id": run_id,
        "step_id": rec.step_id,
        "iteration": rec.step_key[len(rec.step_id) :].strip("[]"),
        "provider": "",
        "model": "",
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": int(usage.get("total_tokens") or prompt + completion),
        "estimated": bool(usage.get("estimated")),
        "cost_usd": float(usage.get("cost_usd", float("nan"))),
    }


def runs_frame(store: RunStore) -> pd.DataFrame:
    """``ow.runs()``: a pandas DataFrame of stored runs with the columns of `RUNS_COLUMNS`.

    Works with any store that has ``summaries()``; for other `RunStore`s the step, token and
    pending counts are computed from ``get_steps``/``get_pending``.
    """

    summaries = getattr(store, "summaries", None)
    if callable(summaries):
        rows: list[dict[str, Any]] = summaries()
    else:
        rows = []
        for rec in store.list_runs():
            steps = store.get_steps(rec.run_id).values()
            rows.append(
                {
                    "run_id": rec.run_id,
                    "workflow": rec.workflow,
                    "workflow_version": rec.workflow_version,
                    "status": rec.status,
                    "started_at": rec.started_at,
                    "finished_at": rec.finished_at,
                    "duration_ms": rec.duration_ms,
                    "steps": len(steps),
                    "tokens": sum(s.total_tokens for s in steps),
                    "cost_usd": round(sum(s.cost_usd for s in steps), 8),
                    "pending": len(store.get_pending(rec.run_id)),
                    "error_code": (rec.error or {}).get("code"),
                }
            )
    return typed_frame(rows, RUNS_COLUMNS, kind="runs")
