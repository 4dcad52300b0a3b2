"""The native agent loop: model turns, tool calls through connectors, guardrails, budgets and usage."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from owf_magics.agents import events, transfers
from owf_magics.agents.content import message_content
from owf_magics.agents.history import earlier as session_history
from owf_magics.agents.providers import Usage, make_model, required_tool_missed, tool_choice
from owf_magics.agents.workflow_tools import call as call_workflow
from owf_magics.agents.workflow_tools import is_workflow_entry, workflow_tools
from owf_magics.connectors.actions import run_action
from owf_magics.errors import OWFError
from owf_magics.manifest.models import (
    Agent,
    Connector,
    StepBase,
    ToolsetEntry,
)
from owf_magics.manifest.refs import parse_ref
from owf_magics.runtime.context import (
    CURRENT_KEY,
    Host,
    RunContext,
    StepFailed,
    Waiting,
    find_request,
)
from owf_magics.runtime.results import StepError


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    connector: Connector
    action: str


def agent_tools(ow: Host, agent: Agent) -> dict[str, Tool]:
    """Toolset connectors as tools named ``<toolPrefix or connector name>_<action>``."""
    tools: dict[str, Tool] = {}
    for entry in agent.toolset:
        if is_workflow_entry(entry):  # a workflow as a tool: the native loop's (`workflow_tools`)
            continue
        ref_text = entry if isinstance(entry, str) else entry.connector
        loaded = ow.catalog.connector(parse_ref(ref_text, expected_kind="connector", allow_action=True))
        if loaded is None:
            continue
        conn: Connector = loaded.model
        prefix = None
        if isinstance(entry, ToolsetEntry) and entry.toolPrefix:
            prefix = entry.toolPrefix
        elif conn.capabilities and "langchain" in conn.capabilities.frameworks:
            prefix = conn.capabilities.frameworks["langchain"].toolPrefix
        base = (prefix or conn.name).rstrip("_").replace("-", "_")
        for action in conn.actions:
            if isinstance(entry, ToolsetEntry):
                if entry.actions is not None and action.name not in entry.actions:
                    continue
                if entry.deny and action.name in entry.deny:
                    continue
            name = f"{base}_{action.name}"
            tools[name] = Tool(name, action.description or "", action.input or {"type": "object"}, conn, action.name)
    return tools


def system_prompt(agent: Agent) -> str:
    p = agent.personality
    if p is None:
        return ""
    parts = [p.systemPrompt or ""]
    if p.constraints:
        parts.append("Constraints: " + "; ".join(p.constraints))
    return "\n".join(x for x in parts if x)


@dataclass
class Accounting:
    """Token usage and cost of one attempt (agent steps)."""

    turns: list[Usage] = field(default_factory=list)
    cost: float = 0.0
    rows: list[tuple[tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)

    def total(self) -> Usage | None:
        if not self.turns:
            return None
        return Usage(
            sum(u.prompt_tokens for u in self.turns),
            sum(u.completion_tokens for u in self.turns),
            any(u.estimated for u in self.turns),
        )


NO_USAGE = Accounting()  # shared by the steps that call no model; only agent steps add to theirs


async def run_agent(
    run: RunContext,
    agent: Agent,
    data: Any,
    step_id: str,
    acc: Accounting,
    step: StepBase | None = None,
    step_budget: Any = None,
) -> Any:
    """The native agent loop: model turns, tool calls through connectors, guardrails, usage.

    Before each model turn the agent's rate limits are awaited and the step's, the agent's and
    the run's budgets checked against the turn's projected tokens and cost (a turn that would
    cross one fails the step with code CANCELED, ``details.reason == "budget"``).
    """
    model = make_model(agent.model)
    budgets, limit_keys = agent_limits(run, agent, step, step_budget)
    tools = agent_tools(run.host, agent)
    config = agent.execution.config if agent.execution else {}
    max_iter = int(config.get("maxIterations", config.get("max_iterations")) or 10)
    behavior = agent.guardrails.behavior if agent.guardrails else None
    max_calls = behavior.maxToolCalls if behavior and behavior.maxToolCalls is not None else None
    confirm = set(behavior.requireConfirmation) if behavior else set()
    content = message_content(data)  # text, or text and image parts (agents/content.py)
    messages: list[dict[str, Any]] = []
    system = system_prompt(agent)
    if system:
        messages.append({"role": "system", "content": system})
    memory = agent.memory if agent.memory and agent.memory.type == "buffer" else None
    memory_key = f"{agent.namespace or 'local'}/{agent.name}"
    if memory is not None:  # earlier exchanges with this agent in this run, oldest first
        history = run.memory.get(memory_key, [])
        keep = memory.maxMessages if memory.maxMessages is not None else len(history)
        messages.extend(history[-keep:] if keep else [])
    messages.extend(session_history())  # a session's earlier exchanges (`Agent.execute(session=...)`)
    messages.append({"role": "user", "content": content, "raw": data})
    flows = workflow_tools(run.host, agent) if any(is_workflow_entry(e) for e in agent.toolset) else {}
    specs = [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in tools.values()]
    specs += [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in flows.values()]
    handoffs = transfers.offered()  # a handoff step allowing transfers (agents/transfers.py)
    specs += transfers.specs(handoffs)
    calls_made = 0
    sent = 0
    for turn in range(max_iter):
        if budgets or limit_keys:
            await before_turn(run, agent, messages, budgets, limit_keys, step_id)
        if events.active():  # the messages this turn adds, readable later from the run's events
            events.emit(
                events.TURN_STARTED,
                agent=agent.name,
                turn=turn + 1,
                model=model.name,
                prompt=turn_prompt(messages, sent),
            )
        sent = len(messages)
        reply = await model.respond(messages, specs, turn)
        if not reply.tool_calls and tool_choice(agent.model, messages) == "required":
            raise StepFailed(required_tool_missed(sorted(tools)))
        cost = 0.0
        if reply.usage is not None:
            acc.turns.append(reply.usage)
            cost = run.host.prices.cost(agent.model, reply.usage)
            acc.cost = round(acc.cost + cost, 8)
            if budgets:
                from owf_magics.agents.limits import combined_record

                combined_record(budgets, reply.usage.total_tokens, 0.0 if math.isnan(cost) else cost)
            acc.rows.append(
                (
                    (turn,),
                    {
                        "run_id": run.run_id,
                        "step_id": step_id,
                        "iteration": "",
                        "provider": agent.model.provider,
                        "model": model.name,
                        "prompt_tokens": reply.usage.prompt_tokens,
                        "completion_tokens": reply.usage.completion_tokens,
                        "total_tokens": reply.usage.total_tokens,
                        "estimated": reply.usage.estimated,
                        "cost_usd": cost,
                    },
                )
            )
        if events.active():
            fields = turn_fields(agent.name, turn, model.name, agent.model.provider, reply, cost)
            events.emit(events.TURN_COMPLETED, **fields)
        if not reply.tool_calls:
            answer = check_output(agent, reply.content)
            if memory is not None:
                remember(run, agent, data, answer)
            return answer
        messages.append({"role": "assistant", "content": None, "tool_calls": reply.tool_calls})
        for call in reply.tool_calls:
            calls_made += 1
            if max_calls is not None and calls_made > max_calls:
                events.emit(
                    events.GUARDRAIL_TRIPPED,
                    agent=agent.name,
                    guardrail="behavior.maxToolCalls",
                    reason=f"more than {max_calls} tool calls",
                )
                raise StepFailed(
                    StepError("VALIDATION", f"agent exceeded maxToolCalls ({max_calls})", {"maxToolCalls": max_calls})
                )
            tool = tools.get(call["name"])
            events.emit(events.TOOL_CALLED, agent=agent.name, tool=call["name"], arguments=call.get("args") or {})
            if call["name"] in handoffs:
                raise transfers.Transferred(handoffs[call["name"]], call.get("args") or {})
            flow = flows.get(call["name"]) if flows else None
            if tool is None and flow is not None:
                try:
                    result: Any = await call_workflow(flow, call.get("args") or {})
                except OWFError as exc:
                    result = {"error": exc.message, "code": exc.code}
            elif tool is None:
                result = {"error": f"unknown tool '{call['name']}'", "tools": sorted([*tools, *flows])}
            elif call["name"] in confirm and not _confirmed(run, agent, call):
                result = {"error": "the user rejected this tool call", "tool": call["name"]}
            else:
                try:
                    result = await run_action(run, tool.connector, tool.action, call.get("args") or {}, step_id)
                except OWFError as exc:
                    result = {"error": exc.message, "code": exc.code}
            events.emit(events.TOOL_COMPLETED, agent=agent.name, tool=call["name"], result=result)
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": call.get("id"),
                    "name": call["name"],
                    "content": json.dumps(result, default=str),
                }
            )
    raise StepFailed(
        StepError("BACKEND_ERROR", f"agent did not finish within {max_iter} iterations", {"maxIterations": max_iter})
    )


def turn_fields(agent: str, turn: int, model: str, provider: str, reply: Any, cost: float) -> dict[str, Any]:
    """The fields of an ``agent.turn.completed`` event (tokens and cost of that turn)."""
    usage = reply.usage
    return {
        "agent": agent,
        "turn": turn + 1,
        "model": model,
        "provider": provider,
        "prompt_tokens": usage.prompt_tokens if usage else 0,
        "completion_tokens": usage.completion_tokens if usage else 0,
        "total_tokens": usage.total_tokens if usage else 0,
        "estimated": usage.estimated if usage else True,
        "cost_usd": 0.0 if math.isnan(cost) else cost,
        "tool_calls": [c["name"] for c in reply.tool_calls],
        "completion": reply.content
        if reply.content is None or isinstance(reply.content, str)
        else json.dumps(reply.content, default=str),
    }


def _prompt_text(content: Any) -> str | None:
    """A message's content as text for the turn's event: image parts by their URL, an inline image
    (``data:`` URL) by its type and size, so an event never carries the image itself."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        out = []
        for part in content:
            if part.get("type") == "text":
                out.append(str(part.get("text", "")))
            elif part.get("type") == "image_url":
                url = str((part.get("image_url") or {}).get("url", ""))
                out.append(
                    f"[image {url.split(';', maxsplit=1)[0]}, {len(url)} characters]"
                    if url.startswith("data:")
                    else f"[image {url}]"
                )
            else:
                out.append(json.dumps(part, default=str))
        return "\n".join(out)
    return json.dumps(content, default=str)


def turn_prompt(messages: list[dict[str, Any]], start: int) -> list[dict[str, Any]]:
    """The messages a model turn adds to the conversation (role and text; tool calls by name)."""
    out = []
    for m in messages[start:]:
        entry: dict[str, Any] = {"role": m.get("role")}
        entry["content"] = _prompt_text(m.get("content"))
        if m.get("tool_calls"):
            entry["tool_calls"] = [c.get("name") for c in m["tool_calls"]]
        if m.get("name"):
            entry["name"] = m["name"]
        out.append(entry)
    return out


def remember(run: RunContext, agent: Agent, data: Any, answer: Any) -> None:
    """Buffer memory: one exchange with the agent, kept for its later steps in the run."""
    content = data if isinstance(data, str) else json.dumps(data, default=str, sort_keys=True)
    text = answer if isinstance(answer, str) else json.dumps(answer, default=str)
    run.memory.setdefault(f"{agent.namespace or 'local'}/{agent.name}", []).extend(
        [{"role": "user", "content": content}, {"role": "assistant", "content": text}]
    )


def agent_limits(
    run: RunContext, agent: Agent, step: StepBase | None, shared: Any = None
) -> tuple[list[Any], list[str]]:
    """The budgets an agent step spends from, and the rate-limit keys it waits on (`shared`: the
    step's budget when several agent calls spend it, as a pattern step's turns do)."""
    budgets: list[Any] = []
    keys: list[str] = []
    guard = getattr(step, "guardrails", None) if step is not None else None
    if agent.policies is not None or guard is not None or run.budget is not None:
        from owf_magics.agents.limits import agent_budget, agent_key, limit_spec, step_budget

        if step is not None:
            budgets.append(shared if shared is not None else step_budget(step))
        budgets.append(agent_budget(agent.policies, agent=agent.name))
        budgets.append(run.budget)
        budgets = [b for b in budgets if b is not None]
        spec = limit_spec(agent.policies.rateLimit) if agent.policies is not None else None
        if spec is not None:
            key = agent_key(f"{agent.namespace or 'local'}/{agent.name}")
            limiter = run.host.rate_limiter
            if limiter.limits(key) is None:
                limiter.configure(key, spec)
            keys.append(key)
    return budgets, keys


async def before_turn(
    run: RunContext, agent: Agent, messages: list[dict[str, Any]], budgets: list[Any], keys: list[str], step_id: str
) -> None:
    from owf_magics.agents.limits import combined_check
    from owf_magics.agents.providers import estimate_tokens, messages_text

    prompt = estimate_tokens(messages_text(messages))
    completion = agent.model.maxTokens or 0
    if keys:
        await run.host.rate_limiter.acquire_all(keys, requests=1, tokens=prompt + completion, messages=1)
    if budgets:
        rates = run.host.prices.rates(agent.model)
        cost = (prompt * rates[0] + completion * rates[1]) / 1_000_000 if rates else 0.0
        combined_check(budgets, prompt + completion, cost, step_id=step_id)


def _confirmed(run: RunContext, agent: Agent, call: Mapping[str, Any]) -> bool:
    """``guardrails.behavior.requireConfirmation``: wait for a person to confirm this tool call."""
    match = {"agent": agent.name, "tool": call["name"], "args": call.get("args") or {}}
    answer = find_request(run, CURRENT_KEY.get(), "approval", match)
    if answer is None or not answer.resolved:
        raise Waiting("approval", match)
    return answer.value is True


def check_output(agent: Agent, content: Any) -> Any:
    out = agent.guardrails.output if agent.guardrails else None
    if out is None:
        return content
    if out.format == "json" and isinstance(content, str):
        try:
            content = json.loads(content)
        except json.JSONDecodeError as exc:
            events.emit(events.GUARDRAIL_TRIPPED, agent=agent.name, guardrail="output.format", reason=exc.msg)
            raise StepFailed(StepError("VALIDATION", f"agent output is not JSON: {exc.msg}")) from exc
    if out.maxLength is not None and isinstance(content, str) and len(content) > out.maxLength:
        events.emit(
            events.GUARDRAIL_TRIPPED,
            agent=agent.name,
            guardrail="output.maxLength",
            reason=f"{len(content)} characters, over {out.maxLength}",
        )
        raise StepFailed(
            StepError(
                "VALIDATION",
                f"agent output has {len(content)} characters, over maxLength {out.maxLength}",
                {"maxLength": out.maxLength},
            )
        )
    return content


def turn_hooks(run: RunContext, agent: Agent, step: StepBase) -> tuple[Any, Any] | None:
    """The step's, the agent's and the run's budgets and rate limits, for an adapter to apply around
    each model turn as native does: ``await before(messages)`` (dicts with ``content``, the system
    prompt first) and ``after(usage)``. None when there are none."""
    budgets, keys = agent_limits(run, agent, step)
    if not budgets and not keys:
        return None

    async def before(messages: list[dict[str, Any]]) -> None:
        await before_turn(run, agent, messages, budgets, keys, step.id)

    def after(usage: Usage) -> None:
        if budgets:
            from owf_magics.agents.limits import combined_record

            cost = run.host.prices.cost(agent.model, usage)
            combined_record(budgets, usage.total_tokens, 0.0 if math.isnan(cost) else cost)

    return before, after
