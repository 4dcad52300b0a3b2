"""The logic steps: if, switch, forEach, parallel, try, wait and transform."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from owf_magics.agents.loop import Accounting
from owf_magics.connectors.function import SYNC
from owf_magics.engine.direct import StepFacts, direct_step, facts, hold, runs_direct, skip
from owf_magics.engine.frame import (
    Frame,
    at_item,
    children_views,
    descendants,
    last_output,
    loop_frame,
    map_items,
    view,
)
from owf_magics.engine.scheduler import run_block
from owf_magics.errors import UnavailableError
from owf_magics.manifest.models import (
    ForEachStep,
    IfStep,
    ParallelStep,
    StepBase,
    SwitchStep,
    TransformStep,
    TryStep,
    WaitStep,
)
from owf_magics.manifest.normalize import parse_duration
from owf_magics.manifest.queries import jq_program, jsonpath
from owf_magics.manifest.render import render, render_string, truthy
from owf_magics.plan.graph import BlockKey
from owf_magics.runtime.context import (
    CURRENT_KEY,
    TRY_ATTEMPTS,
    WAIT_FLAGS,
    RunContext,
    StepFailed,
    Waiting,
    find_request,
    flag_wait,
)
from owf_magics.runtime.results import StepError
from owf_magics.runtime.retry import retry_delay, retryable


def case_key(value: Any, cases: Mapping[str, Any]) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, bool) else str(value)
    return text if text in cases else None


async def run_branch(run: RunContext, frame: Frame, step: StepBase, block: str, skipped: list[str]) -> None:
    graph = frame.plan.graph
    for other in skipped:
        for sid in graph.order.get((step.id, other), ()):
            skip(run, frame, frame.models[sid], "branch not taken")
    failure = await run_block(run, frame, (step.id, block))
    if failure is not None:
        raise StepFailed(failure)


async def for_each(
    run: RunContext, frame: Frame, step: ForEachStep, scope: dict[str, Any], acc: Accounting
) -> tuple[Any, dict[str, Any]]:
    items = render(step.items, scope)
    if not isinstance(items, list):
        raise StepFailed(StepError("VALIDATION", f"forEach items must be a list, got {type(items).__name__}"))
    key = (step.id, "steps")
    members = direct_body(run, frame, key)
    if members is not None:  # nothing in the body waits: no task, frame or key string per item
        results = each_direct(run, frame, key, items, members)
    else:
        results = await map_items(items, step.maxConcurrency, lambda i, item: body(run, frame, key, items, i, item))
    failures = [(i, r.pop("_error")) for i, r in enumerate(results) if "_error" in r]
    errors = [e for _, e in failures]
    out = {
        "results": results,
        "successCount": sum(1 for r in results if r["status"] == "success"),
        "errorCount": len(errors),
        "totalCount": len(results),
    }
    if failures and not step.continueOnError:
        index, first = failures[0]
        raise StepFailed(at_item(first, index, items[index]))  # which item failed, not only how
    return out, {"results": results}


async def body(run: RunContext, frame: Frame, key: BlockKey, items: list[Any], i: int, item: Any) -> dict[str, Any]:
    """One item of a forEach step: its body as a block, in a frame of its own."""
    sub = loop_frame(frame, i, item, len(items))
    failure = await run_block(run, sub, key)
    _status, output, _ = last_output(sub, key)
    if failure is not None:
        return {"status": "error", "error": failure.to_dict(), "_error": failure}
    return {"status": "success", "output": output}


def direct_body(run: RunContext, frame: Frame, key: BlockKey) -> list[tuple[StepBase, StepFacts]] | None:
    """A body that is a chain of direct steps (see `owf_magics.engine.direct`), in order; else None.

    Such a body never awaits, so every item runs to its end before the next starts, as the items'
    tasks did: the records, results and event ids are the same without the tasks. With a store
    the items keep their tasks, whose checkpoints commit before the steps after them start.
    """
    if run.store is not None:  # each item's steps commit before the next starts (scheduler.durable)
        return None
    sched = frame.plan.graph.schedule(key)
    members = sched.members
    if not members or sched.waits[members[0]]:
        return None
    out = []
    for i, sid in enumerate(members):
        nxt = members[i + 1 : i + 2]
        if tuple(sched.after[sid]) != tuple(nxt) or (nxt and sched.waits[nxt[0]] != 1):
            return None
        step = frame.models[sid]
        found = facts(frame, step)
        if found.direct is None or runs_direct(run, found) != SYNC:  # an awaited step may wait
            return None
        out.append((step, found))
    return out


def each_direct(
    run: RunContext, frame: Frame, key: BlockKey, items: list[Any], members: list[tuple[StepBase, StepFacts]]
) -> list[dict[str, Any]]:
    """Every item through a direct body, in one frame whose loop variables change per item."""
    if not items:
        return []
    total = len(items)
    sub = loop_frame(frame, 0, items[0], total)
    scope = sub.scope(run)
    mine = sub.views.maps[0]  # the body's views: each item starts without the last one's
    base = frame.iteration
    last = members[-1][0].id  # the body's output is its last step's
    results: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        if i:
            mine.clear()
            sub.iteration = (*base, i)
            scope["item"], scope["index"], scope["isFirst"], scope["isLast"] = item, i, False, i == total - 1
        failure: StepError | None = None
        held = False
        for step, found in members:
            if failure is not None:
                skip(run, sub, step, "an earlier step failed")
            elif held:
                hold(sub, step)
            else:
                res = direct_step(run, sub, step, found)
                if res.status == "failed" and not step.continueOnError:
                    failure = res.error or StepError("INTERNAL_ERROR", "failed")
                elif res.status == "waiting":
                    held = True
        view = mine.get(last)
        output = view["output"] if view else None
        if failure is not None:
            results.append({"status": "error", "error": failure.to_dict(), "_error": failure})
        else:
            results.append({"status": "success", "output": output})
    return results


async def parallel(
    run: RunContext, frame: Frame, step: ParallelStep, scope: dict[str, Any], acc: Accounting
) -> tuple[Any, dict[str, Any]]:
    names = list(step.branches)
    need = len(names) if step.join == "all" else 1 if step.join == "any" else step.join.count
    timeout = parse_duration(step.timeout) if step.timeout is not None else None
    tasks = {
        name: asyncio.ensure_future(block_waits(run, frame, (step.id, f"branches:{name}"), propagate=False))
        for name in names
    }
    finished: dict[str, StepError | None] = {}
    waiting: set[str] = set()
    pending = set(tasks.values())
    deadline = time.monotonic() + timeout if timeout else None
    while pending and sum(1 for n, e in finished.items() if e is None and n not in waiting) < need:
        wait_for = max(0.0, deadline - time.monotonic()) if deadline else None
        done, pending = await asyncio.wait(pending, timeout=wait_for, return_when=asyncio.FIRST_COMPLETED)
        if not done:
            break
        for name, task in tasks.items():
            if task in done and name not in finished:
                finished[name], waits = task.result()
                if waits and finished[name] is None:
                    waiting.add(name)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    branches: dict[str, Any] = {}
    for name in names:
        key = (step.id, f"branches:{name}")
        if name not in finished:
            branches[name] = {"status": "canceled"}
            continue
        if name in waiting:
            branches[name] = {"status": "waiting"}
            continue
        _state, output, _err = last_output(frame, key)
        err = finished[name]
        branches[name] = (
            {"status": "success", "output": output} if err is None else {"status": "error", "error": err.to_dict()}
        )
    completed = sum(1 for b in branches.values() if b["status"] == "success")
    errors = [finished[n] for n in names if finished.get(n) is not None]
    if waiting and completed >= need:  # joined without them: their questions are withdrawn
        for name in waiting:
            withdraw(run, frame, (step.id, f"branches:{name}"))
            branches[name] = {"status": "canceled"}
        waiting = set()
    elif waiting:
        flag_wait()
    out = {
        "branches": branches,
        "completedCount": completed,
        "errorCount": len(errors),
        "joinStrategy": step.join if isinstance(step.join, str) else f"count({step.join.count})",
    }
    if completed < need and not step.continueOnError:
        if errors:
            raise StepFailed(errors[0])  # type: ignore[arg-type]
        if waiting:  # the step waits with its branch (its own wait flag is already set)
            return out, {"branches": branches, **children_views(frame, step.id)}
        raise StepFailed(StepError("TIMEOUT", f"parallel step '{step.id}' timed out waiting for {need} branch(es)"))
    return out, {"branches": branches, **children_views(frame, step.id)}


def withdraw(run: RunContext, frame: Frame, key: BlockKey) -> None:
    """A waiting branch that is no longer needed: its steps are canceled, its requests closed."""
    graph = frame.plan.graph
    members = set(graph.order.get(key, ()))
    for sid in list(members):
        members.update(descendants(graph, sid))
    for request in [r for r in run.pending if r.step_id.split("[", 1)[0].split("/")[-1] in members]:
        run.pending.remove(request)
        if run.store is not None:
            run.store.resolve_pending(request.id, None)
    reason = StepError("CANCELED", "the parallel step joined without this branch", {"reason": "joined"})
    for sid in members:
        res = frame.results.get(sid)
        if res is not None and res.status in ("waiting", "pending"):
            res.status, res.error = "canceled", reason
            frame.views[sid] = view(res)


async def block_waits(
    run: RunContext, frame: Frame, key: BlockKey, *, propagate: bool = True
) -> tuple[StepError | None, bool]:
    """Run a block; also say whether a step inside it is waiting (for an approval, an event...)."""
    flag = [False]
    token = WAIT_FLAGS.set((*WAIT_FLAGS.get(), flag))
    try:
        error = await run_block(run, frame, key)
    finally:
        WAIT_FLAGS.reset(token)
    if flag[0] and propagate:
        flag_wait()
    return error, flag[0]


async def try_step(
    run: RunContext, frame: Frame, step: TryStep, scope: dict[str, Any], acc: Accounting
) -> tuple[Any, dict[str, Any]]:
    policy = step.retry
    attempts = 0
    error: StepError | None = None
    # a retried body's steps count their attempts on from pass to pass (one trace row each)
    counting = policy is not None and policy.maxAttempts > 1 and TRY_ATTEMPTS.get() is None
    token = TRY_ATTEMPTS.set({}) if counting else None
    try:
        while True:
            attempts += 1
            error, waiting = await block_waits(run, frame.child(extra={}), (step.id, "steps"))
            if waiting and error is None:  # catch and finally run when the body has really finished
                return None, {**children_views(frame, step.id), "attempts": attempts}
            if error is None or policy is None or attempts >= policy.maxAttempts or not retryable(policy, error):
                break
            await asyncio.sleep(retry_delay(policy, attempts))
    finally:
        if token is not None:
            TRY_ATTEMPTS.reset(token)
    _status, output, _ = last_output(frame, (step.id, "steps"))
    scope_error = {**error.to_dict(), "attemptCount": attempts} if error else None
    if error is not None:
        handler = frame.child(extra={"error": scope_error})
        caught = await run_block(run, handler, (step.id, "catch"))
    else:
        for sid in frame.plan.graph.order.get((step.id, "catch"), ()):
            skip(run, frame, frame.models[sid], "no error to catch")
        caught = None
    final = await run_block(run, frame.child(extra={"error": scope_error}), (step.id, "finally"))
    envelope: dict[str, Any] = {"status": "success" if error is None else "error", "attempts": attempts}
    if error is None:
        envelope["output"] = output
    else:
        envelope["error"] = scope_error
    failure = final or caught
    if failure is not None:
        raise StepFailed(failure, attempts)
    if error is not None and not frame.plan.graph.order.get((step.id, "catch")):
        raise StepFailed(error, attempts)  # nothing caught it
    # the workflow-logic example reads steps.<try>.output.<field>: output is the block's result,
    # and the spec's envelope {status, attempts, output|error} is steps.<try>.result
    views = children_views(frame, step.id)
    return (output if error is None else None), {"result": envelope, **views, "attempts": attempts}


async def wait_step(
    run: RunContext, frame: Frame, step: WaitStep, scope: dict[str, Any], acc: Accounting
) -> tuple[dict[str, Any], None]:
    if step.duration is not None:
        seconds = parse_duration(step.duration) or 0.0
        await asyncio.sleep(seconds)
        return {"waitType": "duration", "waitedFor": seconds, "timedOut": False}, None
    assert step.until is not None
    if step.until.event is not None and step.until.event in run.delivered:
        return {
            "waitType": "event",
            "waitedFor": 0,
            "eventReceived": run.delivered[step.until.event],
            "timedOut": False,
        }, None
    if step.until.event is not None:
        key = CURRENT_KEY.get()
        answer = find_request(run, key, "event", {"event": step.until.event})
        if answer is not None and answer.resolved:
            return {"waitType": "event", "waitedFor": 0, "eventReceived": answer.value, "timedOut": False}, None
        raise Waiting("event", {"event": step.until.event})
    assert step.until.time is not None
    target = datetime.fromisoformat(step.until.time.replace("Z", "+00:00"))
    if target.tzinfo is None:
        target = target.replace(tzinfo=UTC)
    remaining = (target - datetime.now(UTC)).total_seconds()
    if remaining <= 0:
        return {"waitType": "time", "waitedFor": 0, "timedOut": False}, None
    raise Waiting("time", {"until": target.isoformat().replace("+00:00", "Z")})


def transform(step: TransformStep, scope: dict[str, Any], frame: Frame) -> Any:
    if step.language == "template":
        return render_string(step.expression, scope, "expression")
    data = render(step.input, scope, "input") if step.input is not None else previous_output(frame, step.id)
    if step.language == "jq":
        values = jq_program(step.expression).input_value(data).all()
    elif step.language == "jsonpath":
        values = [m.value for m in jsonpath(step.expression).find(data)]
    else:
        raise UnavailableError(f"transform language '{step.language}' has no sandbox here")
    return values[0] if len(values) == 1 else values


def previous_output(frame: Frame, sid: str) -> Any:
    node = frame.plan.graph.nodes[sid]
    members = frame.plan.graph.blocks.get(node.block_key, ())
    idx = members.index(sid)
    if idx == 0:
        return None
    view = frame.views.get(members[idx - 1])
    return view["output"] if view else None


async def if_step(
    run: RunContext, frame: Frame, step: IfStep, scope: dict[str, Any], acc: Accounting
) -> tuple[Any, Any]:
    cond = truthy(render(step.condition, scope))
    branch = "then" if cond else "else"
    await run_branch(run, frame, step, branch, [b for b in ("then", "else") if b != branch])
    return {"branch": branch, "conditionResult": cond}, children_views(frame, step.id)


async def switch_step(
    run: RunContext, frame: Frame, step: SwitchStep, scope: dict[str, Any], acc: Accounting
) -> tuple[Any, Any]:
    value = render(step.value, scope, "value")
    key = case_key(value, step.cases)
    block = f"cases:{key}" if key is not None else "default"
    others = [f"cases:{k}" for k in step.cases if k != key] + ([] if key is None else ["default"])
    await run_branch(run, frame, step, block, others)
    return {"case": key if key is not None else "default", "matchedValue": value}, children_views(frame, step.id)


def transform_direct(frame: Frame, step: TransformStep) -> Any:
    """Native transforms never wait: they run on the direct path (`owf_magics.engine.direct`); a
    transform another backend wraps (``Backend.arun_step``) goes through `scheduler.execute`."""
    if frame.plan[step.id].backend != "native":
        return None

    def run_direct(run: RunContext, frame: Frame, step: TransformStep, scope: dict[str, Any], key: str) -> Any:
        result = transform(step, scope, frame)
        if step.metadata.get("adapter"):  # an adapter between parts: its output is the value (api/builder)
            return result, None
        return {"result": result}, None  # the view reads the output's fields

    return None, run_direct


async def transform_step(
    run: RunContext, frame: Frame, step: TransformStep, scope: dict[str, Any], acc: Accounting
) -> tuple[Any, Any]:
    result = transform(step, scope, frame)
    return (result if step.metadata.get("adapter") else {"result": result}), {"result": result}
