"""Steps that never wait, run without coroutines: what each step needs, worked out once per plan,
and the synchronous path for transforms and `@inline` function actions.

A step whose kind has an entry in `DIRECT_KINDS` (filled by `owf_magics.engine.kinds`), with no
retry policy, no timeout and the native backend, runs here: the same records, results, views and
checkpoints as `scheduler.attempts`, without the coroutines, the context variables or the task.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from owf_magics.connectors.function import SYNC
from owf_magics.engine.checkpoints import checkpoint
from owf_magics.engine.frame import VIEW_KEYS, Frame, descendants, execution_key, put_result
from owf_magics.engine.trace import ran_record, started_record, step_event, step_started, trace_step
from owf_magics.manifest.models import (
    LOGIC_STEP_TYPES,
    ActionStep,
    AgentStep,
    HandoffStep,
    IfStep,
    RetryPolicy,
    StepBase,
    TransformStep,
    TryStep,
    WaitStep,
)
from owf_magics.manifest.normalize import parse_duration
from owf_magics.manifest.render import TemplateError, render, truthy
from owf_magics.runtime.context import TRY_ATTEMPTS, RunContext, StepFailed, Waiting, open_request, to_step_error
from owf_magics.runtime.results import StepError, StepResult

#: A direct kind: ``(frame, step) -> (ready(run) -> bool, run(run, frame, step, scope, key))`` or
#: None when the step can never run directly (decided once per plan).
DirectRun = Callable[[RunContext, Frame, Any, dict[str, Any], str], tuple[Any, dict[str, Any] | None]]
DirectKind = Callable[[Frame, Any], Any]
DIRECT_KINDS: dict[type, DirectKind] = {}

LEAVES = (ActionStep, AgentStep, TransformStep, WaitStep, HandoffStep)  # served from a record on resume


@dataclass(frozen=True, slots=True)
class StepFacts:
    """What running a step needs to know about it, worked out once per plan."""

    policy: RetryPolicy | None
    max_attempts: int
    timeout: float | None
    leaf: bool
    calls_models: bool
    logic: bool  # a logic step: a dict output's fields are view fields too
    ready: Callable[[RunContext], int] | None  # how it runs in a run (`runs_direct`); None: SYNC
    direct: DirectRun | None


def facts(frame: Frame, step: StepBase) -> StepFacts:
    """The step's facts, cached per plan by the step object (an adapter may run a copy of a step,
    without its retry say, and that copy keeps its own)."""
    memo = frame.plan.memo
    table: dict[int, tuple[StepBase, StepFacts]] | None = memo.get("facts")
    if table is None:
        table = memo["facts"] = {}
    hit = table.get(id(step))
    if hit is not None and hit[0] is step:
        return hit[1]
    policy = step.retry if not isinstance(step, TryStep) else None  # a try step's retry is for its block
    timeout = parse_duration(step.timeout) if step.timeout is not None else None
    direct = None
    kind = DIRECT_KINDS.get(type(step))
    if kind is not None and policy is None and timeout is None and step.forEach is None:
        direct = kind(frame, step)
    found = StepFacts(
        policy,
        policy.maxAttempts if policy else 1,
        timeout,
        isinstance(step, LEAVES),
        isinstance(step, AgentStep | HandoffStep),
        step.type in LOGIC_STEP_TYPES,  # type: ignore[attr-defined]
        direct[0] if direct else None,
        direct[1] if direct else None,
    )
    table[id(step)] = (step, found)
    return found


def runs_direct(run: RunContext, found: StepFacts) -> int:
    """How this step runs in this run: `SYNC` (`direct_step`), `ASYNC` (`awaited_step`), or 0
    (the full path, `scheduler.attempts`)."""
    if found.direct is None or run.recorded:  # a resumed run serves recorded steps (scheduler)
        return 0
    if TRY_ATTEMPTS.get() is not None:  # a retried try body counts attempts on (scheduler.attempts)
        return 0
    return SYNC if found.ready is None else found.ready(run)


def _condition(run: RunContext, frame: Frame, step: StepBase, scope: dict[str, Any]) -> StepResult | None:
    """The result of a step whose condition fails to render or is false; None when it runs."""
    try:
        go = truthy(render(step.condition, scope))
    except TemplateError as exc:
        res = StepResult(step.id, "failed", error=to_step_error(exc), backend=frame.plan[step.id].backend)
        put_result(frame, res)
        trace_step(run, frame, step, res, attempt=1, started=time.time(), duration=0.0)
        return res
    if not go:
        skip(run, frame, step, "condition is false")
        return frame.results[step.id]
    return None


def direct_step(run: RunContext, frame: Frame, step: StepBase, found: StepFacts) -> StepResult:
    """`scheduler.run_step` for a direct step: condition, the one attempt, result, view, checkpoint."""
    scope = frame.scope(run)
    if step.condition is not None and not isinstance(step, IfStep):
        ended = _condition(run, frame, step, scope)
        if ended is not None:
            return ended
    entry = frame.plan.entries[step.id]
    key = execution_key(frame, step.id) if run.store is not None else ""  # only a store reads it
    log = run.log
    started = time.time()
    t0 = time.perf_counter()
    mark = -1
    if log is None:
        step_started(run, frame, step, 1, started)
    else:  # nothing else logs while it runs: its started record goes with the rest, at the end
        mark = len(log)
    extra: dict[str, Any] | None = None
    try:
        output, extra = found.direct(run, frame, step, scope, key)  # type: ignore[misc]
        res = StepResult(step.id, "success", output, None, 1, entry.backend)
    except StepFailed as exc:
        res = StepResult(step.id, "failed", None, exc.error, 1, entry.backend)
    except Exception as exc:
        res = StepResult(step.id, "failed", None, to_step_error(exc), 1, entry.backend)
    except Waiting as wait:  # a handler asking for something: as `attempts` does
        if log is not None:
            log.insert(mark, started_record(frame, step, 1, started))
        return _waiting(run, frame, step, wait, started, t0)
    return _ended(run, frame, step, found, res, extra, started, t0, mark, False)


async def awaited_step(run: RunContext, frame: Frame, step: StepBase, found: StepFacts) -> StepResult:
    """`direct_step` for an action whose handler is a coroutine function: awaited right here,
    without the coroutines `scheduler.attempts` goes through."""
    scope = frame.scope(run)
    if step.condition is not None and not isinstance(step, IfStep):
        ended = _condition(run, frame, step, scope)
        if ended is not None:
            return ended
    entry = frame.plan.entries[step.id]
    key = execution_key(frame, step.id) if run.store is not None else ""
    log = run.log
    started = time.time()
    t0 = time.perf_counter()
    mark = -1
    if log is None:
        step_started(run, frame, step, 1, started)
    else:  # other steps log while it waits (and a store may read the log): its started record now
        mark = len(log)
        log.append(started_record(frame, step, 1, started))
    extra: dict[str, Any] | None = None
    try:
        pending, extra = found.direct(run, frame, step, scope, key)  # type: ignore[misc]
        res = StepResult(step.id, "success", await pending, None, 1, entry.backend)
    except StepFailed as exc:
        res = StepResult(step.id, "failed", None, exc.error, 1, entry.backend)
    except Exception as exc:
        res = StepResult(step.id, "failed", None, to_step_error(exc), 1, entry.backend)
    except Waiting as wait:
        return _waiting(run, frame, step, wait, started, t0)
    except asyncio.CancelledError:
        res = StepResult(step.id, "canceled", None, StepError("CANCELED", "canceled"), 1, entry.backend)
        trace_step(run, frame, step, res, attempt=1, started=started, duration=(time.perf_counter() - t0) * 1000)
        put_result(frame, res)
        raise
    return _ended(run, frame, step, found, res, extra, started, t0, mark, True)


def _waiting(run: RunContext, frame: Frame, step: StepBase, wait: Waiting, started: float, t0: float) -> StepResult:
    request = open_request(run, execution_key(frame, step.id), wait)
    res = StepResult(step.id, "waiting", None, None, 1, frame.plan.entries[step.id].backend)
    trace_step(run, frame, step, res, attempt=1, started=started, duration=(time.perf_counter() - t0) * 1000)
    step_event(run, frame, step, "step.waiting", 1, started, request={"id": request.id, "kind": request.kind})
    put_result(frame, res)
    if run.store is not None:
        checkpoint(run, frame, step, res)
    return res


def _ended(
    run: RunContext,
    frame: Frame,
    step: StepBase,
    found: StepFacts,
    res: StepResult,
    extra: dict[str, Any] | None,
    started: float,
    t0: float,
    mark: int,
    placed: bool,
) -> StepResult:
    """Record a finished attempt, then the result, its view and the checkpoint. A success is one
    compact record: with `placed`, the step logged its start at `mark` already; otherwise (nothing
    was logged since `mark`) its start goes right before the rest."""
    duration = (time.perf_counter() - t0) * 1000
    res.duration_ms = round(duration, 3)
    log = run.log
    if log is not None and res.error is None and (placed or len(log) == mark):
        log.append(
            ran_record(mark if placed else -1, frame, step, frame.plan.entries[step.id], started, res.output, duration)
        )
    else:
        if log is not None and not placed:
            log.insert(mark, started_record(frame, step, 1, started))
        trace_step(run, frame, step, res, attempt=1, started=started, duration=duration)
        if res.error is not None:
            step_event(run, frame, step, "step.failed", 1, time.time(), error=res.error.to_dict())
    output = res.output
    if found.logic and isinstance(output, dict):
        # the spec's examples read a logic step's output fields directly: steps.wait.timedOut
        fields = {k: v for k, v in output.items() if k not in VIEW_KEYS}
        extra = {**fields, **extra} if extra else fields
    put_result(frame, res, extra)
    if run.store is not None:
        checkpoint(run, frame, step, res)
    return res


def skip(run: RunContext, frame: Frame, step: StepBase, reason: str) -> None:
    """A step that does not run (a false condition, a branch not taken, an earlier failure)."""
    res = StepResult(step.id, "skipped", backend=frame.plan[step.id].backend)
    put_result(frame, res)
    started = time.time()
    trace_step(run, frame, step, res, attempt=0, started=started, duration=0.0, note=reason)
    step_event(run, frame, step, "step.skipped", 0, started, reason=reason)
    checkpoint(run, frame, step, res)
    for child in descendants(frame.plan.graph, step.id):
        if child not in frame.results:
            cres = StepResult(child, "skipped", backend=frame.plan[child].backend)
            put_result(frame, cres)


def hold(frame: Frame, step: StepBase) -> None:
    """A step that cannot start before a waiting step finishes: it is pending (it runs on resume);
    only the steps that asked for something are ``waiting``."""
    put_result(frame, StepResult(step.id, "pending", backend=frame.plan[step.id].backend))
    for child in descendants(frame.plan.graph, step.id):
        if child not in frame.results:
            put_result(frame, StepResult(child, "pending", backend=frame.plan[child].backend))
