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
from owf_magics.engine.frame import Frame, children_views, descendants, last_output, loop_frame, map_items, view
from owf_magics.engine.scheduler import run_block, skip
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

    async def body(i: int, item: Any) -> dict[str, Any]:
        sub = loop_frame(frame, i, item, len(items))
        failure = await run_block(run, sub, key)
        _status, output, _ = last_output(sub, key)
        if failure is not None:
            return {"status": "error", "error": failure.to_dict(), "_error": failure}
        return {"status": "success", "output": output}

    results = await map_items(items, step.maxConcurrency, body)
    errors = [r.pop("_error") for r in results if "_error" in r]
    out = {
        "results": results,
        "successCount": sum(1 for r in results if r["status"] == "success"),
        "errorCount": len(errors),
        "totalCount": len(results),
    }
    if errors and not step.continueOnError:
        raise StepFailed(errors[0])
    return out, {"results": results}


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
        if res is not None and res.status == "waiting":
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
    while True:
        attempts += 1
        error, waiting = await block_waits(run, frame.child(extra={}), (step.id, "steps"))
        if waiting and error is None:  # catch and finally run when the body has really finished
            return None, children_views(frame, step.id)
        if error is None or policy is None or attempts >= policy.maxAttempts or not retryable(policy, error):
            break
        await asyncio.sleep(retry_delay(policy, attempts))
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
        raise StepFailed(failure)
    if error is not None and not frame.plan.graph.order.get((step.id, "catch")):
        raise StepFailed(error)  # nothing caught it
    # the workflow-logic example reads steps.<try>.output.<field>: output is the block's result,
    # and the spec's envelope {status, attempts, output|error} is steps.<try>.result
    return (output if error is None else None), {"result": envelope, **children_views(frame, step.id)}


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


async def transform_step(
    run: RunContext, frame: Frame, step: TransformStep, scope: dict[str, Any], acc: Accounting
) -> tuple[Any, Any]:
    result = transform(step, scope, frame)
    return {"result": result}, {"result": result}
