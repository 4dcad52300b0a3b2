"""Steps that hand work on: sub-workflows, handoffs, and steps whose plan names another backend."""

from __future__ import annotations

import functools
from collections import ChainMap
from typing import Any

from owf_magics.agents import events, transfers
from owf_magics.agents.loop import Accounting, run_agent, turn_hooks
from owf_magics.agents.multi import is_runner_agent, run_request
from owf_magics.agents.providers import Usage
from owf_magics.connectors.actions import run_action, validate_action_input
from owf_magics.connectors.function import call_inline, direct_mode
from owf_magics.engine.frame import Frame, render_input, render_outputs, resolve_inputs
from owf_magics.engine.scheduler import run_block
from owf_magics.engine.workflow_tools import tools_bound
from owf_magics.errors import BackendError, OWFError
from owf_magics.manifest.catalog import Loaded
from owf_magics.manifest.models import (
    ActionStep,
    Agent,
    AgentStep,
    Connector,
    HandoffStep,
    StepBase,
    WorkflowStep,
)
from owf_magics.manifest.refs import parse_ref
from owf_magics.manifest.render import redact, render, truthy
from owf_magics.plan.graph import ROOT
from owf_magics.plan.resolution import step_models
from owf_magics.runtime.backend import ExecutionContext
from owf_magics.runtime.context import (
    W3C_TRACE_ID,
    RunContext,
    StepFailed,
    record_input,
)
from owf_magics.runtime.results import StepError


async def subworkflow(
    run: RunContext, frame: Frame, step: WorkflowStep, scope: dict[str, Any], acc: Accounting
) -> tuple[Any, dict[str, Any]]:
    target: Loaded[Any] = frame.plan.targets[step.id]
    limit = step.metadata.get("maxCallDepth")  # opt-in (OpenFlow's FLOW_CALL sets 5)
    depth = frame.prefix.count("/")  # workflow steps this frame is nested in
    if isinstance(limit, int) and not isinstance(limit, bool) and depth >= limit:
        raise StepFailed(
            StepError(
                "VALIDATION",
                f"workflow step '{step.id}' would nest a call deeper than {limit} (maxCallDepth)",
                {"depth": depth, "maxCallDepth": limit, "suggestion": "stop the recursion with a condition"},
            )
        )
    child_plan = run.host.plan_loaded(target, frame.plan.prefer_backend)
    files_root = getattr(run.host, "files_root", None)
    inputs = resolve_inputs(target.model, render(step.input, scope), files_root=files_root, item=target)
    sub = Frame(
        child_plan,
        step_models(target.model),
        inputs,
        ChainMap({}),
        {},
        frame.iteration,
        {},
        {sid: frame.order.get(step.id, 0) + (i + 1) / 10_000 for i, sid in enumerate(child_plan.graph.topological())},
        f"{frame.prefix}{step.id}/",
    )
    failure = await run_block(run, sub, ROOT)
    outputs = render_outputs(target.model.outputs, sub.scope(run))
    if failure is not None:
        raise StepFailed(failure)
    return outputs, {"outputs": outputs}


async def handoff(run: RunContext, frame: Frame, step: HandoffStep, scope: dict[str, Any], acc: Accounting) -> Any:
    chosen = step.agent
    for sel in step.selectAgent or []:
        if sel.default or (sel.condition is not None and truthy(render(sel.condition, scope))):
            chosen = sel.agent
            break
    if chosen is None:
        raise StepFailed(StepError("VALIDATION", f"handoff '{step.id}' matched no agent and has no default"))
    loaded = run.host.catalog.agent(parse_ref(chosen, expected_kind="agent"))
    if loaded is None:
        raise StepFailed(StepError("VALIDATION", f"agent '{chosen}' is not loaded"))
    context = render(step.context, scope)
    payload = render(step.input, scope) if step.input is not None else {"reason": step.reason, **context}
    events.emit(events.HANDOFF, agent=loaded.name, reason=step.reason, **{"from": run.last_agent, "to": loaded.name})
    if frame.plan[step.id].backend != "native":  # the chosen agent runs on the step's backend
        manifest = loaded.model.model_dump(mode="json", by_alias=True)
        hooks = {"turn_hooks": turn_hooks(run, loaded.model, step)}
        response = await invoke_backend(run, frame, step, manifest, payload, hooks, acc)
    else:
        with tools_bound(run, frame, step.id):  # agents may pass the conversation on (maxTransfers)
            if step.maxTransfers:
                loaded, response = await transferring(run, step, loaded, payload, acc)
            else:
                response = await run_agent(run, loaded.model, payload, step.id, acc)
    return {
        "handoffTo": loaded.ref,
        "reason": step.reason,
        "agentResponse": response,
        "conversationId": f"conv_{run.run_id}_{step.id}",
    }


async def transferring(
    run: RunContext, step: HandoffStep, loaded: Loaded[Agent], payload: Any, acc: Accounting
) -> tuple[Loaded[Agent], Any]:
    """Run the chosen agent, offering ``transfer_to_<agent>`` tools for the step's other agents
    while fewer than ``maxTransfers`` transfers happened (docs/patterns.md)."""
    names = [n for n in [step.agent, *(s.agent for s in step.selectAgent or [])] if n]
    count = 0
    while True:
        others = [n for n in names if n != loaded.name and parse_ref(n, expected_kind="agent").name != loaded.name]
        with transfers.offer(others if count < (step.maxTransfers or 0) else []):
            try:
                return loaded, await run_agent(run, loaded.model, payload, step.id, acc)
            except transfers.Transferred as moved:
                target = run.host.catalog.agent(parse_ref(moved.target, expected_kind="agent"))
                if target is None:
                    raise StepFailed(StepError("VALIDATION", f"agent '{moved.target}' is not loaded")) from None
                count += 1
                reason = moved.arguments.get("reason")
                events.emit(
                    events.HANDOFF, agent=target.name, reason=reason, **{"from": loaded.name, "to": target.name}
                )
                loaded = target


async def invoke_backend(
    run: RunContext,
    frame: Frame,
    step: StepBase,
    manifest: dict[str, Any],
    data: Any,
    metadata: dict[str, Any],
    acc: Accounting | None = None,
) -> Any:
    """A step whose plan names another backend: hand it the manifest through the contract.

    Besides the contract's fields, ``context.metadata`` carries what lets an adapter run tools
    the way native does: ``registry`` (the `OpenWorkflow`), ``call_action(connector, action,
    data)`` (a connector action with this run's secrets, environment and thread pool),
    ``memory`` (the run's agent buffer memory), ``raw_input`` (the input before it was wrapped in
    a dict), for actions ``native()`` (the native handler), and for agents ``turn_hooks`` (budgets
    and rate limits, see `turn_hooks`). A result's ``usage`` list (one dict per model turn:
    provider, model, prompt_tokens, completion_tokens, estimated, cost_usd) is recorded in the
    trace, the usage table and the step's event exactly like native usage.
    """
    entry = frame.plan[step.id]
    backend = run.host.backend(entry.backend)
    ctx = ExecutionContext(
        run_id=run.run_id,
        workflow_id=frame.plan.workflow,
        node_id=step.id,
        secrets=dict(run.secrets),
        environment=dict(run.env),
        trace_id=W3C_TRACE_ID.get() or run.run_id,
        deadline=run.deadline,
        metadata={
            "step_type": step.type,  # type: ignore[attr-defined]
            "runtime": entry.runtime,
            "registry": run.host,
            "memory": run.memory,
            "raw_input": data,
            "call_action": functools.partial(call_action, run, step.id),
            **metadata,
        },
    )
    try:
        result = await backend.ainvoke(manifest, data if isinstance(data, dict) else {"input": data}, ctx)
    except OWFError as exc:  # an adapter may attach the usage of a failed agent run as exc.usage
        backend_usage(run, step, acc, getattr(exc, "usage", None))
        raise
    except Exception as exc:
        raise BackendError(
            f"backend '{entry.backend}' failed: {type(exc).__name__}: {exc}",
            details={"backend": entry.backend, "original_error": repr(exc)},
        ) from exc
    if isinstance(result, dict) and result.get("status") == "error":
        raise BackendError(str(result.get("message", "backend error")), details={"backend": entry.backend, **result})
    if isinstance(result, dict):
        backend_usage(run, step, acc, result.get("usage"))
    return result.get("output", result) if isinstance(result, dict) else result


def backend_usage(run: RunContext, step: StepBase, acc: Accounting | None, turns: Any) -> None:
    """Record a backend's per-turn usage like native usage (trace, usage table, event)."""
    if acc is None or not turns:
        return
    for turn, u in enumerate(turns):
        usage = Usage(int(u["prompt_tokens"]), int(u["completion_tokens"]), bool(u.get("estimated", False)))
        cost = float(u.get("cost_usd") or 0.0)
        acc.turns.append(usage)
        acc.cost = round(acc.cost + cost, 8)
        row = {
            "run_id": run.run_id,
            "step_id": step.id,
            "iteration": "",
            "provider": u.get("provider"),
            "model": u.get("model"),
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "estimated": usage.estimated,
            "cost_usd": cost,
        }
        acc.rows.append(((turn,), row))


async def call_action(run: RunContext, step_id: str, connector: Connector, action: str, data: Any) -> Any:
    return await run_action(run, connector, action, data, step_id)


async def action_step(
    run: RunContext, frame: Frame, step: ActionStep, scope: dict[str, Any], acc: Accounting
) -> tuple[Any, None]:
    """A connector action: native, or handed to the step's backend with the native call beside it."""
    data = render_input(step.input, scope, step.id)
    record_input(run, data)
    conn: Loaded[Connector] = frame.plan.targets[step.id]
    if frame.plan[step.id].backend != "native":
        native = functools.partial(run_action, run, conn.model, step.action, data, step.id)
        manifest = conn.model.model_dump(mode="json", by_alias=True)
        metadata = {"action": step.action, "native": native}
        return await invoke_backend(run, frame, step, manifest, data, metadata, acc), None
    return await run_action(run, conn.model, step.action, data, step.id), None


def action_direct(frame: Frame, step: ActionStep) -> Any:
    """An action the direct path can run: a native ``function`` handler without approvals, when
    the function is ``@inline`` (called) or async (its coroutine awaited) in this run (see
    `owf_magics.engine.direct`)."""
    if frame.plan[step.id].backend != "native":
        return None
    conn: Connector = frame.plan.targets[step.id].model
    action = conn.action(step.action)
    if action is None or action.handler is None or action.handler.kind != "function":
        return None
    policy = action.approval or conn.approval
    if policy is not None and policy.required != "never":
        return None
    target: str = action.handler.function  # type: ignore[assignment]
    schema = bool(action.input)

    def ready(run: RunContext) -> int:
        call = run.functions.get(target)
        return call.mode if call is not None else direct_mode(run, target)

    def run_direct(run: RunContext, frame: Frame, step: ActionStep, scope: dict[str, Any], key: str) -> Any:
        data = render_input(step.input, scope, step.id)
        if run.store is not None:
            run.seen.setdefault(key, {})["input"] = redact(data, run.secrets) if run.secrets else data
        if schema:  # defaults and the JSON Schema (an action without one takes its input as it is)
            data = validate_action_input(action, data)
        return call_inline(run, run.functions[target], data, step.id), None

    return ready, run_direct


async def agent_step(
    run: RunContext, frame: Frame, step: AgentStep, scope: dict[str, Any], acc: Accounting
) -> tuple[Any, None]:
    """An agent: the native loop, or the step's backend with the run's budgets and rate limits."""
    agent: Loaded[Agent] = frame.plan.targets[step.id]
    data = render_input(step.input, scope, step.id, credentials=False)  # no secret in a prompt
    record_input(run, data)
    if frame.plan[step.id].backend != "native":
        manifest = agent.model.model_dump(mode="json", by_alias=True)
        hooks = {"turn_hooks": turn_hooks(run, agent.model, step)}
        return await invoke_backend(run, frame, step, manifest, data, hooks, acc), None
    if is_runner_agent(agent.model):  # a workflow-runner request (formats/runner)
        return await run_request(run, agent.model, data, step, acc, frame.order.get(step.id, 0)), None
    with tools_bound(run, frame, step.id):
        return await run_agent(run, agent.model, data, step.id, acc, step), None


async def handoff_step(
    run: RunContext, frame: Frame, step: HandoffStep, scope: dict[str, Any], acc: Accounting
) -> tuple[Any, None]:
    return await handoff(run, frame, step, scope, acc), None
