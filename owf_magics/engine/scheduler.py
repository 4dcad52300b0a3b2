"""Blocks of steps as DAGs, and one step's condition, loop modifier, retries and timeout.

A step kind is a coroutine in `STEP_KINDS` (filled by `owf_magics.engine.kinds`): the
scheduler runs steps without knowing what each kind does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from owf_magics.agents import events as agent_events
from owf_magics.agents.loop import NO_USAGE, Accounting
from owf_magics.connectors.function import ASYNC, SYNC
from owf_magics.engine.agent_events import sink as agent_sink
from owf_magics.engine.checkpoints import checkpoint, durable, restore
from owf_magics.engine.direct import awaited_step, direct_step, facts, hold, runs_direct, skip
from owf_magics.engine.frame import (
    VIEW_KEYS,
    Frame,
    at_item,
    execution_key,
    loop_frame,
    map_items,
    put_result,
    view,
)
from owf_magics.engine.trace import step_event, step_started, trace_step
from owf_magics.errors import BackendError
from owf_magics.manifest.budget import deadline as template_deadline
from owf_magics.manifest.models import (
    ActionStep,
    AgentStep,
    IfStep,
    StepBase,
)
from owf_magics.manifest.render import TemplateError, render, truthy
from owf_magics.plan.graph import BlockKey
from owf_magics.runtime.backend import ExecutionContext
from owf_magics.runtime.context import (
    CURRENT_KEY,
    NESTED_WAIT,
    TRY_ATTEMPTS,
    WAIT_FLAGS,
    RunContext,
    StepFailed,
    Waiting,
    flag_wait,
    open_request,
    to_step_error,
)
from owf_magics.runtime.records import check_storable
from owf_magics.runtime.results import StepError, StepResult
from owf_magics.runtime.retry import retry_delay, retryable

#: A step kind: ``(run, frame, step, scope, usage) -> (output, extra view fields)``.
StepKind = Callable[[RunContext, Frame, Any, dict[str, Any], Accounting], Awaitable[tuple[Any, dict[str, Any] | None]]]
#: The coroutine that runs each step type (filled by `owf_magics.engine.kinds`).
STEP_KINDS: dict[type, StepKind] = {}


async def run_block(run: RunContext, frame: Frame, key: BlockKey) -> StepError | None:
    """Run a block's steps as a DAG; returns the first failure (in graph order), or None.

    A step starts when the last step it waits for finishes, in the coroutine that finished it: a
    chain runs in one task with no scheduling between its steps, and only steps that become ready
    together get tasks of their own (so they overlap).
    """
    sched = frame.plan.graph.schedule(key)
    if not sched.members:
        return None
    block = _Block(run, frame, sched)
    waits = block.waits
    roots = [sid for sid in sched.members if not waits[sid]]
    tasks = block.tasks
    leaves: dict[int, str] = {}  # task index -> the awaited step it runs without a chain around it
    after, models = sched.after, frame.models
    for sid in roots[1:]:
        if not after[sid] and run.store is None:  # nothing follows it, nothing to commit: a fan-out's step
            step = models[sid]
            found = facts(frame, step)
            if found.direct is not None and runs_direct(run, found) == ASYNC:
                leaves[len(tasks)] = sid
                tasks.append(asyncio.create_task(awaited_step(run, frame, step, found)))
                continue
        tasks.append(asyncio.create_task(block.chain(sid)))
    try:
        await block.chain(roots[0])
        i = 0
        while i < len(tasks):  # tasks may start more tasks while we wait
            out = await tasks[i]
            if i in leaves:
                block.ended(leaves[i], out)
            i += 1
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    failures = block.failures
    if failures:
        for sid in sched.members:
            if sid in failures:
                return failures[sid]
    return None


class _Block:
    """One run of a block: what its steps still wait for, and how each ended.

    A class, not closures: a closure that starts tasks of itself refers to itself, and that cycle
    kept every run's frame, results and tasks alive until the garbage collector found them.
    """

    __slots__ = ("blocked", "failures", "frame", "held", "run", "sched", "tasks", "waits")

    def __init__(self, run: RunContext, frame: Frame, sched: Any) -> None:
        self.run = run
        self.frame = frame
        self.sched = sched
        self.waits = dict(sched.waits)
        self.blocked: set[str] = set()
        self.held: set[str] = set()  # waiting for something from outside, or after a step that is
        self.failures: dict[str, StepError] = {}
        self.tasks: list[asyncio.Task[Any]] = []

    def ended(self, sid: str, res: StepResult) -> None:
        """A step ran: a failure blocks what follows it, a wait holds it."""
        status = res.status
        if status == "failed" and not self.frame.models[sid].continueOnError:
            self.failures[sid] = res.error or StepError("INTERNAL_ERROR", "failed")
            self.blocked.add(sid)
        elif status == "waiting":
            self.held.add(sid)

    async def chain(self, sid: str | None) -> None:
        run, frame, blocked, held, waits = self.run, self.frame, self.blocked, self.held, self.waits
        after = self.sched.after
        models = frame.models
        while sid is not None:
            step = models[sid]
            if sid in blocked:
                skip(run, frame, step, "an earlier step failed")
            elif sid in held:
                hold(frame, step)
            else:
                found = facts(frame, step)
                try:
                    mode = runs_direct(run, found) if found.direct is not None else 0
                    if mode == SYNC:
                        res = direct_step(run, frame, step, found)
                    elif mode:
                        res = await awaited_step(run, frame, step, found)
                    else:
                        res = await run_step(run, frame, step)
                except BaseException:
                    blocked.add(sid)
                    raise
                self.ended(sid, res)
            if run.uncommitted:  # its checkpoint is committed before anything after it starts
                await durable(run)
            ready = []
            for nxt in after[sid]:
                if sid in blocked:
                    blocked.add(nxt)
                elif sid in held:
                    held.add(nxt)
                waits[nxt] -= 1
                if not waits[nxt]:
                    ready.append(nxt)
            for other in ready[1:]:
                self.tasks.append(asyncio.create_task(self.chain(other)))
            sid = ready[0] if ready else None


async def run_step(run: RunContext, frame: Frame, step: StepBase) -> StepResult:
    found = facts(frame, step)
    mode = runs_direct(run, found) if found.direct is not None else 0
    if mode == SYNC:
        return direct_step(run, frame, step, found)
    if mode:
        return await awaited_step(run, frame, step, found)
    scope = frame.scope(run)
    if step.condition is not None and not isinstance(step, IfStep):
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
    if step.forEach is not None:
        return await run_inline_loop(run, frame, step)
    res, extra = await attempts(run, frame, step)
    if found.logic and isinstance(res.output, dict):
        # the spec's examples read a logic step's output fields directly: steps.wait.timedOut
        extra = {**{k: v for k, v in res.output.items() if k not in VIEW_KEYS}, **(extra or {})}
    put_result(frame, res, extra)
    if run.store is not None:
        checkpoint(run, frame, step, res)
    return res


async def run_inline_loop(run: RunContext, frame: Frame, step: StepBase) -> StepResult:
    assert step.forEach is not None
    mod = step.forEach
    entry = frame.plan[step.id]
    try:
        items = render(mod.items, frame.scope(run))
        if not isinstance(items, list):
            raise TemplateError(f"forEach items must be a list, got {type(items).__name__}")
    except TemplateError as exc:
        res = StepResult(step.id, "failed", error=to_step_error(exc), backend=entry.backend)
        put_result(frame, res)
        return res
    limit = None if mod.parallel and mod.maxConcurrency is None else (mod.maxConcurrency or 1)

    async def iteration(i: int, item: Any) -> tuple[StepResult, dict[str, Any] | None]:
        sub = loop_frame(frame, i, item, len(items))
        res, extra = await attempts(run, sub, step)
        if run.store is not None:
            checkpoint(run, sub, step, res)  # each iteration resumes on its own
            await durable(run)  # iterations finishing in one loop tick share a transaction
        return res, extra

    outcomes = await map_items(items, limit, iteration)
    outputs = [r.output for r, _ in outcomes]
    failed = [r for r, _ in outcomes if r.status == "failed"]
    status = "failed" if failed and not (mod.continueOnError or step.continueOnError) else "success"
    first = next((i for i, (r, _) in enumerate(outcomes) if r.status == "failed"), None)
    if status == "success" and any(r.status == "waiting" for r, _ in outcomes):
        status = "waiting"
    res = StepResult(
        step.id,
        status,
        outputs,
        at_item(failed[0].error, first, items[first]) if failed and failed[0].error and first is not None else None,
        attempts=sum(r.attempts for r, _ in outcomes),
        backend=entry.backend,
    )
    put_result(frame, res, {"results": [view(r) for r, _ in outcomes]})
    return res


NO_BIND = contextlib.nullcontext()


async def attempts(run: RunContext, frame: Frame, step: StepBase) -> tuple[StepResult, dict[str, Any] | None]:
    """Run a step with its retry policy and timeout; one trace row per attempt."""
    found = facts(frame, step)
    policy, max_attempts, timeout = found.policy, found.max_attempts, found.timeout
    entry = frame.plan.entries[step.id]
    key = frame.prefix + step.id if not frame.iteration else execution_key(frame, step.id)
    if run.recorded and found.leaf:
        rec = run.recorded.get(key)
        if rec is not None and rec.status == "success":
            return restore(run, frame, step, rec), None
    CURRENT_KEY.set(key)
    container = not found.leaf
    waited: list[bool] = [False]  # set when a step inside this one waits
    tried = TRY_ATTEMPTS.get()  # in a retried try body: attempts count on from the last pass
    base = tried.get(key, 0) if tried is not None else 0
    attempt = 0
    while True:
        attempt += 1
        n = base + attempt  # the attempt number rows, events and the result show
        started = time.time()
        t0 = time.perf_counter()
        acc = Accounting() if found.calls_models else NO_USAGE
        step_started(run, frame, step, n, started)
        try:
            coro = execute(run, frame, step, acc)
            token = WAIT_FLAGS.set((*WAIT_FLAGS.get(), waited)) if container else None
            try:
                with (
                    agent_events.bind(agent_sink(run, frame, step, n)) if found.calls_models else NO_BIND,
                    template_deadline(timeout, f"step '{step.id}' timeout ({timeout:g}s)" if timeout else ""),
                ):
                    output, extra = await (asyncio.wait_for(coro, timeout) if timeout else coro)
            finally:
                if token is not None:
                    WAIT_FLAGS.reset(token)
                    if waited[0]:
                        flag_wait()  # the step that holds this one waits too
            if run.store is not None:
                check_storable(output, step.id)  # an output the store cannot write fails the step, not the run
            if extra and "attempts" in extra:  # a try step: its body's passes are its attempts
                n = extra["attempts"] = base + int(extra["attempts"])
            res = StepResult(step.id, "success", output, None, n, entry.backend)
        except TimeoutError:
            err = StepError(
                "TIMEOUT",
                f"step '{step.id}' exceeded its timeout of {timeout:g}s",
                {"timeout_ms": int((timeout or 0) * 1000), "elapsed_ms": round((time.perf_counter() - t0) * 1000)},
            )
            res, extra = StepResult(step.id, "failed", None, err, n, entry.backend), None
        except StepFailed as exc:
            n = base + exc.attempts if exc.attempts else n
            res, extra = StepResult(step.id, "failed", None, exc.error, n, entry.backend), None
        except Waiting as wait:
            request = open_request(run, key, wait) if wait.kind != NESTED_WAIT else None
            if request is None:  # its request is open already, inside: the holder waits too
                flag_wait()
            res = StepResult(step.id, "waiting", None, None, n, entry.backend)
            trace_step(run, frame, step, res, attempt=n, started=started, duration=(time.perf_counter() - t0) * 1000)
            asked = {"id": request.id, "kind": request.kind} if request else {"kind": NESTED_WAIT}
            step_event(run, frame, step, "step.waiting", n, started, request=asked)
            if tried is not None:
                tried[key] = n
            return res, None
        except asyncio.CancelledError:
            res = StepResult(step.id, "canceled", None, StepError("CANCELED", "canceled"), n, entry.backend)
            trace_step(run, frame, step, res, attempt=n, started=started, duration=(time.perf_counter() - t0) * 1000)
            put_result(frame, res)
            raise
        except Exception as exc:
            res, extra = StepResult(step.id, "failed", None, to_step_error(exc), n, entry.backend), None
        duration = (time.perf_counter() - t0) * 1000
        res.duration_ms = round(duration, 3)
        if res.status == "success" and waited[0]:
            res.status = "waiting"  # a step inside it waits: this one finishes on resume (its row says so)
        if tried is not None:
            tried[key] = n
        trace_step(
            run, frame, step, res, attempt=n, started=started, duration=duration, usage=acc.total(), cost=acc.cost
        )
        for sort_key, row in acc.rows:
            run.usage.append(((frame.order.get(step.id, 0), frame.iteration, n, *sort_key), row))
        if run.store is not None and acc is not NO_USAGE and (total := acc.total()) is not None:
            usage = {
                "prompt_tokens": total.prompt_tokens,
                "completion_tokens": total.completion_tokens,
                "total_tokens": total.total_tokens,
            }
            run.seen.setdefault(key, {})["usage"] = {**usage, "estimated": total.estimated, "cost_usd": acc.cost}
        if res.status != "failed":
            return res, extra
        assert res.error is not None
        if policy is None or attempt >= max_attempts or not retryable(policy, res.error):
            step_event(run, frame, step, "step.failed", n, time.time(), error=res.error.to_dict())
            return res, extra
        delay = retry_delay(policy, attempt)
        step_event(
            run,
            frame,
            step,
            "step.retrying",
            n,
            time.time(),
            error=res.error.to_dict(),
            next_attempt=n + 1,
            delay_ms=round(delay * 1000),
        )
        await asyncio.sleep(delay)


async def execute(
    run: RunContext, frame: Frame, step: StepBase, acc: Accounting, *, handed: bool = False
) -> tuple[Any, dict[str, Any] | None]:
    """Run one attempt of a step through its kind in `STEP_KINDS`."""
    entry = frame.plan[step.id]
    if entry.backend != "native" and not handed and not isinstance(step, ActionStep | AgentStep):
        return await foreign_step(run, frame, step, acc)
    kind = STEP_KINDS.get(type(step))
    if kind is None:
        raise BackendError(f"step type {step.type!r} is not supported by the native executor")  # type: ignore[attr-defined]
    return await kind(run, frame, step, frame.scope(run), acc)


async def foreign_step(run: RunContext, frame: Frame, step: StepBase, acc: Accounting) -> tuple[Any, Any]:
    """A logic step whose plan names another backend: the backend wraps its native execution
    (``Backend.arun_step``; a backend without one leaves it to native)."""
    entry = frame.plan[step.id]
    backend = run.host.backend(entry.backend)
    wrap = getattr(backend, "arun_step", None)
    native = functools.partial(execute, run, frame, step, acc, handed=True)
    if wrap is None:
        return await native()
    kind: str = step.type  # type: ignore[attr-defined]
    ctx = ExecutionContext(
        run.run_id,
        frame.plan.workflow,
        step.id,
        trace_id=run.run_id,
        deadline=run.deadline,
        metadata={"step_type": kind, "runtime": entry.runtime},
    )
    result: tuple[Any, Any] = await wrap(native, ctx)
    return result
