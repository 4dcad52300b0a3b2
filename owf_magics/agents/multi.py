"""Workflow-runner requests run as the Agents SDK runs them: the starting agent takes the query,
``transfer_to_<agent>`` tools hand the conversation to another agent, agents serve as tools,
``max_turns`` bounds the model turns, guardrails trip, ``output_type`` is enforced, and the
conversation is kept per session (docs/formats.md, "Workflow-runner requests").

A request converts to one agent step whose agent carries ``extensions.openaiAgents`` and whose
step carries ``metadata.openaiAgents`` (formats/runner); `agent_step` sends such steps here.
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from owf_magics.agents.guardrail_presets import Kind, find_guardrail
from owf_magics.agents.loop import Accounting, system_prompt
from owf_magics.agents.providers import make_model
from owf_magics.connectors.actions import run_action
from owf_magics.errors import OWFError
from owf_magics.manifest.models import Agent, Connector, StepBase
from owf_magics.manifest.normalize import parse_duration
from owf_magics.manifest.refs import parse_ref
from owf_magics.manifest.schemas import schema_validator
from owf_magics.runtime.context import RunContext, StepFailed
from owf_magics.runtime.results import StepError

EXTENSION = "openaiAgents"
DEFAULT_MAX_TURNS = 10  # the Agents SDK's default
HOSTED_TOOLS = ("web_search", "code_interpreter", "file_search", "image_generation")

# sessions when the run has no store that keeps them (an in-memory OpenWorkflow without state)
_MEMORY_SESSIONS: weakref.WeakKeyDictionary[Any, dict[str, list[dict[str, Any]]]] = weakref.WeakKeyDictionary()


def is_runner_agent(agent: Agent) -> bool:
    return bool(agent.extensions and EXTENSION in agent.extensions)


@dataclass
class RunState:
    run: RunContext
    step: StepBase
    acc: Accounting
    namespace: str
    turns: int = 0
    last_agent: str = ""
    response_ids: list[str] = field(default_factory=list)
    usage: dict[str, dict[str, int]] = field(default_factory=dict)
    order: float = 0.0
    seq: int = 0


def ext(agent: Agent) -> dict[str, Any]:
    return dict((agent.extensions or {}).get(EXTENSION) or {})


def lookup(state: RunState, name: str) -> Agent:
    loaded = state.run.host.catalog.agent(parse_ref(f"{state.namespace}/{name}", expected_kind="agent"))
    if loaded is None:
        raise StepFailed(StepError("VALIDATION", f"agent '{name}' of workflow '{state.namespace}' is not loaded"))
    agent: Agent = loaded.model
    return agent


def fail(code: str, message: str, **details: Any) -> StepFailed:
    return StepFailed(StepError(code, message, details))


def check_guardrails(agent: Agent, kind: Kind, value: Any) -> None:
    for decl in ext(agent).get(f"{kind}_guardrails") or []:
        name = str(decl.get("name", ""))
        guard = find_guardrail(name, kind)
        if guard is None:
            raise fail(
                "UNAVAILABLE",
                f"unknown {kind} guardrail '{name}' on agent '{agent.name}'",
                suggestion="use a preset or register it with owf_magics.agents.guardrail_presets.register_guardrail",
            )
        info = guard(agent.name, value, dict(decl.get("config") or {}))
        if info:
            raise fail(
                "VALIDATION",
                f"{kind} guardrail '{name}' tripped on agent '{agent.name}'",
                guardrail=name,
                agent=agent.name,
                kind=kind,
                info=info,
            )


def check_output_type(agent: Agent, content: Any) -> Any:
    out = ext(agent).get("output_type")
    if not out:
        return content
    schema = out.get("schema") or {}
    if out.get("strict"):  # strict JSON Schema: no property beyond the declared ones
        schema = strict_schema(schema)
    try:
        value = json.loads(content) if isinstance(content, str) else content
    except json.JSONDecodeError as exc:
        message = f"agent '{agent.name}' output is not JSON for output_type '{out.get('name')}'"
        raise fail("VALIDATION", message, output_type=out.get("name")) from exc
    errors = list(schema_validator(schema).iter_errors(value))
    if errors:
        first = errors[0]
        where = ".".join(map(str, first.path)) or "output"
        raise fail(
            "VALIDATION",
            f"agent '{agent.name}' output does not match output_type '{out.get('name')}': {where}: {first.message}",
            output_type=out.get("name"),
            errors=len(errors),
        )
    return value


def strict_schema(schema: Any) -> Any:
    """OpenAI strict mode: objects take no additional properties and require every property."""
    if isinstance(schema, Mapping):
        out = {k: strict_schema(v) for k, v in schema.items()}
        if out.get("type") == "object" or "properties" in out:
            out.setdefault("additionalProperties", False)
            out.setdefault("required", sorted(out.get("properties") or {}))
        return out
    if isinstance(schema, list):
        return [strict_schema(v) for v in schema]
    return schema


@dataclass
class Tools:
    specs: list[dict[str, Any]]
    handoffs: dict[str, str]  # tool name -> agent name
    agents: dict[str, str]  # tool name -> agent name
    actions: dict[str, tuple[Connector, str]]


def build_tools(state: RunState, agent: Agent) -> Tools:
    e = ext(agent)
    tools = Tools([], {}, {}, {})
    for target in e.get("handoff") or []:
        other = lookup(state, target)
        name = f"transfer_to_{target}".replace("-", "_").replace(" ", "_").lower()
        desc = f"Handoff to the {target} agent to handle the request. {ext(other).get('handoff_description') or ''}"
        tools.handoffs[name] = target
        tools.specs.append(
            {"name": name, "description": desc.strip(), "parameters": {"type": "object", "properties": {}}}
        )
    for ref in e.get("agent_tools") or []:
        name = ref.get("tool_name") or ref["agent_name"]
        tools.agents[name] = ref["agent_name"]
        schema = {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}
        tools.specs.append(action_spec(name, ref.get("description"), schema))
    for decl in e.get("tools") or []:
        kind = str(decl.get("type"))
        conn = hosted_connector(state, decl)
        if conn is None:
            raise fail(
                "UNAVAILABLE",
                f"agent '{agent.name}' uses the hosted tool '{kind}', which has no connector here",
                tool=kind,
                suggestion=f"load a connector named '{kind}' (or set tools[].config.connector to one) "
                "whose actions implement it",
            )
        base = str(decl.get("name") or kind)
        for action in conn.actions:
            name = base if len(conn.actions) == 1 else f"{base}_{action.name}"
            tools.actions[name] = (conn, action.name)
            tools.specs.append(
                {
                    "name": name,
                    "description": action.description or "",
                    "parameters": action.input or {"type": "object"},
                }
            )
    for i, server in enumerate(e.get("mcp") or []):
        label = server.get("server_label") or f"mcp{i}"
        loaded = state.run.host.catalog.connector(parse_ref(f"{state.namespace}/{label}", expected_kind="connector"))
        if loaded is None:
            raise fail("UNAVAILABLE", f"MCP server '{label}' of agent '{agent.name}' is not loaded", server=label)
        for action in loaded.model.actions:
            name = f"{label}_{action.name}".replace("-", "_")
            tools.actions[name] = (loaded.model, action.name)
            tools.specs.append(
                {
                    "name": name,
                    "description": action.description or "",
                    "parameters": action.input or {"type": "object"},
                }
            )
    return tools


def action_spec(name: str, description: str | None, schema: Any) -> dict[str, Any]:
    return {"name": name, "description": description or "", "parameters": schema or {"type": "object"}}


def hosted_connector(state: RunState, decl: Mapping[str, Any]) -> Connector | None:
    config = decl.get("config") or {}
    name = config.get("connector") or decl.get("type")
    loaded = state.run.host.catalog.connector(parse_ref(str(name), expected_kind="connector"))
    return loaded.model if loaded is not None else None


def record_usage(state: RunState, agent: Agent, model_name: str, reply: Any) -> None:
    if reply.usage is None:
        return
    u = reply.usage
    acc = state.acc
    acc.turns.append(u)
    cost = state.run.host.prices.cost(agent.model, u)
    acc.cost = round(acc.cost + cost, 8)
    acc.rows.append(
        (
            (len(acc.rows),),
            {
                "run_id": state.run.run_id,
                "step_id": f"{state.step.id}/{agent.name}",
                "iteration": "",
                "provider": agent.model.provider,
                "model": model_name,
                "prompt_tokens": u.prompt_tokens,
                "completion_tokens": u.completion_tokens,
                "total_tokens": u.total_tokens,
                "estimated": u.estimated,
                "cost_usd": cost,
            },
        )
    )
    mine = state.usage.setdefault(agent.name, {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0})
    mine["requests"] += 1
    mine["prompt_tokens"] += u.prompt_tokens
    mine["completion_tokens"] += u.completion_tokens


async def run_loop(state: RunState, agent: Agent, items: list[dict[str, Any]], max_turns: int) -> Any:
    """One Runner.run: model turns until an agent answers without tools; handoffs switch agents."""
    check_guardrails(agent, "input", items)
    turns = 0
    while True:
        tools = build_tools(state, agent)
        model = make_model(agent.model)
        system = system_prompt(agent)
        messages = ([{"role": "system", "content": system}] if system else []) + items
        turns += 1
        state.turns += 1
        if turns > max_turns:
            raise fail("BACKEND_ERROR", f"max_turns ({max_turns}) exceeded", max_turns=max_turns, agent=agent.name)
        state.last_agent = agent.name
        reply = await model.respond(messages, tools.specs, turns - 1)
        record_usage(state, agent, model.name, reply)
        if not reply.tool_calls:
            output = check_output_type(agent, reply.content)
            check_guardrails(agent, "output", output)
            text = output if isinstance(output, str) else json.dumps(output)
            items.append({"role": "assistant", "content": text})
            return output
        items.append({"role": "assistant", "content": None, "tool_calls": reply.tool_calls})
        next_agent: Agent | None = None
        for call in reply.tool_calls:
            name = call["name"]
            args = call.get("args") or {}
            if name in tools.handoffs:
                if next_agent is None:
                    next_agent = lookup(state, tools.handoffs[name])
                    result: Any = {"assistant": next_agent.name}
                    emit(state, "handoff", {"from": agent.name, "to": next_agent.name})
                else:
                    result = "Multiple handoffs detected, ignoring this one."
            elif name in tools.agents:
                sub = lookup(state, tools.agents[name])
                sub_input = args.get("input") if isinstance(args, Mapping) and "input" in args else args
                content = sub_input if isinstance(sub_input, str) else json.dumps(sub_input)
                emit(state, "agent_tool", {"agent": agent.name, "tool": name, "runs": sub.name})
                result = await run_loop(state, sub, [{"role": "user", "content": content}], DEFAULT_MAX_TURNS)
            elif name in tools.actions:
                conn, action = tools.actions[name]
                try:
                    result = await run_action(state.run, conn, action, args, state.step.id)
                except OWFError as exc:
                    result = {"error": exc.message, "code": exc.code}
            else:
                result = {"error": f"unknown tool '{name}'"}
            text = result if isinstance(result, str) else json.dumps(result, default=str)
            items.append({"role": "tool", "tool_call_id": call.get("id"), "name": name, "content": text})
        if next_agent is not None:
            agent = next_agent


def emit(state: RunState, kind: str, data: dict[str, Any]) -> None:
    """``agent.handoff`` / ``agent.agent_tool`` events, ordered just after the step's own."""
    state.seq += 1
    if kind == "handoff":  # RunResult.last_agent (and the summary's last_agent) follow handoffs
        state.run.last_agent = str(data["to"])
    event = {"type": f"agent.{kind}", "timestamp": time.time(), "run_id": state.run.run_id, "step_id": state.step.id}
    state.run.emit((state.order + 1e-7, (), 0, state.seq), {**event, "payload": data})


def session_store(run: RunContext) -> Any:
    """The run store when it keeps sessions (``append_messages``/``get_messages``), else None."""
    store = run.store if run.store is not None else getattr(run.host, "store", None)
    return store if hasattr(store, "append_messages") and hasattr(store, "get_messages") else None


def session_items(run: RunContext, session_id: str, limit: int) -> list[dict[str, Any]]:
    """The session's last ``limit`` items: from the run store (``get_messages``, runs/sessions.py)
    when it keeps sessions, else from this OpenWorkflow's memory."""
    store = session_store(run)
    if store is not None:
        kept: list[dict[str, Any]] = list(store.get_messages(session_id))
    else:
        kept = _MEMORY_SESSIONS.get(run.host, {}).get(session_id, [])
    return list(kept[-limit:]) if limit else []


def save_session(
    run: RunContext, session_id: str, new: list[dict[str, Any]], agent: str, retention: Any = None
) -> None:
    """Append a request's items; then apply the request's ``session.retention`` to that session
    (``max_items``: the newest kept; ``max_age``: older ones dropped, with a run store)."""
    keep = retention if isinstance(retention, Mapping) else {}
    max_items, age = keep.get("max_items"), keep.get("max_age")
    max_age = parse_duration(age) if age is not None else None
    store = session_store(run)
    if store is not None:
        store.append_messages(session_id, new, agent=agent, run_id=run.run_id)
        if (max_items is not None or max_age is not None) and hasattr(store, "prune_sessions"):
            store.prune_sessions(max_items=max_items, max_age=max_age, session_id=session_id)
        return
    kept = _MEMORY_SESSIONS.setdefault(run.host, {}).setdefault(session_id, [])
    kept.extend(new)
    if isinstance(max_items, int):
        del kept[: max(0, len(kept) - max_items)]


async def run_request(
    run: RunContext, agent: Agent, data: Any, step: StepBase, acc: Accounting, order: float = 0.0
) -> dict[str, Any]:
    """A request's agent step: the conversation from the starting agent; the runner's summary."""
    meta = dict(step.metadata.get(EXTENSION) or {})
    session = meta.get("session") or {}
    session_id = str(session.get("session_id") or "")
    max_turns = int(session.get("max_turns") or 0) or DEFAULT_MAX_TURNS
    history_size = int(session.get("history_size") or 0)
    state = RunState(run, step, acc, agent.namespace or "", order=order)
    query = data if isinstance(data, str) else json.dumps(data, default=str)
    history = session_items(run, session_id, history_size) if session_id and history_size else []
    items = [*history, {"role": "user", "content": query}]
    start = len(history)
    summary: dict[str, Any] = {
        "workflow_name": meta.get("workflow_name"),
        "session_id": session_id,
        "final_output": None,
        "last_response_id": None,
        "error": None,
    }
    try:
        output = await run_loop(state, agent, items, max_turns)
    except StepFailed as exc:  # the runner's summary, with the error, goes with the failure
        summary.update(error=exc.error.message, last_agent=state.last_agent, usage=state.usage)
        exc.error.details["summary"] = summary
        raise
    if session_id:
        save_session(run, session_id, [clean(i) for i in items[start:]], state.last_agent, session.get("retention"))
    summary["final_output"] = output
    summary["last_response_id"] = f"resp_{run.run_id}_{state.turns}"
    summary["last_agent"] = state.last_agent
    summary["usage"] = state.usage
    return {"final_output": output, "summary": summary}


def clean(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k != "raw"}
