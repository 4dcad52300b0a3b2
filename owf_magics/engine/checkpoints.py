"""Durable runs: group-committed checkpoints, and steps restored from an earlier record.

A step that finishes queues its record (`checkpoint`); the scheduler then awaits `durable` before
it starts anything that depends on the step. When other callbacks are ready in this loop tick,
`durable` yields to the event loop once, so every step that finishes in the same tick (in other
tasks) queues its record too, and the first of them to resume commits the whole group, with the
events emitted since the last write, in one transaction (`RunStore.checkpoint_many`); the others
find their records committed and go on. When nothing else is ready (a chain), it commits at once.
So a step's checkpoint is durable before any dependent starts (and before the run's end is
recorded: the executor calls `finish`), as it was with one transaction per step. A process killed
between a step's end and the commit runs that step again on resume, exactly like a step in flight.
"""

from __future__ import annotations

import asyncio
from typing import Any

from owf_magics.agents.loop import remember
from owf_magics.agents.providers import Usage
from owf_magics.engine.frame import Frame, execution_key, render_input
from owf_magics.engine.trace import StepPair, store_events, trace_step
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
from owf_magics.runtime.records import (
    StepRecord,
    UnstorableValue,
    input_differences,
    storable_events,
    storable_records,
)
from owf_magics.runtime.results import StepError, StepResult


def checkpoint(run: RunContext, frame: Frame, step: StepBase, res: StepResult) -> None:
    """Queue the step's record for the next group commit (`durable` or `flush` writes it)."""
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
    run.uncommitted.append(record)


async def durable(run: RunContext) -> None:
    """Return once every checkpoint queued so far is committed (what the scheduler awaits before
    it starts a step's dependents). Steps finishing in this loop tick share the transaction."""
    if not run.uncommitted:
        return
    # other callbacks ready in this tick may finish steps too: yield once so they queue their
    # records (nothing ready, as in a chain: nothing else can finish now, commit at once)
    if getattr(asyncio.get_running_loop(), "_ready", True):
        await asyncio.sleep(0)
    if run.uncommitted:
        flush(run)


def flush(run: RunContext) -> None:
    """Commit the queued step records and the events emitted since the last write, together."""
    if run.store is None:
        return
    records, run.uncommitted = run.uncommitted, []
    store = run.store
    pairs = getattr(store, "takes_step_pairs", False)
    events = store_events(run, pairs=pairs)
    if records or events:
        try:
            store.checkpoint_many(run.run_id, records, events)
        except UnstorableValue:  # one value the store cannot write fails its step, not the group
            store.checkpoint_many(run.run_id, storable_records(records), storable_events(_expanded(events)))


def finish(run: RunContext, status: str, outputs: dict[str, Any], error: dict[str, Any] | None) -> None:
    """Record the run's end with the checkpoints and events not committed yet, in one transaction:
    its status, outputs and error; a run that ends (not one that waits) closes its open requests,
    since nothing waits for them any more. The run's lease is released."""
    records, run.uncommitted = run.uncommitted, []
    events = store_events(run, pairs=getattr(run.store, "takes_step_pairs", False))
    waiting = status == "waiting_approval"
    try:
        run.store.finish_run(
            run.run_id,
            status,
            outputs=None if waiting else outputs,
            error=None if waiting else error,
            steps=records,
            events=events,
            close_pending=not waiting,
        )
    except UnstorableValue as exc:  # the run still ends: what cannot be written is left out
        run.store.finish_run(
            run.run_id,
            "waiting_approval" if waiting else "failed",
            outputs=None,
            error=None if waiting else {"code": exc.code, "message": exc.message, "details": exc.details},
            steps=storable_records(records),
            events=storable_events(_expanded(events)),
            close_pending=not waiting,
        )


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


def _expanded(events: list[Any]) -> list[Any]:
    return [e for item in events for e in (item.events() if type(item) is StepPair else (item,))]
