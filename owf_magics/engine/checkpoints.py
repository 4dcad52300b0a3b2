"""Durable runs: a checkpoint after each step, and steps restored from an earlier record."""

from __future__ import annotations

import dataclasses
from typing import Any

from owf_magics.agents.loop import remember
from owf_magics.agents.providers import Usage
from owf_magics.engine.frame import Frame, execution_key, put_result, render_input
from owf_magics.engine.trace import trace_step
from owf_magics.manifest.models import (
    ActionStep,
    AgentStep,
    StepBase,
)
from owf_magics.manifest.render import redact
from owf_magics.runtime.context import (
    RunContext,
    now,
)
from owf_magics.runtime.records import StepRecord, UnstorableValue, check_storable, input_differences
from owf_magics.runtime.results import StepError, StepResult


def checkpoint(run: RunContext, frame: Frame, step: StepBase, res: StepResult) -> None:
    """Write the step's record and the events since the last checkpoint, in one transaction."""
    if run.store is None:
        return
    key = execution_key(frame, step.id)
    seen = run.seen.pop(key, {})
    output, error = res.output, res.error.to_dict() if res.error else None
    if run.secrets:
        output, error = redact(output, run.secrets), redact(error, run.secrets)
    record = StepRecord(
        key,
        frame.prefix + step.id,
        res.status,
        output,
        error,
        res.attempts,
        res.backend,
        seen.get("usage"),
        seen.get("input"),
    )
    events, run.unsaved = run.unsaved, []
    try:
        run.store.checkpoint(run.run_id, record, events)
    except UnstorableValue as exc:  # the step fails with the reason; the run's bookkeeping goes on
        unstorable(run, frame, res, record, events, exc)


def unstorable(
    run: RunContext, frame: Frame, res: StepResult, record: StepRecord, events: list[Any], exc: UnstorableValue
) -> None:
    """Store a step whose record the store cannot write as failed, with the reason and without
    the values; events that cannot be written are kept as their type only."""
    assert run.store is not None
    if res.status == "failed" and res.error is not None:  # it failed already: that is its error
        error = res.error
    else:
        reason = exc.details.get("reason", exc.message)
        message = f"step '{record.step_id}': its input or usage cannot be stored as JSON: {reason}"
        error = StepError(exc.code, message, {**exc.details, "step_id": record.step_id})
    res.status, res.output, res.error = "failed", None, error
    put_result(frame, res)
    safe = []
    for event in events:
        try:
            check_storable(event)
            safe.append(event)
        except UnstorableValue:
            safe.append({"type": event.get("type", "event"), "payload": {"error": "the event could not be stored"}})
    failed = dataclasses.replace(record, status="failed", output=None, error=error.to_dict(), input=None, usage=None)
    run.store.checkpoint(run.run_id, failed, safe)


def restore(run: RunContext, frame: Frame, step: StepBase, rec: Any) -> StepResult:
    """A step an earlier run completed: its recorded result, without running it again.

    A replay first renders the step's input and fails loudly when it differs from the record.
    """
    entry = frame.plan.entries[step.id]
    if run.replay and isinstance(step, ActionStep | AgentStep):
        actual = render_input(step.input, frame.scope(run), step.id)
        diffs = input_differences(rec.input, redact(actual, run.secrets) if run.secrets else actual)
        if diffs:
            error = StepError(
                "VALIDATION",
                f"replay diverged at step '{step.id}': {'; '.join(diffs[:3])}",
                {"differences": diffs, "recorded_run_step": rec.step_key},
            )
            res = StepResult(step.id, "failed", None, error, rec.attempts, entry.backend)
            trace_step(run, frame, step, res, attempt=1, started=now(), duration=0.0)
            return res
    res = StepResult(step.id, "success", rec.output, None, rec.attempts, rec.backend or entry.backend)
    if isinstance(step, AgentStep):  # an agent with buffer memory remembers what it said before
        agent = frame.plan.targets[step.id].model
        if agent.memory is not None and agent.memory.type == "buffer" and rec.input is not None:
            remember(run, agent, rec.input, rec.output)
    usage = rec.usage or {}
    total = (
        Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)), bool(usage.get("estimated")))
        if usage
        else None
    )
    cost = float(usage.get("cost_usd", 0.0)) if usage else 0.0
    trace_step(
        run,
        frame,
        step,
        res,
        attempt=rec.attempts,
        started=now(),
        duration=0.0,
        usage=total,
        cost=cost,
        note="restored",
        event=run.replay,  # a resumed run already has this step's events in its store
    )
    if run.store is not None:  # the checkpoint written for it again keeps what the record had
        run.seen[rec.step_key] = {"input": rec.input, "usage": rec.usage}
    if run.budget is not None and usage:  # what the run spent before it stopped still counts
        run.budget.record(int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0)), cost)
    return res
